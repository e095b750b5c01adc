"""Media end to end with the simulator's expiring CDN: kept before expiry, served to the right staff only."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import render_template
from sqlalchemy import delete, select, update

from inbox.extensions import db
from inbox.jobs import enqueue, get_queue
from inbox.models import Attachment, Conversation, Message
from inbox.services import media
from inbox.services.storage import get_storage
from inbox.sim.cdn import png
from inbox.extensions import get_redis
from inbox.live.publish import channel
from tests.support.jobs import failed_jobs
from tests.support.stored import identity_rows
from tests.support.live import drain


def _attachments(app, mid: str) -> list[Attachment]:
    with app.app_context():
        rows = list(db.session.scalars(select(Attachment).join(Message).where(Message.mid == mid)
                                       .order_by(Attachment.position)))
        for row in rows:
            db.session.expunge(row)
        return rows


def _asset_bytes(sim, url: str) -> bytes:
    asset_id = parse_qs(urlsplit(url).query)["asset_id"][0]
    return sim.cdn.get(asset_id).content


def _file(app, key: str) -> Path:
    return Path(app.config["MEDIA_ROOT"]) / key


def _login_staff(auth, factory, account, role="agent"):
    user = factory.staff_on(account, role)
    auth.login(user)
    return user


def _state_html(app, attachment_id: int) -> str:
    with app.test_request_context():
        row = db.session.get(Attachment, attachment_id)
        return render_template("partials/_attachment_state.html", attachment=row, message=row.message)


def test_an_image_is_kept_before_its_link_expires_and_still_shows_after(
        sim_webhooks, connected, app, client, auth, factory, run_jobs):
    sim = sim_webhooks
    alice = connected.ig.add_customer("alice")
    sent = alice.sends_attachment("image")
    [row] = _attachments(app, sent.mid)
    assert row.media_state == "pending"
    with app.app_context():
        assert media.download_job_id(row.id) in "".join(get_queue("low").job_ids)
    assert "Saving a copy" in _state_html(app, row.id)

    with app.app_context():
        pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel(connected.account.id))
    run_jobs()
    with app.app_context():
        message_id = db.session.scalar(select(Message.id).where(Message.mid == sent.mid))
    assert {"type": "message.updated", "message_id": message_id} in [
        {"type": e["type"], "message_id": e.get("message_id")} for e in drain(pubsub)]  # the thread updates live
    [row] = _attachments(app, sent.mid)
    original = _asset_bytes(sim, row.source_url)
    assert (row.media_state, row.content_type, row.size_bytes) == ("stored", "image/png", len(original))
    assert _file(app, row.storage_key).read_bytes() == original

    sim.advance(days=4)  # Instagram's link is dead now
    assert requests.get(row.source_url, timeout=5).status_code == 403
    _login_staff(auth, factory, connected.account)
    with app.test_request_context():
        src = media.attachment_src(db.session.get(Attachment, row.id))
    assert src.startswith(f"/accounts/{connected.account.id}/media/attachments/{row.id}?v=")
    response = client.get(src)
    assert response.status_code == 200 and response.data == original
    assert response.mimetype == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "private" in response.headers["Cache-Control"] and "max-age=31536000" in response.headers["Cache-Control"]
    assert "attachment" not in response.headers.get("Content-Disposition", "")
    assert _state_html(app, row.id).strip() == ""  # stored: no badge, the image shows


def test_an_expired_link_gives_the_expired_state_not_an_error(
        sim_webhooks, connected, app, client, auth, factory, run_jobs):
    sim = sim_webhooks
    alice = connected.ig.add_customer("alice")
    sent = alice.sends_attachment("video")
    for i in range(20):  # the thread moved on: Instagram details only its 20 newest messages
        alice.sends_text(f"and another thing {i}", deliver=False)
    sim.advance(days=4)  # the worker was down for days
    run_jobs()
    [row] = _attachments(app, sent.mid)
    assert row.media_state == "expired" and row.storage_key is None
    assert "URL signature expired" in row.media_error and "20 newest messages" in row.media_error
    assert failed_jobs(app) == []
    with app.test_request_context():
        assert media.attachment_src(db.session.get(Attachment, row.id)) is None
    assert "Expired on Instagram" in _state_html(app, row.id)
    _login_staff(auth, factory, connected.account)
    assert client.get(f"/accounts/{connected.account.id}/media/attachments/{row.id}").status_code == 404


def test_an_expired_link_of_a_recent_message_is_renewed_through_the_conversations_api(
        sim_webhooks, connected, app, run_jobs):
    sim = sim_webhooks
    alice = connected.ig.add_customer("alice")
    sent = alice.sends_attachment("image")
    old_url = _attachments(app, sent.mid)[0].source_url
    sim.advance(days=4)
    run_jobs()
    [row] = _attachments(app, sent.mid)
    assert row.media_state == "stored" and row.source_url != old_url
    assert _file(app, row.storage_key).read_bytes() == _asset_bytes(sim, old_url)
    assert len(sim.calls_to("message")) == 1


def test_every_kept_kind_is_stored_and_stories_never_are(sim_webhooks, connected, app, run_jobs):
    sim = sim_webhooks
    shop = connected.ig
    alice = shop.add_customer("alice")
    sent = {
        "audio": alice.sends_attachment("audio"), "file": alice.sends_attachment("file"),
        "share": alice.sends_share(), "ig_post": alice.shares_post(shop.add_post("Dress")),
        "ig_reel": alice.shares_reel(), "story_mention": alice.mentions_in_story(),
        "ig_story": alice.sends_ig_story(), "sticker": alice.sends_sticker(),
    }
    run_jobs()
    states = {kind: _attachments(app, s.mid)[0].media_state for kind, s in sent.items()}
    assert states == {"audio": "stored", "file": "stored", "share": "stored", "ig_post": "stored",
                      "ig_reel": "stored", "story_mention": "not_kept", "ig_story": "not_kept", "sticker": "stored"}  # a sticker is an image
    story_assets = {parse_qs(urlsplit(_attachments(app, sent[k].mid)[0].source_url).query)["asset_id"][0]
                    for k in ("story_mention", "ig_story")}
    assert not [f for f in sim.cdn.fetches if f[0] in story_assets]  # never downloaded, not even once
    with app.test_request_context():
        story = db.session.get(Attachment, _attachments(app, sent["story_mention"].mid)[0].id)
        assert media.attachment_src(story) == story.source_url  # shown while the story lives


def test_a_story_older_than_a_day_shows_a_placeholder(sim_webhooks, connected, app):
    alice = connected.ig.add_customer("alice")
    sent = alice.mentions_in_story(at=time.time() - 25 * 3600)
    [row] = _attachments(app, sent.mid)
    assert row.media_state == "not_kept"
    with app.test_request_context():
        assert media.attachment_src(db.session.get(Attachment, row.id)) is None
        html = render_template("partials/_attachment.html", attachment=db.session.get(Attachment, row.id),
                               message=db.session.get(Attachment, row.id).message)
    assert "Story no longer available" in html and row.source_url not in html


def test_only_staff_of_that_account_get_the_media(sim_webhooks, connected, app, client, auth, factory,
                                                  run_jobs):
    alice = connected.ig.add_customer("alice")
    sent = alice.sends_attachment("image")
    run_jobs()
    [row] = _attachments(app, sent.mid)
    account = connected.account
    url = f"/accounts/{account.id}/media/attachments/{row.id}"
    assert client.get(url).status_code == 302  # not logged in: to the login page

    other = factory.account(username="other_shop")
    _login_staff(auth, factory, other)
    assert client.get(url).status_code == 404  # another account's staff
    assert client.get(f"/accounts/{other.id}/media/attachments/{row.id}").status_code == 404  # its id, my scope
    auth.logout()
    _login_staff(auth, factory, account)
    assert client.get(url).status_code == 200


def test_audio_and_video_answer_range_requests(sim_webhooks, connected, app, client, auth, factory, run_jobs):
    alice = connected.ig.add_customer("alice")
    sent = alice.sends_attachment("audio")
    run_jobs()
    [row] = _attachments(app, sent.mid)
    whole = _file(app, row.storage_key).read_bytes()
    _login_staff(auth, factory, connected.account)
    url = f"/accounts/{connected.account.id}/media/attachments/{row.id}"
    response = client.get(url, headers={"Range": "bytes=4-11"})
    assert response.status_code == 206
    assert response.data == whole[4:12] and response.data[:4] == b"ftyp"
    assert response.headers["Content-Range"] == f"bytes 4-11/{len(whole)}"
    assert response.mimetype == "audio/mp4" and response.headers["Accept-Ranges"] == "bytes"


def test_a_file_downloads_instead_of_opening(sim_webhooks, connected, app, client, auth, factory, run_jobs):
    alice = connected.ig.add_customer("alice")
    sent = alice.sends_attachment("file")
    run_jobs()
    [row] = _attachments(app, sent.mid)
    _login_staff(auth, factory, connected.account)
    response = client.get(f"/accounts/{connected.account.id}/media/attachments/{row.id}")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.data.startswith(b"%PDF-")


def test_unsend_deletes_the_stored_file(sim_webhooks, connected, app, run_jobs):
    alice = connected.ig.add_customer("alice")
    sent = alice.sends_attachment("image", count=2)
    run_jobs()
    keys = [a.storage_key for a in _attachments(app, sent.mid)]
    assert len(keys) == 2 and all(_file(app, k).is_file() for k in keys)
    alice.unsends(sent.mid)
    assert _attachments(app, sent.mid) == []
    assert not any(_file(app, k).exists() for k in keys)


def test_a_download_that_finishes_after_the_unsend_keeps_nothing(sim_webhooks, connected, app, run_jobs):
    alice = connected.ig.add_customer("alice")
    sent = alice.sends_attachment("image")
    [row] = _attachments(app, sent.mid)
    alice.unsends(sent.mid)  # before the worker got to it
    with app.app_context():
        assert media.download_attachment(row.id) == "gone"
    root = Path(app.config["MEDIA_ROOT"])
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]


def test_sweep_deletes_only_files_nothing_refers_to(sim_webhooks, connected, app, runner, run_jobs):
    alice = connected.ig.add_customer("alice")
    sent = alice.sends_attachment("image")
    run_jobs()
    [row] = _attachments(app, sent.mid)
    with app.app_context():
        store = get_storage()
        orphan = "att/2020/01/" + "ab" * 16 + ".png"
        store.put(orphan, [b"left over"])
        fresh = "att/2020/01/" + "cd" * 16 + ".png"
        store.put(fresh, [b"a download still committing"])
    old = time.time() - 7200
    os.utime(_file(app, orphan), (old, old))
    os.utime(_file(app, row.storage_key), (old, old))
    result = runner.invoke(args=["media", "sweep"])
    assert result.exit_code == 0, result.output
    assert orphan in result.output and "Deleted 1 orphan file." in result.output
    assert not _file(app, orphan).exists()
    assert _file(app, row.storage_key).exists() and _file(app, fresh).exists()


def test_the_daily_job_sweeps_files_whose_rows_went_without_the_orm(sim_webhooks, connected, app, run_jobs):
    alice = connected.ig.add_customer("alice")
    sent = alice.sends_attachment("image")
    run_jobs()
    [row] = _attachments(app, sent.mid)
    path = _file(app, row.storage_key)
    assert path.exists()
    with app.app_context():  # removed in SQL (a cascade, a script): no ORM hook deletes the file
        db.session.execute(delete(Attachment).where(Attachment.id == row.id))
        db.session.commit()
    old = time.time() - 7200
    os.utime(path, (old, old))
    with app.app_context():
        enqueue("inbox.jobs.refresh_tokens", queue="low")
    run_jobs()
    assert not path.exists()


def test_failed_downloads_are_retried_from_the_thread_and_the_cli(
        sim_webhooks, connected, app, client, auth, factory, runner, run_jobs):
    alice = connected.ig.add_customer("alice")
    first, second = alice.sends_attachment("image"), alice.sends_attachment("image")
    ids = [_attachments(app, s.mid)[0].id for s in (first, second)]
    with app.app_context():  # as if Instagram's CDN had been down for every try
        db.session.execute(update(Attachment).where(Attachment.id.in_(ids))
                           .values(media_state="failed", media_error="Instagram's server answered HTTP 502"))
        db.session.commit()
        for queue in ("low",):
            get_queue(queue).empty()
    assert "Retry" in _state_html(app, ids[0])

    _login_staff(auth, factory, connected.account)
    response = client.post(f"/accounts/{connected.account.id}/media/attachments/{ids[0]}/retry",
                           headers={"HX-Request": "true"})
    assert response.status_code == 200 and "Saving a copy" in response.get_data(as_text=True)
    run_jobs()
    assert _attachments(app, first.mid)[0].media_state == "stored"

    result = runner.invoke(args=["media", "retry", "--account", connected.account.ig_user_id])
    assert result.exit_code == 0 and "Queued 1 download" in result.output
    run_jobs()
    assert _attachments(app, second.mid)[0].media_state == "stored"


def test_a_stored_profile_picture_is_served_to_staff(sim, connected, app, client, auth, factory, run_jobs):
    from inbox.services.identities import note_participant
    account = connected.account
    gus = connected.ig.add_customer("gus")
    gus.sends_text("hi", deliver=False)
    factory.conversation(account, gus.igsid)
    with app.app_context():
        note_participant(account.id, gus.igsid)
        db.session.commit()
    run_jobs()
    row = identity_rows(app, account.id)[gus.igsid]
    assert row.profile_pic_state == "stored"
    _login_staff(auth, factory, account)
    response = client.get(f"/accounts/{account.id}/media/pictures/{row.id}")
    assert response.status_code == 200 and response.mimetype == "image/png" and response.data.startswith(b"\x89PNG")


# --- Outgoing attachments ---------------------------------------------------------------------

@pytest.fixture
def public_base(app, live_server):
    app.config["PUBLIC_BASE_URL"] = live_server.url
    return live_server.url


def _conversation_id(app, igsid: str) -> int:
    with app.app_context():
        return db.session.scalar(select(Conversation.id).where(Conversation.customer_igsid == igsid))


def test_a_sent_image_reaches_the_customer_as_its_own_message(
        sim_webhooks, connected, app, client, auth, factory, run_jobs, public_base):
    sim = sim_webhooks
    account = connected.account
    alice = connected.ig.add_customer("alice")
    alice.sends_text("Can I see the back of the dress?")
    conversation_id = _conversation_id(app, alice.igsid)
    _login_staff(auth, factory, account)
    first, second = png(20, 20, (200, 10, 10)), png(30, 30, (10, 10, 200))
    response = client.post(f"/accounts/{account.id}/conversations/{conversation_id}/attachments",
                           data={"files": [(io.BytesIO(first), "back.png", "image/png"),
                                           (io.BytesIO(second), "side.png", "image/png")],
                                 "client_token": "tok-1"},
                           content_type="multipart/form-data", headers={"HX-Request": "true"})
    assert response.status_code == 201, response.get_data(as_text=True)
    run_jobs()
    sim.settle()

    got = [r for r in alice.received if r.attachments]
    assert len(got) == 2 and len({r.mid for r in got}) == 2  # one message (one mid) per attachment
    fetched = []
    for received in got:
        [item] = received.attachments
        assert item["type"] == "image" and item["url"].startswith(public_base + "/m/")
        answer = requests.get(item["url"], timeout=5)  # what Instagram does with the link: no cookies
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
        fetched.append(answer.content)
    assert sorted(fetched) == sorted([first, second])

    with app.app_context():
        ours = list(db.session.scalars(select(Message).where(Message.conversation_id == conversation_id,
                                                             Message.direction == "out").order_by(Message.id)))
        assert [(m.status, m.sender_kind) for m in ours] == [("sent", "staff"), ("sent", "staff")]
        assert {m.mid for m in ours} == {r.mid for r in got}  # reconciled with the echoes: no duplicates
        assert [m.attachments[0].filename for m in ours] == ["back.png", "side.png"]
        assert all(m.attachments[0].media_state == "stored" for m in ours)

    # The link stops working: tampered, or older than MEDIA_PUBLIC_URL_SECONDS.
    url = got[0].attachments[0]["url"]
    assert requests.get(url.replace("/m/", "/m/x"), timeout=5).status_code == 404
    app.config["MEDIA_PUBLIC_URL_SECONDS"] = -1
    assert requests.get(url, timeout=5).status_code == 404


@pytest.mark.parametrize("name, content, content_type, why", [
    ("notes.txt", b"hello", "text/plain", "Instagram cannot send notes.txt"),
    ("fake.png", b"<html>not an image</html>", "image/png", "fake.png is not a PNG or JPEG image."),
    ("drawing.svg", b"<svg/>", "image/svg+xml", "Instagram cannot send drawing.svg"),
    ("clip.mp4", b"<html>a web page named like a video</html>", "video/mp4", "clip.mp4 is not a MP4 file."),
    ("report.pdf", b"MZ\x90\x00 a program", "application/pdf", "report.pdf is not a PDF."),
    ("huge.png", png(4, 4, (1, 2, 3)) + b"\0" * (8 * 1024 * 1024), "image/png",
     "huge.png is larger than Instagram&#39;s 8 MB limit"),
])
def test_files_instagram_would_refuse_are_refused_before_sending(
        sim_webhooks, connected, app, client, auth, factory, public_base, name, content, content_type, why):
    account = connected.account
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi")
    conversation_id = _conversation_id(app, alice.igsid)
    _login_staff(auth, factory, account)
    response = client.post(f"/accounts/{account.id}/conversations/{conversation_id}/attachments",
                           data={"files": [(io.BytesIO(content), name, content_type)]},
                           content_type="multipart/form-data", headers={"HX-Request": "true"})
    assert response.status_code == 200 and why in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Message).where(Message.direction == "out")) is None
    root = Path(app.config["MEDIA_ROOT"])
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]  # nothing kept
    assert alice.received == []


def test_a_video_and_a_pdf_go_out_with_their_own_send_shape(
        sim_webhooks, connected, app, client, auth, factory, run_jobs, public_base):
    sim = sim_webhooks
    account = connected.account
    alice = connected.ig.add_customer("alice")
    alice.sends_text("The invoice and the video, please")
    conversation_id = _conversation_id(app, alice.igsid)
    _login_staff(auth, factory, account)
    video = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 500
    pdf = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    response = client.post(f"/accounts/{account.id}/conversations/{conversation_id}/attachments",
                           data={"files": [(io.BytesIO(video), "try-on.mp4", "video/mp4"),
                                           (io.BytesIO(pdf), "invoice.pdf", "application/pdf")]},
                           content_type="multipart/form-data", headers={"HX-Request": "true"})
    assert response.status_code == 201
    run_jobs()
    sim.settle()
    got = [r for r in alice.received if r.attachments]
    assert sorted(r.attachments[0]["type"] for r in got) == ["file", "video"]
    bodies = {r.attachments[0]["type"]: requests.get(r.attachments[0]["url"], timeout=5) for r in got}
    assert bodies["video"].content == video and bodies["video"].headers["Content-Type"] == "video/mp4"
    assert bodies["file"].content == pdf and bodies["file"].headers["Content-Type"] == "application/pdf"


def test_no_upload_once_the_reply_window_closed(sim_webhooks, connected, app, client, auth, factory,
                                                public_base):
    sim = sim_webhooks
    account = connected.account
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi", at=time.time() - 30 * 3600)
    conversation_id = _conversation_id(app, alice.igsid)
    _login_staff(auth, factory, account)
    response = client.post(f"/accounts/{account.id}/conversations/{conversation_id}/attachments",
                           data={"files": [(io.BytesIO(png(4, 4, (1, 2, 3))), "a.png", "image/png")]},
                           content_type="multipart/form-data", headers={"HX-Request": "true"})
    assert response.status_code == 200 and "24 hours" in response.get_data(as_text=True)
    root = Path(app.config["MEDIA_ROOT"])
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]
    assert alice.received == []


def test_another_accounts_conversation_cannot_receive_uploads(sim_webhooks, connected, app, client, auth,
                                                             factory, public_base):
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi")
    conversation_id = _conversation_id(app, alice.igsid)
    other = factory.account(username="other_shop")
    _login_staff(auth, factory, other)
    response = client.post(f"/accounts/{other.id}/conversations/{conversation_id}/attachments",
                           data={"files": [(io.BytesIO(png(4, 4, (1, 2, 3))), "a.png", "image/png")]},
                           content_type="multipart/form-data")
    assert response.status_code == 404
    assert alice.received == []
