"""Graph field expansion: `participants,messages.limit(20){id,from,message}` and back."""

from __future__ import annotations

from dataclasses import dataclass, field


class FieldSyntaxError(ValueError):
    pass


@dataclass
class FieldSpec:
    name: str
    params: dict[str, str] = field(default_factory=dict)  # .limit(20) -> {"limit": "20"}
    sub: list[FieldSpec] | None = None  # {id,from}

    def unparse(self) -> str:
        text = self.name + "".join(f".{k}({v})" for k, v in self.params.items())
        if self.sub is not None:
            text += "{" + unparse(self.sub) + "}"
        return text


def unparse(specs: list[FieldSpec]) -> str:
    return ",".join(spec.unparse() for spec in specs)


def parse(text: str | None, default: str = "id") -> list[FieldSpec]:
    """Parse a `fields` parameter; an empty one means the node's default fields."""
    text = (text or "").strip() or default
    specs, pos = _fields(text.replace(" ", ""), 0)
    if pos != len(text.replace(" ", "")):
        raise FieldSyntaxError(f"Syntax error \"Expected end of string instead of \"{text[pos:pos + 1]}\".\" "
                               f"at character {pos}: {text}")
    return specs


def _fields(text: str, pos: int) -> tuple[list[FieldSpec], int]:
    specs = []
    while True:
        spec, pos = _field(text, pos)
        specs.append(spec)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        return specs, pos


def _name(text: str, pos: int) -> tuple[str, int]:
    start = pos
    while pos < len(text) and (text[pos].isalnum() or text[pos] == "_"):
        pos += 1
    if start == pos:
        raise FieldSyntaxError(f"Syntax error \"Field name expected\" at character {pos}: {text}")
    return text[start:pos], pos


def _field(text: str, pos: int) -> tuple[FieldSpec, int]:
    name, pos = _name(text, pos)
    spec = FieldSpec(name)
    while pos < len(text) and text[pos] in ".{":
        if text[pos] == ".":
            key, pos = _name(text, pos + 1)
            if pos >= len(text) or text[pos] != "(":
                raise FieldSyntaxError(f"Syntax error \"Expected (\" at character {pos}: {text}")
            end = text.find(")", pos)
            if end < 0:
                raise FieldSyntaxError(f"Syntax error \"Expected )\" at character {pos}: {text}")
            spec.params[key] = text[pos + 1:end]
            pos = end + 1
        else:
            if spec.sub is not None:
                raise FieldSyntaxError(f"Syntax error \"Unexpected {{\" at character {pos}: {text}")
            spec.sub, pos = _fields(text, pos + 1)
            if pos >= len(text) or text[pos] != "}":
                raise FieldSyntaxError(f"Syntax error \"Expected }}\" at character {pos}: {text}")
            pos += 1
    return spec, pos
