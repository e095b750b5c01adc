"""The catalogue: an account's products, their SKUs and keywords, and matching them in captions."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from functools import lru_cache
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import g, has_app_context
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...models import Conversation, PostProduct, Product

MAX_IMPORT_ROWS = 5000
MAX_KEYWORDS = 50


class ProductError(ValueError):
    """Bad input for the catalogue or a link: the message is shown to staff as is."""


class NotFoundError(LookupError):
    """An id that is not in this account (routes answer 404)."""


def short_id(value: str | None) -> str:
    """A long Instagram id as people read it: 17912345678901234 -> 1791…1234."""
    value = str(value or "")
    return value if len(value) <= 10 else f"{value[:4]}…{value[-4:]}"


def split_keywords(value: str | list[str] | None) -> list[str]:
    """Comma-separated keywords, trimmed, blanks and repeats (any case) dropped."""
    parts = value if isinstance(value, list) else str(value or "").replace("\n", ",").split(",")
    out, seen = [], set()
    for part in parts:
        word = " ".join(str(part).split())
        if word and word.casefold() not in seen:
            seen.add(word.casefold())
            out.append(word[:100])
    return out[:MAX_KEYWORDS]


@lru_cache(maxsize=8192)
def _pattern(term: str) -> re.Pattern:
    # Word boundaries that also hold for SKUs starting or ending with "-" or digits.
    return re.compile(rf"(?<!\w){re.escape(term)}(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class Match:
    product_id: int
    sku: str
    name: str
    matched: tuple[str, ...]  # "SKU RD-1", "keyword “red dress”"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.product_id, "sku": self.sku, "name": self.name, "matched": list(self.matched)}


def match_products(products: list[Product], caption: str | None) -> list[Match]:
    """The products whose SKU or a keyword appears in the caption (word boundaries, any case)."""
    if not caption:
        return []
    out = []
    for product in products:
        hits = []
        if product.sku and _pattern(product.sku).search(caption):
            hits.append(f"SKU {product.sku}")
        for word in split_keywords(product.keywords):
            if _pattern(word).search(caption):
                hits.append(f"keyword “{word}”")
        if hits:
            out.append(Match(product.id, product.sku, product.name, tuple(hits)))
    return out


# Compiled catalogues per account, reused while the active products are unchanged.
_CATALOGUES: dict[int, tuple[tuple, list]] = {}


def _catalogue(account_id: int) -> list[tuple[int, str, str, list[tuple[str, re.Pattern]]]]:
    """(id, sku, name, [(what, pattern)]) of the active products, compiled once per change."""
    active = (Product.account_id == account_id, Product.active.is_(True))
    key = tuple(db.session.execute(select(func.count(), func.max(Product.updated_at), func.sum(Product.id))
                                   .where(*active)).one())
    cached = _CATALOGUES.get(account_id)
    if cached is not None and cached[0] == key:
        return cached[1]
    entries = []
    for pid, sku, name, keywords in db.session.execute(
            select(Product.id, Product.sku, Product.name, Product.keywords).where(*active)
            .order_by(func.lower(Product.name), Product.id)):
        terms = [(f"SKU {sku}", _pattern(sku))] if sku else []
        terms += [(f"keyword “{word}”", _pattern(word)) for word in split_keywords(keywords)]
        entries.append((pid, sku, name, terms))
    _CATALOGUES[account_id] = (key, entries)
    return entries


def match_catalogue(account_id: int, caption: str | None) -> list[Match]:
    """match_products over the account's active catalogue (compiled patterns cached)."""
    if not caption:
        return []
    out = []
    for pid, sku, name, terms in _catalogue(account_id):
        hits = tuple(what for what, pattern in terms if pattern.search(caption))
        if hits:
            out.append(Match(pid, sku, name, hits))
    return out


def _clean_product(name: Any, sku: Any, price: Any = None, keywords: Any = None,
                   currency: Any = None) -> dict[str, Any]:
    name = " ".join(str(name or "").split())
    sku = str(sku or "").strip()
    if not name:
        raise ProductError("A product needs a name.")
    if len(name) > 255:
        raise ProductError("The name is longer than 255 characters.")
    if not sku:
        raise ProductError("A product needs a SKU.")
    if len(sku) > 64 or any(c.isspace() for c in sku):
        raise ProductError(f"The SKU {sku[:64]!r} must be at most 64 characters with no spaces.")
    value = None
    if price not in (None, ""):
        try:
            value = Decimal(str(price).strip().replace(",", "."))
        except InvalidOperation:
            raise ProductError(f"The price {str(price)[:20]!r} is not a number.") from None
        if not value.is_finite() or value < 0 or value >= Decimal("1e10"):
            raise ProductError(f"The price {str(price)[:20]!r} is out of range.")
        value = value.quantize(Decimal("0.01"))
    currency = str(currency or "").strip().upper() or None
    if currency and not re.fullmatch(r"[A-Z]{3}", currency):
        raise ProductError(f"The currency {currency[:10]!r} is not a 3-letter code.")
    return {"name": name, "sku": sku, "price": value, "currency": currency,
            "keywords": ", ".join(split_keywords(keywords))}


def _sku_taken(account_id: int, sku: str, *, other_than: int | None = None) -> Product | None:
    query = select(Product).where(Product.account_id == account_id, func.lower(Product.sku) == sku.lower())
    if other_than is not None:
        query = query.where(Product.id != other_than)
    return db.session.scalars(query).first()


def create_product(account_id: int, *, name: Any, sku: Any, price: Any = None, keywords: Any = None,
                   currency: Any = None) -> Product:
    """Add a product to the account's catalogue (committed); ProductError on bad input."""
    values = _clean_product(name, sku, price, keywords, currency)
    taken = _sku_taken(account_id, values["sku"])
    if taken is not None:
        raise ProductError(f"SKU {values['sku']} is already used by {taken.name}.")
    product = Product(account_id=account_id, active=True, **values)
    db.session.add(product)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ProductError(f"SKU {values['sku']} is already used.") from None
    return product


def update_product(account_id: int, product_id: int, *, name: Any, sku: Any, price: Any = None,
                   keywords: Any = None, currency: Any = None) -> Product:
    """Change a product (committed)."""
    product = get_product(account_id, product_id)
    values = _clean_product(name, sku, price, keywords, currency)
    taken = _sku_taken(account_id, values["sku"], other_than=product.id)
    if taken is not None:
        raise ProductError(f"SKU {values['sku']} is already used by {taken.name}.")
    for key, value in values.items():
        setattr(product, key, value)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ProductError(f"SKU {values['sku']} is already used.") from None
    return product


def set_active(account_id: int, product_id: int, active: bool) -> Product:
    """Archive (or restore) a product: archived ones are not matched, offered or assigned."""
    product = get_product(account_id, product_id)
    product.active = active
    db.session.commit()
    return product


def get_product(account_id: int, product_id: int) -> Product:
    product = db.session.scalars(select(Product).where(Product.id == product_id,
                                                       Product.account_id == account_id)).first()
    if product is None:
        raise NotFoundError("No such product.")
    return product


def find_by_sku(account_id: int, sku: str) -> Product | None:
    return db.session.scalars(select(Product).where(Product.account_id == account_id,
                                                    func.lower(Product.sku) == str(sku).strip().lower())).first()


def list_products(account_id: int, *, include_archived: bool = False) -> list[Product]:
    query = select(Product).where(Product.account_id == account_id)
    if not include_archived:
        query = query.where(Product.active.is_(True))
    return list(db.session.scalars(query.order_by(Product.active.desc(), func.lower(Product.name), Product.id)))


def product_stats(account_id: int) -> dict[int, dict[str, int]]:
    """Per product: linked posts and conversations assigned to it."""
    posts = dict(db.session.execute(select(PostProduct.product_id, func.count())
                                    .where(PostProduct.account_id == account_id)
                                    .group_by(PostProduct.product_id)).all())
    convs = dict(db.session.execute(select(Conversation.product_id, func.count())
                                    .where(Conversation.account_id == account_id, Conversation.product_id.is_not(None))
                                    .group_by(Conversation.product_id)).all())
    return {pid: {"posts": posts.get(pid, 0), "conversations": convs.get(pid, 0)} for pid in set(posts) | set(convs)}


@dataclass
class ImportReport:
    created: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"line", "sku", "name", "reason"}
    error: str | None = None  # the whole file was refused

    @property
    def ok(self) -> bool:
        return self.error is None


def import_products_csv(account_id: int, data: bytes | str) -> ImportReport:
    """Add products from a CSV (columns sku, name, and optionally price, currency, keywords).

    Rows that cannot be added (SKU already in the catalogue or earlier in the file, no
    name, no SKU, a bad price) are reported with their line and reason; the others are
    added together in one commit.
    """
    report = ImportReport()
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            report.error = "The file is not UTF-8 text. Save it as CSV (UTF-8) and try again."
            return report
    reader = csv.DictReader(io.StringIO(data))
    try:
        header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        report.error = f"The file is not a CSV: {exc}."
        return report
    if "sku" not in header or "name" not in header:
        report.error = "The first line must name the columns, with at least sku and name."
        return report
    reader.fieldnames = header
    existing = {sku.lower(): name for sku, name in db.session.execute(
        select(Product.sku, Product.name).where(Product.account_id == account_id))}
    in_file: dict[str, int] = {}
    try:
        for row in reader:
            line = reader.line_num
            if len(report.created) + len(report.rejected) >= MAX_IMPORT_ROWS:
                report.error = f"Only the first {MAX_IMPORT_ROWS} rows were read; split the file."
                break
            if not any((v or "").strip() for k, v in row.items() if k is not None and isinstance(v, str)):
                continue  # blank line
            sku, name = (row.get("sku") or "").strip(), (row.get("name") or "").strip()
            entry = {"line": line, "sku": sku[:64], "name": name[:255]}
            try:
                values = _clean_product(name, sku, row.get("price"), row.get("keywords"), row.get("currency"))
            except ProductError as exc:
                report.rejected.append({**entry, "reason": str(exc)})
                continue
            key = values["sku"].lower()
            if key in existing:
                report.rejected.append({**entry, "reason": f"SKU {values['sku']} is already in the catalogue "
                                                           f"({existing[key]})."})
                continue
            if key in in_file:
                report.rejected.append({**entry, "reason": f"SKU {values['sku']} already appears on line "
                                                           f"{in_file[key]} of this file."})
                continue
            in_file[key] = line
            db.session.add(Product(account_id=account_id, active=True, **values))
            report.created.append(entry)
    except csv.Error as exc:
        db.session.rollback()
        return ImportReport(error=f"The file is not a valid CSV (line {reader.line_num}): {exc}.")
    try:
        db.session.commit()
    except IntegrityError:  # someone added one of these SKUs meanwhile
        db.session.rollback()
        return ImportReport(error="Another change to the catalogue happened during the import; nothing was "
                                  "added. Import the file again.")
    return report


def cached_products(account_id: int) -> list[Product]:
    """list_products, once per request (templates ask for every card and panel)."""
    if not has_app_context():
        return list_products(account_id)
    cache = g.setdefault("_products_by_account", {})
    if account_id not in cache:
        cache[account_id] = list_products(account_id)
    return cache[account_id]
