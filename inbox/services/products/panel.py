"""The thread's "Why this product" panel and the product story `conversations explain` prints."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from ...display import display_name
from ...extensions import db
from ...models import Account, AssignmentEvent, Conversation, Identity, Product
from .. import staff
from .catalogue import NotFoundError, cached_products

# What a source is called in plain words.
SOURCE_LABELS = {"post_link": "linked post", "ad": "ad", "product_referral": "shop product", "comment": "comment",
                 "manual": "chosen by hand", "auto_link": "auto-linked post"}
PANEL_EVENTS = 20


@dataclass
class ProductPanel:
    """What the thread's product header shows."""

    conversation: Conversation
    product: Product | None
    source: str | None
    assigned_by: str | None
    options: list[Product]
    events: list[AssignmentEvent]  # newest first
    total_events: int

    @property
    def is_manual(self) -> bool:
        return self.source == "manual"

    @property
    def summary(self) -> str:
        if self.product is None:
            return "No product chosen by hand" if self.is_manual else "No product yet"
        if self.is_manual:
            return f"Chosen by hand by {self.assigned_by}"
        return f"Assigned automatically ({SOURCE_LABELS.get(self.source or '', self.source or 'evidence')})"


def product_panel(conversation: Conversation, *, limit: int = PANEL_EVENTS) -> ProductPanel:
    """The dropdown's options, the current product and the latest events, for one conversation."""
    account_id = conversation.account_id
    product = db.session.get(Product, conversation.product_id) if conversation.product_id else None
    options = list(cached_products(account_id))
    if product is not None and all(p.id != product.id for p in options):
        options.append(product)
    events = list(db.session.scalars(select(AssignmentEvent).where(AssignmentEvent.conversation_id == conversation.id)
                                     .order_by(AssignmentEvent.id.desc()).limit(limit)))
    total = len(events)
    if total == limit:
        total = db.session.scalar(select(func.count()).select_from(AssignmentEvent)
                                  .where(AssignmentEvent.conversation_id == conversation.id)) or 0
    who = staff.name_of(conversation.assigned_by_user_id) if conversation.assignment_source == "manual" else None
    return ProductPanel(conversation, product, conversation.assignment_source, who, options, events, total)


def get_conversation(account_id: int, conversation_id: int) -> Conversation:
    conversation = db.session.scalars(select(Conversation).where(Conversation.id == conversation_id,
                                                                 Conversation.account_id == account_id)).first()
    if conversation is None:
        raise NotFoundError("No such conversation.")
    return conversation


def explain(conversation: Conversation) -> list[str]:
    """The conversation's product story for support, oldest decision first (the CLI prints it)."""
    account = db.session.get(Account, conversation.account_id)
    identity = db.session.scalars(select(Identity).where(Identity.account_id == account.id,
                                                         Identity.igsid == conversation.customer_igsid)).first()
    panel = product_panel(conversation, limit=1)
    lines = [f"Conversation {conversation.id}: {display_name(identity, conversation.customer_igsid)} "
             f"(IGSID {conversation.customer_igsid}) with {account.label}"]
    if panel.product is not None:
        lines.append(f"Product: {panel.product.label}{'' if panel.product.active else ' [archived]'}. "
                     f"{panel.summary}, {conversation.assigned_at.strftime('%-d %b %Y %H:%M UTC') if conversation.assigned_at else ''}".rstrip(", "))
    else:
        lines.append(f"Product: none. {panel.summary}.")
    events = list(db.session.scalars(select(AssignmentEvent).where(AssignmentEvent.conversation_id == conversation.id)
                                     .order_by(AssignmentEvent.id)))
    if not events:
        lines.append("No product evidence yet: no shared post, ad or shop product in this conversation.")
        return lines
    lines.append("Why:")
    for e in events:
        evidence = f" [{e.evidence_kind} {e.evidence_id}]" if e.evidence_id else ""
        lines.append(f"  {e.created_at.strftime('%Y-%m-%d %H:%M')}  {e.outcome:<9} {e.reason}{evidence}")
    return lines


def find_conversation(account_id: int, customer_igsid: str) -> Conversation | None:
    return db.session.scalars(select(Conversation).where(Conversation.account_id == account_id,
                                                         Conversation.customer_igsid == str(customer_igsid))).first()
