"""The one display-name rule: @username, else name, else "Instagram user ·" and the id's last 4 digits."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from inbox.display import FALLBACK_HINT, display_name, is_fallback_name, name_hint


def person(username=None, name=None, igsid="17841400000004821"):
    return SimpleNamespace(username=username, name=name, igsid=igsid)


@pytest.mark.parametrize("identity, igsid, shown", [
    (person("alice", "Alice Liddell"), None, "@alice"),
    (person(None, "Alice Liddell"), None, "Alice Liddell"),
    (person(None, None), None, "Instagram user ·4821"),
    (None, "17841400000009876", "Instagram user ·9876"),
    (None, None, "Instagram user ·????"),
    (person("@alice"), None, "@alice"),  # imported with its @: never "@@alice"
    (person("  ", "  Alice \n Liddell "), None, "Alice Liddell"),  # blank username, name on one line
    (person("user_******", "A***e"), None, "Instagram user ·4821"),  # masked placeholders are not names
    (person("", ""), "9988776655", "Instagram user ·6655"),  # the caller's id wins over a missing one
])
def test_the_rule(identity, igsid, shown):
    assert display_name(identity, igsid) == shown


def test_a_fallback_name_carries_the_hint_that_a_refresh_may_help():
    assert is_fallback_name(None) and name_hint(None) == FALLBACK_HINT
    assert "Refresh identities" in FALLBACK_HINT
    assert is_fallback_name(person("user_******"))
    assert not is_fallback_name(person("alice")) and name_hint(person("alice")) == ""
    assert not is_fallback_name(person(None, "Alice")) and name_hint(person(None, "Alice")) == ""


def test_never_a_mask_whatever_the_id():
    for igsid in ("1", "12", "17841400000000000", " 123456 "):
        shown = display_name(None, igsid)
        assert "*" not in shown and shown.startswith("Instagram user ·")
