"""The simulator's Graph API, CDN and control API as raw HTTP sees them (Meta's shapes)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from inbox.sim import Simulator


def get(sim, path, token=None, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{sim.url}/v25.0/{path}", params=params, headers=headers, timeout=5)


def post(sim, path, token, **kwargs):
    return requests.post(f"{sim.url}/v25.0/{path}", headers={"Authorization": f"Bearer {token}"}, timeout=5, **kwargs)


def test_errors_have_metas_body(sim, sim_shop):
    r = get(sim, "me", "not-a-token")
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "code", "fbtrace_id"}
    assert (error["code"], error["type"]) == (190, "OAuthException")
    assert re.fullmatch(r"[A-Za-z0-9_]{11}", error["fbtrace_id"])

    sim.fail_next("me", 2, message="Service temporarily unavailable")
    error = get(sim, "me", sim_shop.token).json()["error"]
    assert (error["code"], error["is_transient"]) == (2, True)


def test_expired_token_answers_190_463(sim, sim_shop):
    sim.advance(days=61)  # long-lived tokens last 60 days
    r = get(sim, "me", sim_shop.token)
    error = r.json()["error"]
    assert (error["code"], error["error_subcode"]) == (190, 463)
    assert "Session has expired" in error["message"]


def test_conversations_paging_links(sim, sim_shop):
    for i in range(3):
        sim_shop.add_customer(f"c{i}").sends_text("hi", at=1_700_000_000 + i, deliver=False)

    first = get(sim, "me/conversations", sim_shop.token, platform="instagram", limit=2).json()
    assert len(first["data"]) == 2 and set(first["data"][0]) == {"id", "updated_time"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", first["data"][0]["updated_time"])
    next_url = first["paging"]["next"]
    parts = urlsplit(next_url)
    assert f"{parts.scheme}://{parts.netloc}" == sim.url and parts.path == "/v25.0/me/conversations"
    assert parse_qs(parts.query)["after"] == [first["paging"]["cursors"]["after"]]
    assert "access_token" not in parts.query  # the token came in a header, so the link carries none

    last = requests.get(next_url, headers={"Authorization": f"Bearer {sim_shop.token}"}, timeout=5).json()
    assert len(last["data"]) == 1 and "next" not in last["paging"]
    assert {c["id"] for c in first["data"] + last["data"]} == {sim_shop.conversation_id(sim.customer(c.igsid))
                                                                for c in (sim.customer(i) for i in sim.world.customers)}


def test_paging_link_keeps_a_query_token(sim, sim_shop):
    for i in range(2):
        sim_shop.add_customer(f"c{i}").sends_text("hi", deliver=False)
    body = get(sim, "me/conversations", None, access_token=sim_shop.token, limit=1).json()
    assert parse_qs(urlsplit(body["paging"]["next"]).query)["access_token"] == [sim_shop.token]


def test_page_conversations_need_platform_instagram(sim, sim_shop):
    sim_shop.add_customer("alice").sends_text("hi", deliver=False)
    assert get(sim, f"{sim_shop.page_id}/conversations", sim_shop.token).json() == {"data": []}
    assert len(get(sim, f"{sim_shop.page_id}/conversations", sim_shop.token, platform="instagram").json()["data"]) == 1


def test_unknown_fields_and_paths_are_errors(sim, sim_shop):
    error = get(sim, "me", sim_shop.token, fields="id,favourite_colour").json()["error"]
    assert error["code"] == 100 and "favourite_colour" in error["message"]
    assert get(sim, "me/nonsense/deeper", sim_shop.token).json()["error"]["code"] == 2500


def test_field_expansion_nests_messages_in_conversations(sim, sim_shop):
    alice = sim_shop.add_customer("alice")
    alice.sends_text("first", at=1_700_000_000, deliver=False)
    alice.sends_text("second", at=1_700_000_060, deliver=False)
    body = get(sim, "me/conversations", sim_shop.token,
               fields="participants,messages.limit(1){id,message,from}").json()
    [conversation] = body["data"]
    messages = conversation["messages"]
    assert [m["message"] for m in messages["data"]] == ["second"]
    assert messages["data"][0]["from"] == {"username": "alice", "id": alice.igsid}
    assert "/messages?" in messages["paging"]["next"]


# --- The CDN ----------------------------------------------------------------------------

def test_attachment_links_expire(sim, sim_shop):
    sim.settings.attachment_url_ttl = 3600
    sent = sim_shop.add_customer("alice").sends_attachment("image", deliver=False)
    url = sent.event["message"]["attachments"][0]["payload"]["url"]
    assert urlsplit(url).path == "/ig_messaging_cdn/"

    ok = requests.get(url, timeout=5)
    assert ok.status_code == 200 and ok.headers["Content-Type"] == "image/png"
    sim.advance(hours=2)
    expired = requests.get(url, timeout=5)
    assert (expired.status_code, expired.text) == (403, "URL signature expired")
    assert expired.headers["Content-Type"].startswith("text/plain")


def test_tampered_links_are_refused(sim, sim_shop):
    sent = sim_shop.add_customer("alice").sends_attachment("file", deliver=False)
    url = sent.event["message"]["attachments"][0]["payload"]["url"]
    assert requests.get(url, timeout=5).headers["Content-Type"] == "application/pdf"
    tampered = re.sub(r"asset_id=\d+", "asset_id=10000001", url)
    assert requests.get(tampered, timeout=5).status_code == 403


def test_story_links_die_with_the_story(sim, sim_shop):
    alice = sim_shop.add_customer("alice")
    story = alice.mentions_in_story(deliver=False)
    photo = alice.sends_attachment("image", deliver=False)
    story_url = story.event["message"]["attachments"][0]["payload"]["url"]
    photo_url = photo.event["message"]["attachments"][0]["payload"]["url"]
    sim.advance(hours=25)
    assert requests.get(story_url, timeout=5).text == "URL signature expired"
    assert requests.get(photo_url, timeout=5).status_code == 200


def test_profile_picture_links_expire(sim, sim_shop):
    alice = sim_shop.add_customer("alice")
    alice.sends_text("hi", deliver=False)
    pic = get(sim, alice.igsid, sim_shop.token, fields="profile_pic").json()["profile_pic"]
    assert "oe=" in pic and requests.get(pic, timeout=5).status_code == 200
    sim.advance(days=4)
    assert requests.get(pic, timeout=5).text == "URL signature expired"
    fresh = get(sim, alice.igsid, sim_shop.token, fields="profile_pic").json()["profile_pic"]
    assert requests.get(fresh, timeout=5).status_code == 200


# --- The Send API -------------------------------------------------------------------------

@pytest.fixture
def alice(sim_shop):
    customer = sim_shop.add_customer("alice")
    customer.sends_text("hi", deliver=False)
    return customer


@pytest.mark.parametrize("body, fragment", [
    ({"recipient": {"id": "X"}, "message": {"text": "hi"}}, "No matching Instagram user"),
    ({"message": {"text": "hi"}}, "recipient is required"),
    ({"recipient": {"id": "ALICE"}, "message": {"text": "hi"}, "sender_action": "typing_on"}, "sender_action"),
    ({"recipient": {"id": "ALICE"}, "message": {"attachments": [{"type": "audio", "payload": {"url": "https://x/a"}}]}},
     "Only images"),
    ({"recipient": {"id": "ALICE"}, "message": {"attachments": [{"type": "image", "payload": {"url": "https://x/i"}}] * 11}},
     "At most 10"),
    ({"recipient": {"id": "ALICE"}, "message": {"attachment": {"type": "video", "payload": {"url": "not a url"}}}},
     "valid URL"),
    ({"recipient": {"id": "ALICE"}, "message": {"text": "hi", "attachment": {"type": "image", "payload": {}}}},
     "exactly one"),
])
def test_send_api_rejects_bad_bodies(sim, sim_shop, alice, body, fragment):
    if body.get("recipient", {}).get("id") == "ALICE":
        body["recipient"]["id"] = alice.igsid
    r = post(sim, "me/messages", sim_shop.token, json=body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == 100 and fragment in r.json()["error"]["message"]
    assert alice.received == []


def test_send_api_accepts_form_bodies_and_singular_images(sim, sim_shop, alice):
    import json

    r = post(sim, f"{sim_shop.ig_user_id}/messages", sim_shop.token, data={
        "recipient": json.dumps({"id": alice.igsid}),
        "message": json.dumps({"attachment": {"type": "image", "payload": {"url": "https://example.com/x.png"}}})})
    assert r.status_code == 200 and set(r.json()) == {"recipient_id", "message_id"}
    assert alice.received[0].attachments[0]["type"] == "image"


def test_media_share_only_for_own_posts(sim, sim_shop, alice):
    own, foreign = sim_shop.add_post("ours"), sim.add_foreign_post("theirs")
    share = {"recipient": {"id": alice.igsid}, "message": {"attachment": {"type": "MEDIA_SHARE", "payload": {}}}}
    share["message"]["attachment"]["payload"]["id"] = foreign.id
    assert post(sim, "me/messages", sim_shop.token, json=share).json()["error"]["error_subcode"] == 33
    share["message"]["attachment"]["payload"]["id"] = own.id
    assert post(sim, "me/messages", sim_shop.token, json=share).status_code == 200


def test_send_rate_limit_answers_613_with_usage(sim, sim_shop, alice):
    sim.settings.limits.send = 3
    statuses = [post(sim, "me/messages", sim_shop.token, json={"recipient": {"id": alice.igsid},
                                                           "message": {"text": f"m{i}"}}) for i in range(6)]
    throttled = [r for r in statuses if r.status_code != 200]
    assert throttled and all(r.json()["error"]["code"] == 613 for r in throttled)
    assert sim_shop.ig_user_id in throttled[0].headers["X-Business-Use-Case-Usage"]
    assert len(alice.received) == 6 - len(throttled)


# --- OAuth (Business Login) ---------------------------------------------------------------

def test_business_login_flow(sim, sim_shop):
    redirect = "https://inbox.example/oauth/callback"
    r = requests.get(f"{sim.url}/oauth/authorize", allow_redirects=False, timeout=5, params={
        "client_id": sim.settings.app_id, "redirect_uri": redirect, "response_type": "code",
        "scope": "instagram_business_basic,instagram_business_manage_messages", "state": "xyz"})
    assert r.status_code == 302
    location = urlsplit(r.headers["Location"])
    query = parse_qs(location.query)
    assert location.fragment == "_" and query["state"] == ["xyz"]

    token = requests.post(f"{sim.url}/oauth/access_token", timeout=5, data={
        "client_id": sim.settings.app_id, "client_secret": sim.settings.app_secret,
        "grant_type": "authorization_code", "redirect_uri": redirect, "code": query["code"][0]}).json()
    short = token["data"][0]["access_token"]
    long_lived = requests.get(f"{sim.url}/access_token", timeout=5, params={
        "grant_type": "ig_exchange_token", "client_secret": sim.settings.app_secret, "access_token": short}).json()

    assert long_lived["expires_in"] == 60 * 24 * 3600
    me = get(sim, "me", long_lived["access_token"], fields="user_id,username").json()
    assert me["user_id"] == sim_shop.ig_user_id
    # A code works once.
    again = requests.post(f"{sim.url}/oauth/access_token", timeout=5, data={
        "client_id": sim.settings.app_id, "client_secret": sim.settings.app_secret,
        "grant_type": "authorization_code", "redirect_uri": redirect, "code": query["code"][0]})
    assert again.status_code == 400


# --- The control API over HTTP ---------------------------------------------------------------

def test_control_api_scripts_the_world():
    with Simulator().serve() as sim:
        control = f"{sim.url}/_sim"
        account = requests.post(f"{control}/accounts", json={"username": "httpshop"}, timeout=5).json()
        customer = requests.post(f"{control}/accounts/{account['ig_user_id']}/customers",
                                 json={"username": "carol", "name": "Carol"}, timeout=5).json()
        post_ = requests.post(f"{control}/accounts/{account['ig_user_id']}/posts", json={"caption": "Red bag"},
                              timeout=5).json()
        sent = requests.post(f"{control}/customers/{customer['igsid']}/actions", timeout=5,
                             json={"action": "shares_post", "media_id": post_["id"], "text": "this one?"}).json()
        assert sent["event"]["message"]["attachments"][0]["payload"]["ig_post_media_id"] == post_["id"]
        assert sent["delivery"]["state"] == "undelivered"  # no callback configured yet

        r = requests.post(f"{sim.url}/v24.0/me/messages", headers={"Authorization": f"Bearer {account['token']}"},
                          json={"recipient": {"id": customer["igsid"]}, "message": {"text": "Yes, in stock"}},
                          timeout=5)
        assert r.status_code == 200
        received = requests.get(f"{control}/customers/{customer['igsid']}/received", timeout=5).json()
        assert [x["text"] for x in received] == ["Yes, in stock"]

        bad = requests.post(f"{control}/customers/{customer['igsid']}/actions", json={"action": "__init__"}, timeout=5)
        assert bad.status_code == 400
        state = requests.get(f"{control}/state", timeout=5).json()
        assert state["messages"] == 2 and state["customers"][0]["has_written"] is True


def test_idle_request_folder_threads_drop_out_after_30_days(sim, sim_shop):
    stranger = sim_shop.add_customer("stranger", follows_business=False)
    follower = sim_shop.add_customer("follower", follows_business=True)
    stranger.sends_text("hello?", deliver=False)
    follower.sends_text("hello!", deliver=False)
    sim.advance(days=31)
    listed = get(sim, "me/conversations", sim_shop.token, fields="participants").json()["data"]
    assert [c["participants"]["data"][1]["username"] for c in listed] == ["follower"]
