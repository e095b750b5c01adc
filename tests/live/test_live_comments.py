"""Comment frames over /live: escaped, swapped by id, and only for the account's members."""

from __future__ import annotations

import pytest

from inbox.live import publish
from tests.support.clients import logged_in_client
from tests.support.live import LiveSocket, session_cookie


@pytest.fixture
def agent(factory, connected):
    return factory.staff_on(connected.account, "agent")


def test_comment_frames_reach_members_only_and_place_the_comment(app, live_server, sim_webhooks, connected, agent,
                                                                  factory):
    other_account = factory.account(username="elsewhere")
    outsider = factory.staff_on(other_account, "admin")
    member = LiveSocket(live_server.url, session_cookie(logged_in_client(app, agent)), account=connected.account.id)
    stranger = LiveSocket(live_server.url, session_cookie(logged_in_client(app, outsider)))
    try:
        member.wait_for('id="live-state"')
        stranger.wait_for('id="live-state"')
        media = connected.ig.add_post("Red dress")
        anna = connected.ig.add_customer("anna.b")
        first = anna.comments_on(media, "Is it <script>alert(1)</script> silk?")
        frame = member.wait_for("silk?")
        assert "&lt;script&gt;" in frame and "<script>alert" not in frame
        assert 'hx-swap-oob="beforeend:#post-comments-' in frame
        assert 'hx-swap-oob="afterbegin:#comment-posts"' in frame
        anna.comments_on(media, "@anna.b yes", reply_to=first.mid)
        reply = member.wait_for("@anna.b yes")
        assert 'hx-swap-oob="beforeend:#comment-replies-' in reply
        anna.edits_comment(first.mid, "Is it silk or linen?")
        edited = member.wait_for("silk or linen")
        assert 'hx-swap-oob="true"' in edited
        with app.app_context():
            publish.publish(other_account.id, "account.updated")
        assert "silk" not in stranger.wait_for("account-banners")
    finally:
        member.close()
        stranger.close()
