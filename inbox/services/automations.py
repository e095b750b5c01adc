"""Keyword automations: a comment that matches a rule's keywords gets a private reply (and maybe a public one).

A rule (`Automation`) belongs to one account: keywords (case- and accent-insensitive,
whole words; emoji match anywhere), all posts or chosen ones, a private-reply template
with the saved-reply variables plus `{post}` and `{link}`, and optional public-reply
variations. Ingestion queues `run_comment_automations` for each new customer comment
when the account has an active rule; `run_for_comment` then decides:

- never our own comments, deleted ones or mentions elsewhere;
- never twice for one comment: the run row (unique per rule and comment) is committed
  before anything is sent, and the private reply's client token is derived from both,
  so a retried job finds what the first one queued instead of sending again;
- the first matching rule answers; a later one that also matches records that it did not;
- the reply goes through the same send path as staff replies (`sender_kind =
  automation`): pending row, job, echo; Meta's private-reply budget applies there.

Every firing (or refusal) is an `AutomationRun`: shown on the comment and in the rule's
history. `dry_run` lists recent comments a rule would have matched, sending nothing.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..live.publish import publish_after_commit
from ..models import Account, Automation, AutomationRun, Comment, Identity, Post, PostProduct, Product, utcnow
from . import comments
from .reply_variables import customer_values, fill_variables, unknown_variables
from .sending import MAX_TEXT_BYTES

MAX_KEYWORDS = 50
MAX_VARIATIONS = 10
DRY_RUN_DAYS = 7


class AutomationError(ValueError):
    """The rule cannot be saved as given; the message says why."""


class AutomationNotFound(LookupError):
    pass


# --- Matching ------------------------------------------------------------------------------------

def normalise(text: str | None) -> str:
    """Case- and accent-free text ("Précio" -> "precio"); emoji kept, variation selectors dropped."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(c for c in decomposed if not unicodedata.combining(c) and c != "\ufe0f").casefold()


def split_keywords(value: str | list[str] | None) -> list[str]:
    """Keywords from commas or lines, trimmed, repeats (ignoring case and accents) dropped."""
    parts = value if isinstance(value, list) else re.split(r"[,\n]", str(value or ""))
    out, seen = [], set()
    for part in parts:
        word = " ".join(str(part).split())
        key = normalise(word)
        if word and key not in seen:
            seen.add(key)
            out.append(word[:100])
    return out


@lru_cache(maxsize=4096)
def _pattern(keyword: str) -> re.Pattern | None:
    key = normalise(keyword)
    if not key:
        return None
    if not re.search(r"\w", key):  # emoji and symbols: anywhere in the text
        return re.compile(re.escape(key))
    words = r"\s+".join(re.escape(w) for w in key.split())
    return re.compile(rf"(?<!\w){words}(?!\w)")


def matched_keyword(keywords: list[str], text: str | None) -> str | None:
    """The first keyword the text contains as whole words (or as emoji), else None."""
    haystack = normalise(text)
    if not haystack:
        return None
    for keyword in keywords:
        pattern = _pattern(keyword)
        if pattern is not None and pattern.search(haystack):
            return keyword
    return None


def applies_to(rule: Automation, comment: Comment) -> bool:
    return rule.all_posts or (comment.media_id or "") in (rule.media_ids or [])


# --- Rules ---------------------------------------------------------------------------------------

def list_automations(account_id: int) -> list[Automation]:
    return list(db.session.scalars(select(Automation).where(Automation.account_id == account_id)
                                   .order_by(Automation.id)))


def get_automation(account_id: int, automation_id: int) -> Automation:
    rule = db.session.scalar(select(Automation).where(Automation.id == automation_id,
                                                      Automation.account_id == account_id))
    if rule is None:
        raise AutomationNotFound("No such automation.")
    return rule


def find_automation(account_id: int, ident: str) -> Automation:
    """A rule by id or by name (the CLI)."""
    query = select(Automation).where(Automation.account_id == account_id)
    rule = db.session.scalar(query.where(Automation.id == int(ident))) if str(ident).isdigit() else None
    rule = rule or db.session.scalar(query.where(Automation.name == str(ident)))
    if rule is None:
        raise AutomationNotFound(f"No automation {ident!r} on this account.")
    return rule


@dataclass
class RuleSpec:
    """A rule as someone wrote it, checked."""

    name: str
    keywords: list[str]
    template: str
    public_replies: list[str]
    media_ids: list[str] | None  # None: all posts


def check_rule(account_id: int, *, name: str, keywords, template: str, public_replies=None,
               media_ids=None) -> RuleSpec:
    """Validate what a rule says; AutomationError says what is wrong."""
    name = " ".join((name or "").split())[:120]
    if not name:
        raise AutomationError("Give the rule a name.")
    words = split_keywords(keywords)
    if not words:
        raise AutomationError("Give at least one keyword (a word, a phrase or an emoji).")
    if len(words) > MAX_KEYWORDS:
        raise AutomationError(f"At most {MAX_KEYWORDS} keywords.")
    template = (template or "").replace("\r\n", "\n").strip()
    if not template:
        raise AutomationError("Write the private reply.")
    if len(template.encode("utf-8")) > MAX_TEXT_BYTES:
        raise AutomationError(f"The private reply is longer than Instagram's {MAX_TEXT_BYTES:,} bytes.")
    unknown = unknown_variables(template)
    if unknown:
        raise AutomationError("Unknown variable " + ", ".join("{" + v + "}" for v in unknown)
                              + ": use {first_name}, {username}, {product}, {price}, {agent}, {post} or {link}.")
    variations = [v.strip() for v in (public_replies or []) if v and v.strip()][:MAX_VARIATIONS]
    for variation in variations:
        if len(variation) > comments.MAX_COMMENT_CHARS:
            raise AutomationError("A public reply is longer than Instagram allows for a comment.")
    chosen = None
    if media_ids:
        chosen = [m.strip() for m in media_ids if m and m.strip()]
        known = set(db.session.scalars(select(Post.media_id).where(Post.account_id == account_id,
                                                                   Post.media_id.in_(chosen))))
        missing = [m for m in chosen if m not in known]
        if missing:
            raise AutomationError("Not a post of this account: " + ", ".join(missing))
    return RuleSpec(name, words, template, variations, chosen or None)


def create_automation(account_id: int, spec: RuleSpec, user_id: int | None = None) -> Automation:
    """Save a rule, active (committed)."""
    taken = db.session.scalar(select(Automation.id).where(Automation.account_id == account_id,
                                                          Automation.name == spec.name))
    if taken is not None:
        raise AutomationError(f"There is already a rule named {spec.name!r}.")
    now = utcnow()
    rule = Automation(account_id=account_id, name=spec.name, active=True, keywords="\n".join(spec.keywords),
                      all_posts=spec.media_ids is None, media_ids=spec.media_ids, private_template=spec.template,
                      public_replies=spec.public_replies or None, created_by_user_id=user_id, created_at=now,
                      updated_at=now)
    db.session.add(rule)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise AutomationError(f"There is already a rule named {spec.name!r}.") from None
    publish_after_commit(account_id, "automation.updated", automation_id=rule.id)
    db.session.commit()
    return rule


def set_active(account_id: int, automation_id: int, active: bool) -> Automation:
    """Pause a rule (it stops answering at once) or resume it (committed)."""
    rule = get_automation(account_id, automation_id)
    if rule.active != active:
        rule.active = active
        rule.updated_at = utcnow()
        publish_after_commit(account_id, "automation.updated", automation_id=rule.id)
    db.session.commit()
    return rule


def keywords_of(rule: Automation) -> list[str]:
    return split_keywords(rule.keywords)


@dataclass
class HistoryItem:
    run: AutomationRun
    comment: Comment
    post: Post | None


def history(account_id: int, automation_id: int, *, limit: int = 50) -> list[HistoryItem]:
    """What a rule did, newest first."""
    rows = db.session.execute(
        select(AutomationRun, Comment, Post).join(Comment, Comment.id == AutomationRun.comment_id)
        .outerjoin(Post, Post.id == Comment.post_id)
        .where(AutomationRun.account_id == account_id, AutomationRun.automation_id == automation_id)
        .order_by(AutomationRun.id.desc()).limit(limit))
    return [HistoryItem(run, comment, post) for run, comment, post in rows]


def dry_run(account_id: int, keywords, media_ids: list[str] | None = None, *, days: int = DRY_RUN_DAYS,
            limit: int = 300) -> list[tuple[Comment, str]]:
    """Recent customer comments the keywords would have matched, newest first (nothing is sent)."""
    words = split_keywords(keywords)
    since = int((utcnow() - timedelta(days=days)).timestamp() * 1000)
    query = (select(Comment).where(Comment.account_id == account_id, Comment.is_own.is_(False),
                                   Comment.deleted.is_(False), Comment.field != "mentions",
                                   Comment.meta_timestamp >= since)
             .order_by(Comment.meta_timestamp.desc(), Comment.id.desc()).limit(limit))
    if media_ids:
        query = query.where(Comment.media_id.in_(media_ids))
    out = []
    for comment in db.session.scalars(query):
        hit = matched_keyword(words, comment.text)
        if hit is not None:
            out.append((comment, hit))
    return out


# --- Running the rules on a comment -------------------------------------------------------------

def run_for_comment(comment_id: int) -> str:
    """The job for a new customer comment: the first active rule that matches answers it."""
    comment = db.session.get(Comment, comment_id)
    if comment is None or comment.is_own or comment.deleted or comment.field == "mentions":
        return "not-applicable"
    account_id = comment.account_id
    rules = [r for r in list_automations(account_id) if r.active and applies_to(r, comment)]
    answered_by: Automation | None = None
    result = "no-match"
    for rule in rules:
        keyword = matched_keyword(keywords_of(rule), comment.text)
        if keyword is None:
            continue
        if answered_by is not None:
            _record(rule, comment, "skipped", f"matched “{keyword}”, but {answered_by.name!r} already answered")
            continue
        outcome = _fire(rule, comment_id, keyword)
        if outcome in ("fired", "already"):
            answered_by = rule
            result = outcome
        comment = db.session.get(Comment, comment_id)
    return result


def _record(rule: Automation, comment: Comment, outcome: str, reason: str) -> AutomationRun | None:
    """A run row, committed; None when this rule already has one for the comment."""
    run = AutomationRun(account_id=rule.account_id, automation_id=rule.id, comment_id=comment.id, outcome=outcome,
                        reason=reason, created_at=utcnow())
    db.session.add(run)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return None
    publish_after_commit(rule.account_id, "automation.updated", automation_id=rule.id)
    publish_after_commit(rule.account_id, "comment.updated", comment_id=comment.id, post_id=comment.post_id or 0)
    db.session.commit()
    return run


def _fire(rule: Automation, comment_id: int, keyword: str) -> str:
    comment = db.session.get(Comment, comment_id)
    rule_id, account_id = rule.id, rule.account_id
    existing = db.session.scalar(select(AutomationRun).where(AutomationRun.automation_id == rule_id,
                                                             AutomationRun.comment_id == comment_id))
    if existing is not None and existing.outcome != "fired":
        return "already"
    if existing is None:
        if comments.comment_has_private_reply(comment_id):
            _record(rule, comment, "skipped", f"matched “{keyword}”, but the comment already has a private reply")
            return "skipped"
        existing = _record(rule, comment, "fired", f"matched “{keyword}”")
        if existing is None:  # another run of this job got there first
            return "already"
    run_id = existing.id
    rule = db.session.get(Automation, rule_id)
    text = fill_variables(rule.private_template, template_values(account_id, comment_id))
    variations = list(rule.public_replies or [])
    try:
        message = comments.reply_privately(account_id, comment_id, None, text, f"auto-{rule_id}-{comment_id}",
                                           sender_kind="automation")
    except comments.CommentRefused as exc:
        db.session.rollback()
        _end_run(run_id, "skipped", f"matched “{keyword}”, not sent: {exc.reason}")
        return "skipped"
    run = db.session.get(AutomationRun, run_id)
    run.message_id = message.id
    db.session.commit()
    if variations and run.reply_comment_id is None:
        # The same comment always gets the same variation (a retried job changes nothing).
        chosen = variations[zlib.crc32(str(comment_id).encode()) % len(variations)]
        chosen = fill_variables(chosen, template_values(account_id, comment_id))
        try:
            reply = comments.reply_publicly(account_id, comment_id, None, chosen, sender_kind="automation",
                                            automation_id=rule_id)
        except comments.CommentRefused as exc:
            db.session.rollback()
            _end_run(run_id, "fired", f"matched “{keyword}”; private reply queued; public reply not sent: "
                                      f"{exc.reason}")
            return "fired"
        run = db.session.get(AutomationRun, run_id)
        run.reply_comment_id = reply.id
        run.reason = f"matched “{keyword}”; private reply and public reply queued"
        db.session.commit()
    else:
        _end_run(run_id, "fired", f"matched “{keyword}”; private reply queued")
    return "fired"


def _end_run(run_id: int, outcome: str, reason: str) -> None:
    run = db.session.get(AutomationRun, run_id)
    run.outcome, run.reason = outcome, reason
    comment = db.session.get(Comment, run.comment_id)
    publish_after_commit(run.account_id, "automation.updated", automation_id=run.automation_id)
    publish_after_commit(run.account_id, "comment.updated", comment_id=comment.id, post_id=comment.post_id or 0)
    db.session.commit()


def template_values(account_id: int, comment_id: int) -> dict[str, str | None]:
    """The variables for a reply to this comment: who wrote it, the post, its product and price."""
    comment = db.session.get(Comment, comment_id)
    account = db.session.get(Account, account_id)
    post = db.session.get(Post, comment.post_id) if comment.post_id else None
    product = db.session.scalar(select(Product).join(PostProduct, PostProduct.product_id == Product.id)
                                .where(PostProduct.post_id == post.id)) if post is not None else None
    identity = db.session.scalar(select(Identity).where(Identity.account_id == account_id,
                                                        Identity.igsid == comment.author_igsid)) \
        if comment.author_igsid else None
    name = (identity.name if identity is not None else None) or ""
    username = comment.author_username or (identity.username if identity is not None else None) or ""
    return {
        **customer_values(name, username, product, account.name or account.username if account is not None else ""),
        "post": comments.post_label(post, comment.media_id),
        "link": (post.permalink if post is not None else None) or "",
    }
