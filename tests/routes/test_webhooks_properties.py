"""Property: whatever a signed payload looks like, the answer is never a 5xx and no row is half-written."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from inbox.extensions import db
from inbox.models import Account, Attachment, Conversation, Message, Reaction, WebhookDelivery
from inbox.models.messages import DIRECTIONS, SENDER_KINDS
from inbox.services.ingest.outcomes import ACTIONS
from tests.support.webhooks import ACCOUNT, CUSTOMER, SECOND_ACCOUNT, encode, fixture, fixture_names, post

PAYLOADS = {name: json.loads(fixture(name)) for name in fixture_names()}

# Values Meta never sends but a broken proxy, a new API version or an attacker with the secret might.
odd_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "\U0001f600" * 40, "9" * 65, "m" * 600,
                     ACCOUNT, CUSTOMER, SECOND_ACCOUNT, "2026-01-01T00:00:00+0000", "1767225600", "react", "unreact",
                     "image", "ig_post", "https://lookaside.fbsbx.com/x", "<script>alert(1)</script>"]),
)
odd_values = st.one_of(odd_leaves, st.lists(odd_leaves, max_size=3),
                       st.dictionaries(st.sampled_from(["id", "mid", "text", "type", "payload", "url"]), odd_leaves,
                                       max_size=3))


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, prefix + (i,))


@st.composite
def mutated_payloads(draw):
    payload = copy.deepcopy(PAYLOADS[draw(st.sampled_from(sorted(PAYLOADS)))])
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(payload) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = payload
        for step in path[:-1]:
            parent = parent[step]
        operation = draw(st.sampled_from(["replace", "replace", "delete", "copy"]))
        if operation == "replace":
            parent[path[-1]] = draw(odd_values)
        elif operation == "delete":
            del parent[path[-1]]
        else:  # the same item twice, as a retried or batched event would be
            if isinstance(parent, list):
                parent.append(copy.deepcopy(parent[path[-1]]))
    body = encode(payload)
    if draw(st.integers(0, 19)) == 0:
        body = body[: draw(st.integers(0, len(body)))]  # cut short
    return body


def assert_nothing_half_written(app):
    with app.app_context():
        s = db.session
        account_ids = {a.id: a.ig_user_id for a in s.scalars(select(Account))}
        for d in s.scalars(select(WebhookDelivery)):
            assert d.status in ("processed", "failed", "ignored"), (d.id, d.status)
            assert len(d.results or []) == d.event_count
            assert all(r["action"] in ACTIONS for r in d.results or [])
        for c in s.scalars(select(Conversation)):
            assert c.customer_igsid not in account_ids.values()
            incoming = s.scalar(select(func.count()).where(Message.conversation_id == c.id, Message.direction == "in"))
            total = s.scalar(select(func.count()).where(Message.conversation_id == c.id))
            assert total >= 1, f"conversation {c.id} was left without its message"
            assert 0 <= c.unread_count <= incoming
        for m in s.scalars(select(Message)):
            conversation = s.get(Conversation, m.conversation_id)
            assert conversation.account_id == m.account_id
            assert m.direction in DIRECTIONS and m.sender_kind in SENDER_KINDS and m.meta_timestamp > 0
            assert m.mid, "only our own pending sends lack a mid"
            if m.is_deleted:
                assert m.text is None and not m.attachments
        for a in s.scalars(select(Attachment)):
            assert s.get(Message, a.message_id).account_id == a.account_id
        for r in s.scalars(select(Reaction)):
            assert s.get(Message, r.message_id).account_id == r.account_id
        s.rollback()


def test_mutated_payloads_never_get_a_5xx_or_leave_half_written_rows(app, client, account, second_account):

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
    @given(mutated_payloads())
    def check(body):
        response = post(client, body)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert_nothing_half_written(app)

    check()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) >= 60
