"""Sales outcomes: a conversation marked Sold (product, quantity, amount) or Not sold (a reason).

Every marking is a new `SaleOutcome` row with who marked it and when; the newest is
current (`is_current`), earlier ones stay as history. "Clear" ends the current one. The
amount is in the account's currency (`InsightSettings.currency`), kept on the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import select, update

from ...extensions import db
from ...models import Conversation, Product, SaleOutcome, StaffUser, utcnow
from .. import activity
from . import facts

MAX_QUANTITY = 100_000
MAX_AMOUNT = Decimal("9999999999.99")
MAX_REASON = 500
REASONS = ("Too expensive", "Out of stock", "No answer from the customer", "Shipping", "Just asking")


class OutcomeError(ValueError):
    """Input that cannot be recorded (the message says what to fix)."""


class NotFound(LookupError):
    """No such conversation in this account."""


@dataclass
class OutcomeView:
    """What the thread shows: the current outcome (or None), its product and who marked it."""

    conversation_id: int
    current: SaleOutcome | None
    product: Product | None
    marked_by: str | None
    currency: str
    products: list[Product]
    history: int


def _conversation(account_id: int, conversation_id: int) -> Conversation:
    conversation = db.session.get(Conversation, conversation_id)
    if conversation is None or conversation.account_id != account_id:
        raise NotFound(conversation_id)
    return conversation


def outcome_view(account_id: int, conversation_id: int) -> OutcomeView:
    conversation = _conversation(account_id, conversation_id)
    rows = list(db.session.scalars(select(SaleOutcome).where(SaleOutcome.conversation_id == conversation_id)
                                   .order_by(SaleOutcome.id.desc())))
    current = next((r for r in rows if r.is_current), None)
    product = db.session.get(Product, current.product_id) if current and current.product_id else None
    user = db.session.get(StaffUser, current.marked_by_user_id) if current and current.marked_by_user_id else None
    products = list(db.session.scalars(select(Product).where(Product.account_id == account_id,
                                                             Product.active.is_(True)).order_by(Product.name)))
    return OutcomeView(conversation.id, current, product, user.display_name if user else None,
                       facts.settings_for(account_id).currency, products, len(rows))


def _quantity(text: str | None) -> int:
    try:
        value = int(str(text or "1").strip())
    except ValueError as exc:
        raise OutcomeError("Quantity must be a whole number.") from exc
    if not 1 <= value <= MAX_QUANTITY:
        raise OutcomeError(f"Quantity must be between 1 and {MAX_QUANTITY}.")
    return value


def _amount(text: str | None) -> Decimal:
    raw = str(text or "").strip().replace(" ", "")
    if "," in raw and "." not in raw:
        raw = raw.replace(",", ".")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise OutcomeError("Amount must be a number like 49.90.") from exc
    if not value.is_finite() or value < 0 or value > MAX_AMOUNT:
        raise OutcomeError("Amount must be zero or more.")
    if value != value.quantize(Decimal("0.01")):
        raise OutcomeError("Amount can have at most two decimals.")
    return value.quantize(Decimal("0.01"))


def _end_current(conversation_id: int) -> None:
    db.session.execute(update(SaleOutcome).where(SaleOutcome.conversation_id == conversation_id,
                                                 SaleOutcome.is_current.is_(True)).values(is_current=False))


def mark_sold(account_id: int, conversation_id: int, *, product_id: int | str | None, quantity: str | int | None,
              amount: str | None, user_id: int | None) -> SaleOutcome:
    """Record a sale; the conversation's product is the default. Commits."""
    conversation = _conversation(account_id, conversation_id)
    try:
        pid = int(product_id) if product_id not in (None, "") else conversation.product_id
    except (TypeError, ValueError) as exc:
        raise OutcomeError("Choose a product.") from exc
    product = db.session.get(Product, pid) if pid else None
    if product is None or product.account_id != account_id:
        raise OutcomeError("Choose a product from this account's catalogue.")
    qty, value = _quantity(quantity), _amount(amount)
    currency = facts.settings_for(account_id).currency
    _end_current(conversation.id)
    row = SaleOutcome(account_id=account_id, conversation_id=conversation.id, outcome="sold", product_id=product.id,
                      quantity=qty, amount=value, currency=currency, is_current=True, marked_by_user_id=user_id,
                      marked_at=utcnow())
    db.session.add(row)
    activity.record_event(account_id, conversation.id, "sold", actor_user_id=user_id,
                          detail=f"{qty} × {product.name}, {value} {currency}")
    db.session.commit()
    return row


def mark_not_sold(account_id: int, conversation_id: int, *, reason: str | None, user_id: int | None) -> SaleOutcome:
    """Record that this conversation did not lead to a sale, and why. Commits."""
    conversation = _conversation(account_id, conversation_id)
    text = " ".join(str(reason or "").split())
    if not text:
        raise OutcomeError("Say why it was not sold.")
    if len(text) > MAX_REASON:
        raise OutcomeError(f"Keep the reason under {MAX_REASON} characters.")
    _end_current(conversation.id)
    row = SaleOutcome(account_id=account_id, conversation_id=conversation.id, outcome="not_sold",
                      product_id=conversation.product_id, reason=text, is_current=True, marked_by_user_id=user_id,
                      marked_at=utcnow())
    db.session.add(row)
    activity.record_event(account_id, conversation.id, "not_sold", actor_user_id=user_id, detail=text)
    db.session.commit()
    return row


def clear_outcome(account_id: int, conversation_id: int, *, user_id: int | None = None) -> None:
    """The conversation has no outcome again (the rows stay as history). Commits."""
    conversation = _conversation(account_id, conversation_id)
    _end_current(conversation.id)
    activity.record_event(account_id, conversation.id, "outcome_cleared", actor_user_id=user_id)
    db.session.commit()
