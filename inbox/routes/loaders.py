"""One loader per object a route looks up by id: this account's row, or 404.

The id comes from the URL and the account from g.account (auth.account_scoped sets it), so
another account's id is a 404 exactly like a missing one.
"""

from __future__ import annotations

from flask import abort, g
from sqlalchemy import select

from ..extensions import db
from ..models import Attachment, Conversation, Identity, JobRun, Label, Message, Post, Product, SavedReply
from ..services import jobruns


def get_conversation_or_404(conversation_id: int) -> Conversation:
    return _scoped_or_404(Conversation, conversation_id)


def get_label_or_404(label_id: int) -> Label:
    return _scoped_or_404(Label, label_id)


def get_saved_reply_or_404(reply_id: int) -> SavedReply:
    return _scoped_or_404(SavedReply, reply_id)


def get_message_or_404(message_id: int) -> Message:
    return _scoped_or_404(Message, message_id)


def get_attachment_or_404(attachment_id: int) -> Attachment:
    return _scoped_or_404(Attachment, attachment_id)


def get_identity_or_404(identity_id: int) -> Identity:
    return _scoped_or_404(Identity, identity_id)


def get_product_or_404(product_id: int) -> Product:
    return _scoped_or_404(Product, product_id)


def get_post_or_404(post_id: int) -> Post:
    return _scoped_or_404(Post, post_id)


def get_run_or_404(run_id: int) -> JobRun:
    """The run, ended first if its job died (jobruns.get_run)."""
    run = jobruns.get_run(g.account.id, run_id)
    if run is None:
        abort(404)
    return run


def _scoped_or_404(model, object_id: int):
    row = db.session.scalar(select(model).where(model.id == object_id, model.account_id == g.account.id))
    if row is None:
        abort(404)
    return row
