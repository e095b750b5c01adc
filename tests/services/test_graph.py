"""The Graph API client against the simulator over real HTTP: calls, paging, errors, tokens."""

from __future__ import annotations

import logging

import pytest
import requests

from inbox.services import graph
from inbox.services.graph import (
    AmbiguousSendFailure, ConsentRequired, GraphClient, InvalidRequest, NotFound, OutsideWindow, PermissionDenied,
    RateLimited, TokenInvalid, Transient, UserUnavailable,
)


@pytest.fixture
def client_for(app):
    """Build a GraphClient for an Account row inside the app context."""
    def make(account):
        with app.app_context():
            return GraphClient.for_account(account)
    return make


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def test_me_names_the_webhook_id_as_user_id(sim, connected, client_for, ctx):
    me = client_for(connected.account).me()
    assert me["user_id"] == connected.account.ig_user_id
    assert me["id"] != me["user_id"]  # /me id is app-scoped; using it for webhooks would be a bug
    assert me["username"] == connected.ig.username


def test_conversations_come_newest_first_across_pages(sim, connected, client_for, ctx):
    shop = connected.ig
    customers = [shop.add_customer(f"c{i}") for i in range(23)]
    for i, customer in enumerate(customers):
        customer.sends_text(f"hello {i}", at=1_700_000_000 + i * 60, deliver=False)

    conversations = list(client_for(connected.account).list_conversations(
        fields="id,updated_time,participants", limit=10))

    assert len(conversations) == 23
    usernames = [c["participants"]["data"][1]["username"] for c in conversations]
    assert usernames == [f"c{i}" for i in reversed(range(23))]
    assert conversations[0]["updated_time"].endswith("+0000")
    assert [c.code for c in sim.calls_to("conversations")] == [None, None, None]  # three pages, paging.next


def test_find_conversation_by_customer(sim, connected, client_for, ctx):
    alice = connected.ig.add_customer("alice")
    connected.ig.add_customer("bob").sends_text("hi", deliver=False)
    alice.sends_text("hi", deliver=False)
    client = client_for(connected.account)
    assert client.find_conversation(alice.igsid) == connected.ig.conversation_id(alice)
    assert client.find_conversation("7999999999999999") is None


def test_only_the_twenty_newest_messages_carry_details(sim, connected, client_for, ctx):
    alice = connected.ig.add_customer("alice")
    sent = [alice.sends_text(f"message {i}", at=1_700_000_000 + i, deliver=False) for i in range(25)]
    client = client_for(connected.account)
    conversation_id = connected.ig.conversation_id(alice)

    messages = list(client.conversation_messages(conversation_id, fields="id,created_time,message,from", limit=10))

    assert [m["id"] for m in messages] == [s.mid for s in reversed(sent)]  # every id, newest first
    assert [m.get("message") for m in messages[:20]] == [f"message {i}" for i in reversed(range(5, 25))]
    assert all("message" not in m and "from" not in m for m in messages[20:])
    assert client.message(sent[24].mid)["message"] == "message 24"
    with pytest.raises(NotFound) as exc:
        client.message(sent[0].mid)
    assert (exc.value.code, exc.value.subcode) == (100, 33)


def test_message_details_include_attachments_reply_and_reactions(sim, connected, client_for, ctx):
    alice = connected.ig.add_customer("alice")
    first = alice.sends_attachment("image", deliver=False)
    reply = alice.replies_to(first.mid, "this one", deliver=False)
    alice.reacts(first.mid, "love", deliver=False)
    client = client_for(connected.account)

    image = client.message(first.mid)
    assert image["attachments"]["data"][0]["image_data"]["url"].startswith(sim.url)
    assert image["reactions"]["data"] == [{"reaction": "love", "users": [{"username": "alice", "id": alice.igsid}]}]
    assert requests.get(image["attachments"]["data"][0]["image_data"]["url"], timeout=5).content.startswith(b"\x89PNG")
    assert client.message(reply.mid)["reply_to"] == {"mid": first.mid, "is_self_reply": True}


def test_profile_needs_the_customer_to_have_written(sim, connected, client_for, ctx):
    alice = connected.ig.add_customer("alice", name="Alice Liddell", follower_count=321)
    client = client_for(connected.account)
    with pytest.raises(ConsentRequired):
        client.profile(alice.igsid)

    alice.sends_text("hi", deliver=False)
    profile = client.profile(alice.igsid)

    assert profile["username"] == "alice" and profile["name"] == "Alice Liddell"
    assert profile["follower_count"] == 321
    assert requests.get(profile["profile_pic"], timeout=5).status_code == 200


def test_profile_of_an_unavailable_customer(sim, connected, client_for, ctx):
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi", deliver=False)
    alice.set(available=False)
    with pytest.raises(UserUnavailable) as exc:
        client_for(connected.account).profile(alice.igsid)
    assert exc.value.code == 551


def test_media_only_for_the_accounts_own_posts(sim, connected, client_for, ctx):
    shop = connected.ig
    own = shop.add_post("Blue dress SKU-1")
    foreign = sim.add_foreign_post("Someone else's post")
    client = client_for(connected.account)

    assert client.media(own.id)["caption"] == "Blue dress SKU-1"
    with pytest.raises(NotFound) as exc:
        client.media(foreign.id)
    assert (exc.value.code, exc.value.subcode) == (100, 33)
    assert exc.value.error_type == "IGApiException"


def test_own_media_newest_first_across_pages(sim, connected, client_for, ctx):
    shop = connected.ig
    posts = [shop.add_post(f"post {i}", at=1_700_000_000 + i) for i in range(7)]
    sim.add_foreign_post("not ours")
    listed = list(client_for(connected.account).own_media(fields="id,caption,timestamp", limit=3))
    assert [m["id"] for m in listed] == [p.id for p in reversed(posts)]


# --- Sends ---------------------------------------------------------------------------

def test_send_text_reaches_the_customer(sim, connected, client_for, ctx):
    alice = connected.ig.add_customer("alice")
    alice.sends_text("Do you ship to Lyon?", deliver=False)

    result = client_for(connected.account).send_text(alice.igsid, "Oui, en 2 jours ✈️")

    assert result.recipient_id == alice.igsid
    assert alice.received_texts == ["Oui, en 2 jours ✈️"]
    assert alice.received[0].mid == result.message_id


def test_send_images_and_other_attachments(sim, connected, client_for, ctx):
    alice = connected.ig.add_customer("alice")
    alice.sends_text("photos?", deliver=False)
    client = client_for(connected.account)

    client.send_images(alice.igsid, [f"https://example.com/{i}.jpg" for i in range(3)])
    client.send_attachment(alice.igsid, "audio", "https://example.com/note.m4a")
    client.send_attachment(alice.igsid, "file", "https://example.com/price-list.pdf")

    kinds = [[a["type"] for a in r.attachments] for r in alice.received]
    assert kinds == [["image", "image", "image"], ["audio"], ["file"]]
    assert alice.received[0].attachments[2]["url"] == "https://example.com/2.jpg"


def test_sender_actions_and_reactions(sim, connected, client_for, ctx):
    alice = connected.ig.add_customer("alice")
    hello = alice.sends_text("hello", deliver=False)
    client = client_for(connected.account)

    client.sender_action(alice.igsid, "typing_on")
    client.react(alice.igsid, hello.mid, "love")

    assert [a["action"] for a in alice.sender_actions] == ["typing_on", "react"]
    reactions = client.message(hello.mid, fields="reactions")["reactions"]["data"]
    assert reactions == [{"reaction": "love", "users": [{"username": connected.ig.username,
                                                         "id": connected.ig.ig_user_id}]}]
    client.unreact(alice.igsid, hello.mid)
    assert "reactions" not in client.message(hello.mid, fields="reactions")


def test_send_outside_the_window_is_refused(sim, connected, client_for, ctx):
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi", deliver=False)
    sim.advance(hours=25)
    client = client_for(connected.account)

    with pytest.raises(OutsideWindow) as exc:
        client.send_text(alice.igsid, "Sorry for the wait")
    assert (exc.value.code, exc.value.subcode) == (10, 2534022)

    # The Human Agent tag allows 7 days, only for apps that hold the feature.
    with pytest.raises(OutsideWindow):
        client.send_text(alice.igsid, "Sorry for the wait", human_agent=True)
    connected.ig.set(human_agent=True)
    client.send_text(alice.igsid, "Sorry for the wait", human_agent=True)
    assert alice.received_texts == ["Sorry for the wait"]


def test_send_errors_are_typed(sim, connected, client_for, ctx):
    shop = connected.ig
    alice = shop.add_customer("alice")
    alice.sends_text("hi", deliver=False)
    client = client_for(connected.account)

    with pytest.raises(InvalidRequest):
        client.send_text(alice.igsid, "é" * 501)  # 1002 bytes: over Meta's 1000
    alice.set(available=False)
    with pytest.raises(UserUnavailable):
        client.send_text(alice.igsid, "hello?")
    alice.set(available=True)
    shop.set(dm_access=False)
    with pytest.raises(PermissionDenied) as exc:
        client.send_text(alice.igsid, "hello?")
    assert (exc.value.code, exc.value.subcode) == (200, 2534041)
    assert alice.received == []


@pytest.mark.parametrize("code, subcode, expected", [
    (190, 463, TokenInvalid), (102, None, TokenInvalid), (10, 2534022, OutsideWindow), (10, 2018278, OutsideWindow),
    (551, 1545041, UserUnavailable), (613, None, RateLimited), (4, None, RateLimited), (80002, None, RateLimited),
    (10, None, PermissionDenied), (200, None, PermissionDenied), (100, 33, NotFound), (100, None, InvalidRequest),
    (2, None, Transient), (1, 1357046, AmbiguousSendFailure),
])
def test_send_errors_map_to_classes_and_are_not_retried(sim, connected, client_for, ctx, code, subcode,
                                                       expected):
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi", deliver=False)
    sim.fail_next("send", code, subcode, times=5)

    with pytest.raises(expected) as exc:
        client_for(connected.account).send_text(alice.igsid, "hello")

    assert exc.value.code == code and exc.value.subcode == subcode
    assert len(sim.calls_to("send")) == 1  # a send is tried once; the caller decides
    assert alice.received == []


def test_reads_retry_transient_and_throttling_errors(sim, connected, client_for, ctx):
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi", deliver=False)
    client = client_for(connected.account)
    client._sleep = lambda seconds: None  # the backoff is the client's; no need to wait it out here
    sim.fail_next("profile", 2, http_status=500)
    sim.fail_next("profile", 4, headers={"X-App-Usage": '{"call_count":100,"total_time":20,"total_cputime":20}'})

    assert client.profile(alice.igsid)["username"] == "alice"
    assert [c.code for c in sim.calls_to("profile")] == [2, 4, None]


def test_reads_give_up_after_their_retries(sim, connected, client_for, ctx):
    client = client_for(connected.account)
    client._sleep = lambda seconds: None
    sim.fail_next("me", 1, times=10)
    with pytest.raises(Transient):
        client.me()
    assert len(sim.calls_to("me")) == 4  # one try and GRAPH_READ_RETRIES (3) retries


def test_a_long_throttle_is_left_to_the_caller_with_its_wait(sim, connected, client_for, ctx):
    usage = '{"%s":[{"type":"instagram","call_count":100,"total_cputime":10,"total_time":10,' \
            '"estimated_time_to_regain_access":5}]}' % connected.ig.ig_user_id
    sim.fail_next("me", 80002, headers={"X-Business-Use-Case-Usage": usage})
    with pytest.raises(RateLimited) as exc:
        client_for(connected.account).me()
    assert exc.value.retry_after == 300  # 5 minutes, read from the header
    assert len(sim.calls_to("me")) == 1


def test_the_simulators_own_limit_is_met_by_retrying(sim, connected, client_for, ctx):
    """Without our limiter, Meta's 2 calls/s throttle some reads; the client waits and retries them."""
    client = client_for(connected.account)
    client.rates["conversations"] = None
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi", deliver=False)

    for _ in range(5):
        assert list(client.list_conversations())

    codes = [c.code for c in sim.calls_to("conversations")]
    assert 4 in codes and codes.count(None) == 5


def test_ambiguous_send_is_not_resent(sim, connected, client_for, ctx):
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi", deliver=False)
    sim.faults.send_ambiguous = 1

    with pytest.raises(AmbiguousSendFailure) as exc:
        client_for(connected.account).send_text(alice.igsid, "Your order shipped")

    assert (exc.value.code, exc.value.subcode) == (1, 1357046)
    assert alice.received_texts == ["Your order shipped"]  # it did arrive, once
    assert len(sim.calls_to("send")) == 1


def test_a_send_that_times_out_is_ambiguous(sim, connected, ctx):
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi", deliver=False)
    from flask import current_app

    current_app.config["GRAPH_TIMEOUT_SECONDS"] = 0.3
    sim.faults.latency = 1.0
    client = GraphClient.for_account(connected.account)

    with pytest.raises(AmbiguousSendFailure):
        client.send_text(alice.igsid, "Are you there?")
    sim.faults.latency = 0
    assert alice.received_texts == ["Are you there?"]


def test_an_unreachable_graph_is_transient_for_sends_too(app, connected, ctx):
    from flask import current_app

    current_app.config["GRAPH_API_BASE"] = "http://127.0.0.1:9"  # nothing listens: the send never left
    with pytest.raises(Transient):
        GraphClient.for_account(connected.account).send_text("7000000000000001", "hi")


# --- Subscription and tokens -----------------------------------------------------------

def test_webhook_subscription_is_checked_and_restored(sim, connected, client_for, ctx):
    client = client_for(connected.account)
    connected.ig.unsubscribe()
    assert client.subscribed_fields() == []

    restored = client.ensure_subscribed()

    assert restored == list(graph.WEBHOOK_FIELDS["instagram"])
    assert set(graph.WEBHOOK_FIELDS["instagram"]) <= connected.ig.subscribed_fields
    assert client.ensure_subscribed() == []


def test_expired_and_revoked_tokens(sim, connected, client_for, ctx):
    client = client_for(connected.account)
    connected.ig.expire_token()
    with pytest.raises(TokenInvalid) as exc:
        client.me()
    assert (exc.value.code, exc.value.subcode) == (190, 463)
    assert len(sim.calls_to("me")) == 1  # a dead token is not retried


def test_revoked_token(sim, connected, client_for, ctx):
    connected.ig.revoke_token()
    with pytest.raises(TokenInvalid) as exc:
        client_for(connected.account).list_conversations().__next__()
    assert (exc.value.code, exc.value.subcode) == (190, 460)


def test_refresh_a_long_lived_token(sim, connected, client_for, app, ctx):
    client = client_for(connected.account)
    with pytest.raises(InvalidRequest):
        client.refresh_token()  # Meta refreshes only tokens at least 24 hours old
    connected.ig.age_token(2 * 24 * 3600)

    grant = client.refresh_token()

    assert grant.expires_in == 60 * 24 * 3600
    assert grant.access_token == connected.ig.token
    from inbox.services.accounts import set_token

    set_token(connected.account.id, grant.access_token)
    from inbox.models import Account
    from inbox.extensions import db

    assert GraphClient.for_account(db.session.get(Account, connected.account.id)).me()["username"]


def test_tokens_never_reach_logs_or_errors(sim, connected, client_for, ctx, caplog):
    caplog.set_level(logging.DEBUG)
    token = connected.ig.token
    client = client_for(connected.account)
    sim.fail_next("me", 190, message=f"Malformed access token {token}")
    with pytest.raises(TokenInvalid) as exc:
        client.me()
    connected.ig.age_token(2 * 24 * 3600)
    grant = client.refresh_token()  # the one call that carries the token in its query

    assert token not in str(exc.value) and token not in repr(exc.value)
    assert token not in caplog.text and grant.access_token not in caplog.text
    assert token not in repr(client) and grant.access_token not in repr(grant)


def test_facebook_page_flavour(sim, factory, ctx):
    from tests.support.sim import connect_account

    connected = connect_account(factory, sim, "pageshop", flavour="facebook")
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi", deliver=False)
    client = GraphClient.for_account(connected.account)

    assert [c["id"] for c in client.list_conversations()] == [connected.ig.conversation_id(alice)]
    client.send_text(alice.igsid, "hello from the Page")
    assert client.ensure_subscribed() == []

    assert alice.received_texts == ["hello from the Page"]
    assert {c.endpoint for c in sim.calls} >= {"conversations", "send", "subscribed_apps"}


def test_the_app_talks_to_the_simulator_whatever_the_fixture_order(app, sim):
    assert app.config["GRAPH_API_BASE"] == sim.url == app.config["GRAPH_FACEBOOK_API_BASE"]
    assert app.config["OAUTH_TOKEN_URL"].startswith(sim.url)


# --- Business Login: the code exchange ------------------------------------------------------

def test_a_code_becomes_a_short_lived_token(sim, ctx):
    shop = sim.add_account("bloom.studio")
    redirect = "https://inbox.example/admin/connect/callback"
    location = requests.get(f"{sim.url}/oauth/authorize", allow_redirects=False, timeout=5, params={
        "client_id": sim.settings.app_id, "redirect_uri": redirect, "response_type": "code"}).headers["Location"]
    code = location.split("code=", 1)[1].split("#", 1)[0]

    grant = graph.exchange_code(code, redirect, client_id=sim.settings.app_id, client_secret=sim.settings.app_secret)

    assert grant.access_token == shop.token and grant.user_id == shop.state.app_scoped_id
    assert "instagram_business_manage_messages" in grant.permissions
    assert shop.token not in repr(grant)
    with pytest.raises(InvalidRequest) as exc:  # a code works once
        graph.exchange_code(code, redirect, client_id=sim.settings.app_id, client_secret=sim.settings.app_secret)
    assert (exc.value.code, exc.value.subcode) == (100, 36007)


@pytest.mark.parametrize("status,body,expected", [
    # api.instagram.com's own shapes, which differ from the Graph API's.
    (200, {"access_token": "IGQflat", "user_id": 42}, ("IGQflat", "42", None)),
    (400, {"error_type": "OAuthException", "code": 400, "error_message": "Matching code was not found or was "
                                                                          "already used"}, InvalidRequest),
    (502, "<html>Bad gateway</html>", Transient),
])
def test_the_token_endpoint_answers_in_every_shape_meta_uses(app, ctx, status, body, expected):
    """Shapes the simulator does not produce, served by a tiny stand-in for api.instagram.com."""
    import json

    from werkzeug.wrappers import Response

    from tests.support.servers import ThreadedServer

    def token_endpoint(environ, start_response):
        text = json.dumps(body) if isinstance(body, dict) else body
        return Response(text, status, content_type="application/json")(environ, start_response)

    server = ThreadedServer(token_endpoint).start()
    try:
        app.config["OAUTH_TOKEN_URL"] = f"{server.url}/oauth/access_token"
        if isinstance(expected, tuple):
            grant = graph.exchange_code("c", "https://x/cb", client_id="1", client_secret="s")
            assert (grant.access_token, grant.user_id, grant.permissions) == expected
        else:
            with pytest.raises(expected) as exc:
                graph.exchange_code("c", "https://x/cb", client_id="1", client_secret="s")
            if expected is InvalidRequest:
                assert "already used" in str(exc.value)
    finally:
        server.stop()
