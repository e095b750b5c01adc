"""Deliveries that arrive at the same moment, over real HTTP, in server threads."""

from __future__ import annotations

import threading

import pytest
import requests
from sqlalchemy import func, select

from inbox.extensions import db
from inbox.models import Conversation, Message
from tests.support.settings import APP_SECRET
from tests.support.webhooks import T0, encode, envelope, message, sign


def post_together(url: str, bodies: list[bytes]) -> list[int]:
    """POST every body at once (a barrier releases the threads together)."""
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = [0] * len(bodies)

    def send(i: int, body: bytes):
        with requests.Session() as session:
            barrier.wait()
            response = session.post(url + "/webhooks/instagram", data=body, timeout=30,
                                    headers={"X-Hub-Signature-256": sign(body, APP_SECRET),
                                             "Content-Type": "application/json"})
            statuses[i] = response.status_code

    threads = [threading.Thread(target=send, args=(i, body)) for i, body in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.mark.postgres("SQLite takes one writer at a time, so the two deliveries cannot race")
def test_two_deliveries_for_one_new_customer_make_one_conversation(app, live_server, account):
    customers = [f"91000000000{n:05d}" for n in range(12)]
    for customer in customers:
        bodies = [encode(envelope(message(f"m-{customer}-{i}", f"hello {i}", customer=customer, ts=T0 + i)))
                  for i in range(2)]
        assert post_together(live_server.url, bodies) == [200, 200]
    with app.app_context():
        per_customer = dict(db.session.execute(
            select(Conversation.customer_igsid, func.count()).group_by(Conversation.customer_igsid)).all())
        assert per_customer == {customer: 1 for customer in customers}
        assert db.session.scalar(select(func.count()).select_from(Message)) == 2 * len(customers)
        unread = set(db.session.scalars(select(Conversation.unread_count)))
        assert unread == {2}  # neither message's count was lost


def test_the_same_delivery_twice_at_once_stores_one_message(app, live_server, account):
    for n in range(6):
        body = encode(envelope(message(f"m-dup-{n}", "only once", customer=f"92000000000{n:05d}")))
        assert post_together(live_server.url, [body, body]) == [200, 200]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Message)) == 6
        assert set(db.session.scalars(select(Conversation.unread_count))) == {1}


def test_concurrent_batches_for_the_same_customers_neither_deadlock_nor_double(app, live_server, account):
    customers = [f"93000000000{n:05d}" for n in range(30)]
    for round_ in range(4):
        # The same customers in opposite orders: the classic recipe for a deadlock.
        forward = [message(f"m-{round_}-f-{c}", "hi", customer=c, ts=T0 + i) for i, c in enumerate(customers)]
        backward = [message(f"m-{round_}-b-{c}", "hello", customer=c, ts=T0 + i) for i, c in enumerate(customers)][::-1]
        assert post_together(live_server.url, [encode(envelope(*forward)), encode(envelope(*backward))]) == [200, 200]
    with app.app_context():
        per_customer = dict(db.session.execute(
            select(Conversation.customer_igsid, func.count()).group_by(Conversation.customer_igsid)).all())
        assert per_customer == {c: 1 for c in customers}
        assert db.session.scalar(select(func.count()).select_from(Message)) == 4 * 2 * len(customers)
        assert set(db.session.scalars(select(Conversation.unread_count))) == {8}
