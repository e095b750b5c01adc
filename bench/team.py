"""The team layer: the inbox list with assignees and labels under each filter, and presence
signals (a keystroke's cost).

    .venv/bin/python bench/team.py [--conversations 20000] [--samples 100]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_team .venv/bin/python bench/team.py

An account with 6 members and 5 labels; --conversations conversations written in bulk, each
with a message, 80 % assigned round the team, 40 % with one or two labels, 2 % with a note
mentioning the member who looks. Requests go through the Flask app in this process (test
client, logged in): the list page's fragment (`/list`, 30 rows) for All, Mine, Unassigned, a
person, a label and Mentions; then `presence.signal` ("typing" over and over, as a burst of
keystrokes sends it: one Redis SET NX + EXPIRE, published only on a change) and a "view"
heartbeat.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _identities_setup import bench_app  # noqa: E402


def setup(app, n: int) -> tuple[int, list, int, int]:
    from sqlalchemy import insert, select

    from inbox.extensions import db
    from inbox.models import (Conversation, ConversationLabel, Label, Message, Note, NoteMention)
    from inbox.services import accounts, staff

    now = datetime.now(timezone.utc)
    with app.app_context():
        account = accounts.add_account("17841400009999999", "bench.shop", token="T")
        people = [staff.create_user(f"member{i}@bench.example", "bench password 1", name=f"Member {i}")
                  for i in range(6)]
        for i, user in enumerate(people):
            staff.grant(user.id, account.id, "admin" if i == 0 else "agent")
        labels = []
        for name in ("VIP", "Wholesale", "Follow up", "Return", "Gift"):
            label = Label(account_id=account.id, name=name, color="blue", created_at=now)
            db.session.add(label)
            labels.append(label)
        db.session.commit()
        user_ids, label_ids = [u.id for u in people], [label.id for label in labels]
        db.session.execute(insert(Conversation), [
            {"account_id": account.id, "customer_igsid": str(10**15 + i), "unread_count": i % 7 == 0,
             "status": "open", "last_message_at": now - timedelta(seconds=i), "last_message_preview": "hello",
             "assignee_user_id": user_ids[i % 6] if i % 5 else None, "created_at": now, "updated_at": now}
            for i in range(n)])
        ids = list(db.session.scalars(select(Conversation.id).where(Conversation.account_id == account.id)
                                      .order_by(Conversation.id)))
        db.session.execute(insert(Message), [
            {"account_id": account.id, "conversation_id": c, "mid": f"mid.{c}", "direction": "in",
             "sender_kind": "customer", "sender_igsid": str(c), "text": "hello", "meta_timestamp": 1, "created_at": now,
             "updated_at": now, "is_unsupported": False, "is_deleted": False, "edit_count": 0} for c in ids])
        rows = []
        for k, c in enumerate(ids):
            if k % 5 < 2:
                rows.append({"account_id": account.id, "conversation_id": c, "label_id": label_ids[k % 5],
                             "created_at": now})
                if k % 10 == 0:
                    rows.append({"account_id": account.id, "conversation_id": c, "label_id": label_ids[4],
                                 "created_at": now})
        db.session.execute(insert(ConversationLabel), rows)
        for c in ids[::50]:
            note = Note(account_id=account.id, conversation_id=c, author_user_id=user_ids[1], text="@member0 look")
            db.session.add(note)
            db.session.flush()
            db.session.add(NoteMention(account_id=account.id, note_id=note.id, conversation_id=c, user_id=user_ids[0]))
        db.session.commit()
        return account.id, [(u_id, f"member{i}@bench.example") for i, u_id in enumerate(user_ids)], label_ids[0], ids[0]


def timed(fn, samples: int) -> tuple[float, float]:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    with bench_app(os.environ.get("DATABASE_URL"), WTF_CSRF_ENABLED=False) as (app, _sim):
        started = time.perf_counter()
        account_id, people, label_id, first = setup(app, args.conversations)
        print(f"loaded {args.conversations} conversations in {time.perf_counter() - started:.1f} s "
              f"({app.config['SQLALCHEMY_DATABASE_URI'].split(':')[0]})")
        client = app.test_client()
        client.post("/login", data={"email": people[0][1], "password": "bench password 1"})
        base = f"/accounts/{account_id}/list"
        for name, query in (("All", ""), ("Mine", "?assignee=me"), ("Unassigned", "?assignee=none"),
                            ("A person", f"?assignee={people[3][0]}"), ("A label", f"?label={label_id}"),
                            ("Mentions", "?view=mentions")):
            def get(query=query):
                response = client.get(base + query, headers={"HX-Request": "true"})
                assert response.status_code == 200
            p50, p95 = timed(get, args.samples)
            print(f"list {name:<11} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
        from inbox.services import presence
        with app.test_request_context():
            n = 2000
            start = time.perf_counter()
            for _ in range(n):
                presence.signal(account_id, first, people[1][0], "typing")
            per = (time.perf_counter() - start) / n * 1e6
            print(f"presence typing (repeat, no publish): {per:.0f} µs each, {n / (per * n / 1e6):,.0f}/s")
            start = time.perf_counter()
            for i in range(n):
                presence.signal(account_id, first, people[1][0], "idle" if i % 2 else "typing")
            per = (time.perf_counter() - start) / n * 1e6
            print(f"presence typing/idle (every one published): {per:.0f} µs each")


if __name__ == "__main__":
    main()
