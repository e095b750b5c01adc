"""services/conversations.py through the pages staff use: filters, search, pagination, read state, done/reopen.

Rows come from real webhook deliveries (ingestion) unless a test needs thousands of them.
Runs on SQLite (FTS5) and, with DATABASE_URL, on PostgreSQL (pg_trgm).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from inbox.extensions import db, get_redis
from inbox.models import Conversation
from inbox.live import publish
from inbox.services import conversations
from tests.support import stored
from tests.support.live import drain
from tests.support.webhooks import ACCOUNT, SECOND_ACCOUNT, T0, envelope, message, post


def _say(client, customer: str, text: str | None, *, mid: str | None = None, ts: int = T0,
         account: str = ACCOUNT, echo: bool = False, **fields):
    mid = mid or f"mid.{customer}.{ts}.{abs(hash(text)) % 10**8}"
    response = post(client, envelope(message(mid, text, customer=customer, account=account, ts=ts, echo=echo,
                                             **fields), account=account))
    assert response.status_code == 200
    return mid


def _conversation(app, customer: str, account_id: int | None = None) -> Conversation:
    return next(c for c in stored.conversations(app)
                if c.customer_igsid == customer and (account_id is None or c.account_id == account_id))


def _ids_in(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<li id="conversation-(\d+)"', html)]


def _list(client, account, **args) -> list[int]:
    response = client.get(f"/accounts/{account.id}/list", query_string=args, headers={"HX-Request": "true"})
    assert response.status_code == 200
    return _ids_in(response.get_data(as_text=True))


# --- Filters ----------------------------------------------------------------------------

def test_filters_unread_no_product_by_product_and_status(app, client, factory, account, agent):
    for i, customer in enumerate(("9001", "9002", "9003", "9004")):
        _say(client, customer, f"hello {i}", ts=T0 + i * 1000)
    c1, c2, c3, c4 = (_conversation(app, c) for c in ("9001", "9002", "9003", "9004"))
    bag_id = factory.product(account, "Woven bag", "BAG-1").id
    dress = factory.product(account, "Red dress", "RD-1")
    with app.app_context():
        db.session.execute(update(Conversation).where(Conversation.id == c1.id).values(product_id=bag_id))
        db.session.execute(update(Conversation).where(Conversation.id == c2.id).values(product_id=dress.id))
        db.session.commit()
    client.get(f"/accounts/{account.id}/c/{c3.id}")  # read
    client.post(f"/accounts/{account.id}/c/{c4.id}/done")

    assert _list(client, account) == [c4.id, c3.id, c2.id, c1.id]
    assert _list(client, account, view="unread") == [c4.id, c2.id, c1.id]
    assert _list(client, account, view="no_product") == [c4.id, c3.id]
    assert _list(client, account, product=bag_id) == [c1.id]
    assert _list(client, account, status="done") == [c4.id]
    assert _list(client, account, status="open", view="unread") == [c2.id, c1.id]
    # Nonsense falls back to the defaults instead of failing.
    assert _list(client, account, view="<x>", status="nope", product="abc") == [c4.id, c3.id, c2.id, c1.id]

    page = client.get(f"/accounts/{account.id}/?view=unread&product={bag_id}").get_data(as_text=True)
    assert _ids_in(page) == [c1.id]
    assert "Woven bag" in page  # the product filter and the row's chip
    empty = client.get(f"/accounts/{account.id}/list", query_string={"status": "done", "product": bag_id},
                       headers={"HX-Request": "true"})
    assert "No conversations match" in empty.get_data(as_text=True)
    assert empty.headers["HX-Push-Url"].endswith(f"?product={bag_id}&status=done")


def test_row_marks_who_wrote_last(app, client, account, agent):
    _say(client, "9001", "hi")
    _say(client, "9001", "We have it in M", ts=T0 + 1000, echo=True)
    html = client.get(f"/accounts/{account.id}/").get_data(as_text=True)
    assert "From the Instagram app:</span> We have it in M" in html
    c = _conversation(app, "9001")
    with app.app_context():
        db.session.execute(update(Conversation).where(Conversation.id == c.id).values(
            last_message_sender_kind="staff"))
        db.session.commit()
    assert "You:</span> We have it in M" in client.get(f"/accounts/{account.id}/").get_data(as_text=True)
    with app.app_context():
        db.session.execute(update(Conversation).where(Conversation.id == c.id).values(
            last_message_sender_kind="automation"))
        db.session.commit()
    assert "Auto:</span> We have it in M" in client.get(f"/accounts/{account.id}/").get_data(as_text=True)


# --- Search -----------------------------------------------------------------------------

@pytest.fixture(params=["walk", "index"])
def search_path(request, app_config):
    """Both PostgreSQL strategies: the walk in list order (common text) and the trigram index (rare)."""
    app_config["SEARCH_WALK_WINDOW"] = 1000 if request.param == "walk" else 1
    app_config["SEARCH_NAME_SET_MAX"] = 0  # names walked too (the direct lookup runs in the other tests)
    return request.param


def test_search_finds_username_name_and_message_text(search_path, app, client, factory, account, second_account,
                                                      agent):
    _say(client, "9001", "Do you ship to Lisbon?")
    _say(client, "9002", "hello")
    _say(client, "9003", "100% linen? and the_size")
    _say(client, "9004", "nothing to see")
    factory.identity(account, "9002", username="amara.k", name="Amara Kone")
    factory.identity(account, "9004", name="Zoë Ångström")
    _say(client, "9001", "Do you ship to Lisbon too?", account=SECOND_ACCOUNT, mid="mid.other.1")
    c1, c2, c3, c4 = (_conversation(app, c, account.id) for c in ("9001", "9002", "9003", "9004"))

    assert _list(client, account, q="lisbon") == [c1.id]          # text, any case; not the other account's
    assert _list(client, account, q="SHIP TO") == [c1.id]
    assert _list(client, account, q="@amara") == [c2.id]          # username, with or without @
    assert _list(client, account, q="kone") == [c2.id]            # name
    assert _list(client, account, q="am") == [c2.id]              # short: names only
    assert _list(client, account, q="100%") == [c3.id]            # % and _ are plain characters
    assert _list(client, account, q="e_s") == [c3.id]
    assert _list(client, account, q="0% l") == [c3.id]
    assert _list(client, account, q="zoë") == [c4.id]
    assert _list(client, account, q='"; drop table messages; --') == []
    assert _list(client, account, q="lisbon", status="done") == []
    # Edits and unsends keep the index right.
    post(client, envelope({"sender": {"id": "9001"}, "recipient": {"id": ACCOUNT}, "timestamp": T0 + 5,
                           "message_edit": {"mid": stored.messages(app, conversation_id=c1.id)[0].mid,
                                            "text": "Do you ship to Porto?", "num_edit": 1}}))
    assert _list(client, account, q="lisbon") == []
    assert _list(client, account, q="porto") == [c1.id]
    page = client.get(f"/accounts/{account.id}/?q=porto").get_data(as_text=True)
    assert _ids_in(page) == [c1.id] and 'value="porto"' in page
    assert second_account.id != account.id


def test_a_phrase_matches_as_typed_wherever_its_words_start_and_end(search_path, app, client, account, agent):
    """Phrases (on PostgreSQL through their word pairs first) match the text as a substring, as one word does."""
    texts = {"9101": "We ship tomorrow", "9102": "any relationship to it", "9103": "Do you SHIP TO Lyon?",
             "9104": "ship, to be sure", "9105": "to ship", "9106": "ship\nto", "9107": "the red bag please",
             "9108": "a red bag", "9109": "Ωmega ÉTÉ sale"}
    for customer, said in texts.items():
        _say(client, customer, said)
    ids = {customer: _conversation(app, customer, account.id).id for customer in texts}

    def found(q):
        return sorted(_list(client, account, q=q))

    assert found("ship to") == sorted(ids[c] for c in ("9101", "9102", "9103"))
    assert found("hip t") == sorted(ids[c] for c in ("9101", "9102", "9103"))
    assert found("the red bag") == [ids["9107"]]
    assert found("e red bag p") == [ids["9107"]]
    assert found("d bag") == sorted(ids[c] for c in ("9107", "9108"))  # a one-letter end: the trigram index
    assert found("a red") == [ids["9108"]]
    assert found("ωmega été") == [ids["9109"]]
    assert found("bag lyon") == []


# --- Pagination -------------------------------------------------------------------------

def test_infinite_scroll_walks_every_conversation_once(app, client, account, agent):
    # 130 conversations: runs of equal times (ties broken by id) and a few without any time.
    with app.app_context():
        rows = []
        for i in range(130):
            at = None if i % 43 == 0 else conversations.decode_cursor(f"{(T0 + (i // 4) * 1000) * 1000}.0")[0]
            rows.append(Conversation(account_id=account.id, customer_igsid=f"77{i:04d}", last_message_at=at,
                                     last_message_preview=f"message {i}", unread_count=i % 2, status="open"))
        db.session.add_all(rows)
        db.session.commit()
        expected = [c.id for c in sorted(rows, key=lambda c: (c.last_message_at is not None,
                                                              c.last_message_at or 0, c.id), reverse=True)]
    html = client.get(f"/accounts/{account.id}/").get_data(as_text=True)
    seen = _ids_in(html)
    pages = 1
    while True:
        more = re.search(r'<li class="conv-more" hx-get="([^"]+)"', html)
        if not more:
            break
        assert 'hx-trigger="intersect once"' in html  # htmx's revealed misses scrolling inside the list
        html = client.get(more.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"}).get_data(as_text=True)
        seen += _ids_in(html)
        pages += 1
    assert pages == -(-130 // conversations.PAGE_SIZE)
    assert seen == expected
    # The same walk under a filter keeps the filter on every page.
    unread = [cid for cid, row in zip(expected, sorted(rows, key=lambda c: (c.last_message_at is not None, c.last_message_at or 0, c.id), reverse=True)) if row.unread_count]
    with app.app_context():
        walked, cursor = [], None
        while True:
            page = conversations.list_conversations(account.id, conversations.Filters(view="unread"), cursor, limit=20)
            walked += [r.conversation.id for r in page.rows]
            cursor = page.next_cursor
            if not cursor:
                break
    assert walked == unread
    # A malformed cursor is the first page, not an error.
    assert _list(client, account, cursor="garbage")[:3] == expected[:3]


# --- Threads, read state, status ----------------------------------------------------------

def test_another_accounts_conversation_is_404(app, client, account, second_account, agent):
    _say(client, "9001", "secret of the other shop", account=SECOND_ACCOUNT, mid="mid.b.1")
    theirs = _conversation(app, "9001")
    for method, path in (("GET", "c/{}"), ("GET", "c/{}/row"), ("GET", "c/{}/earlier"), ("POST", "c/{}/done"),
                         ("POST", "c/{}/reopen")):
        response = client.open(f"/accounts/{account.id}/" + path.format(theirs.id), method=method)
        assert response.status_code == 404, path
        assert "secret" not in response.get_data(as_text=True)
    assert stored.conversations(app)[0].status == "open"
    assert stored.conversations(app)[0].unread_count == 1


def test_opening_a_thread_reads_it_and_tells_other_tabs(app, client, account, agent):
    _say(client, "9001", "one")
    _say(client, "9001", "two", ts=T0 + 1)
    c = _conversation(app, "9001")
    assert c.unread_count == 2
    with app.app_context():
        pubsub = get_redis(app).pubsub()
        pubsub.subscribe(publish.channel(account.id))
        pubsub.get_message(timeout=1)
    response = client.get(f"/accounts/{account.id}/c/{c.id}", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html.lstrip().startswith("<section id=\"thread\"")
    assert f'<li id="conversation-{c.id}"' in html and 'hx-swap-oob="true"' in html
    assert "unread-badge" not in html
    assert _conversation(app, "9001").unread_count == 0
    assert drain(pubsub, close=False) == [
        {"type": "conversation.updated", "account_id": account.id, "conversation_id": c.id}]
    # Opening it again changes nothing and announces nothing.
    client.get(f"/accounts/{account.id}/c/{c.id}")
    assert drain(pubsub) == []


def test_done_then_reopen_and_a_new_customer_message_reopens(app, client, account, agent):
    _say(client, "9001", "thanks, got it!")
    c = _conversation(app, "9001")
    response = client.post(f"/accounts/{account.id}/c/{c.id}/done", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert 'id="thread-status"' in html and "Reopen" in html
    assert f'<li id="conversation-{c.id}"' in html and "chip-done" in html
    assert _conversation(app, "9001").status == "done"
    response = client.post(f"/accounts/{account.id}/c/{c.id}/reopen")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/c/{c.id}")
    assert _conversation(app, "9001").status == "open"

    client.post(f"/accounts/{account.id}/c/{c.id}/done")
    _say(client, "9001", "one more question", ts=T0 + 10)          # the customer writes again
    again = _conversation(app, "9001")
    assert again.status == "open" and again.unread_count == 2
    client.post(f"/accounts/{account.id}/c/{c.id}/done")
    _say(client, "9001", "Sure!", ts=T0 + 20, echo=True)              # our own reply does not reopen
    assert _conversation(app, "9001").status == "done"


def test_status_change_needs_csrf(app, client, account, agent):
    _say(client, "9001", "hi")
    c = _conversation(app, "9001")
    assert client.post(f"/accounts/{account.id}/c/{c.id}/done", csrf=False).status_code == 400
    assert _conversation(app, "9001").status == "open"


def test_long_thread_shows_newest_and_loads_earlier(app, client, account, agent):
    items = [message(f"mid.long.{i}", f"line {i}", customer="9001", ts=T0 + i * 1000)
             for i in range(conversations.THREAD_PAGE_SIZE + 30)]
    for start in range(0, len(items), 40):
        assert post(client, {"object": "instagram", "entry": [
            {"id": ACCOUNT, "time": T0, "messaging": [item]} for item in items[start:start + 40]]}).status_code == 200
    c = _conversation(app, "9001")
    html = client.get(f"/accounts/{account.id}/c/{c.id}").get_data(as_text=True)
    texts = re.findall(r'<div class="msg-text">line (\d+)</div>', html)
    assert texts[0] == "30" and texts[-1] == str(conversations.THREAD_PAGE_SIZE + 29) and len(texts) == conversations.THREAD_PAGE_SIZE
    earlier = re.search(r'hx-get="([^"]+/earlier[^"]*)"', html).group(1).replace("&amp;", "&")
    older = client.get(earlier, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert re.findall(r'<div class="msg-text">line (\d+)</div>', older) == [str(i) for i in range(30)]
    assert f"""hx-swap-oob='afterbegin:#thread[data-conversation-id="{c.id}"] #messages'""" in older
    assert "/earlier" not in older
