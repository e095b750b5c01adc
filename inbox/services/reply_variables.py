"""Variables in reply templates: `{first_name}` `{username}` `{product}` `{price}` `{agent}`,
and for replies to comments `{post}` and `{link}`.

One small function, `fill_variables`, used by keyword automations. Saved replies (written
alongside) fill the same names; the two are meant to become one.
"""

from __future__ import annotations

import re

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
