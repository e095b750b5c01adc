"""Variables in reply templates: `{first_name}` `{username}` `{product}` `{price}` `{agent}`,
and for replies to comments `{post}` and `{link}`.

The one place templates are filled: saved replies (the composer's `/` picker) and keyword
automations' private and public replies both use `customer_values` for the names every
template knows and `fill_variables` to put them in.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

VARIABLES = ("first_name", "username", "product", "price", "agent", "post", "link")
_VARIABLE = re.compile(r"\{\s*([A-Za-z_]+)\s*\}")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"[ \t]+([,.!?;:])")


def fill_variables(template: str, values: dict[str, str | None]) -> str:
    """The template with every `{name}` replaced; unknown or empty ones vanish, never left as `{...}`."""
    def value(match: re.Match) -> str:
        return str(values.get(match.group(1).lower()) or "")

    text = _VARIABLE.sub(value, template or "")
    lines = [_SPACE_BEFORE_PUNCTUATION.sub(r"\1", re.sub(r"[ \t]{2,}", " ", line)).strip()
             for line in text.split("\n")]
    return "\n".join(lines).strip()


def unknown_variables(template: str) -> list[str]:
    """Names in the template that are not variables (shown to whoever writes it)."""
    return sorted({m.group(1) for m in _VARIABLE.finditer(template or "") if m.group(1).lower() not in VARIABLES})


def price_text(product: Any | None) -> str:
    """A product's price as a reply says it ("45 EUR", "12.50 USD"); "" without one."""
    if product is None or product.price is None:
        return ""
    price = product.price if isinstance(product.price, Decimal) else Decimal(str(product.price))
    amount = f"{price:.2f}".rstrip("0").rstrip(".") if price == price.to_integral() else f"{price:.2f}"
    return f"{amount} {product.currency}".strip() if product.currency else amount


def customer_values(name: str | None, username: str | None, product: Any | None, agent: str | None) -> dict[str, str]:
    """The variables every template knows: the customer's first name (else their @username), their
    @username, the product and its price, and who answers (`agent`)."""
    name = (name or "").strip()
    username = (username or "").strip().lstrip("@")
    return {
        "first_name": name.split()[0] if name else username,
        "username": f"@{username}" if username else "",
        "product": product.name if product is not None else "",
        "price": price_text(product),
        "agent": (agent or "").strip(),
    }
