"""The Meta simulator in tests: real HTTP, real signatures, scripted customers.

Fixtures (tests/conftest.py):

- `sim`: a Simulator served over real HTTP for this test. The app (built after it, in
  whatever order the test names its fixtures) points GRAPH_API_BASE,
  GRAPH_FACEBOOK_API_BASE and the OAuth URLs at it, and allows its host for media
  downloads. Webhooks are synchronous: an action returns once the POST was answered.
  Webhook retries are off unless a test sets `sim.faults.retry_delays`.
- `connected`: a `Connected(account, ig)`: an Account row (detached) and the
  simulated account (`AccountHandle`) sharing one ig_user_id and token.
- `sim_webhooks`: `sim` delivering to the app served by `live_server`
  (`/webhooks/instagram`), handshake passed with META_VERIFY_TOKEN, signed with
  META_APP_SECRET.

Typical test:

    def test_customer_message_lands(sim_webhooks, connected, app):
        alice = connected.ig.add_customer("alice", name="Alice")
        sent = alice.sends_text("Is the blue one in stock?")
        assert sent.delivery.status == 200
        ...  # the message with mid sent.mid is in the database

    def test_reply_reaches_customer(sim, connected, app):
        alice = connected.ig.add_customer("alice")
        alice.sends_text("hi", deliver=False)          # history, no webhook
        with app.app_context():
            GraphClient.for_account(connected.account).send_text(alice.igsid, "Hello!")
        assert alice.received_texts == ["Hello!"]

Helpers for more than one account or a custom receiver: `connect_account(factory, sim, ...)`
and `wire_webhooks(sim, base_url, path=...)`. The simulator's own API is documented in
`inbox/sim/__init__.py` and `docs/CONVENTIONS.md` ("Simulator").
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update

from inbox.extensions import db
from inbox.models import Account
from inbox.sim import AccountHandle, Handshake, Simulator

WEBHOOK_PATH = "/webhooks/instagram"


def start_simulator(*, app_secret: str, verify_token: str, **settings) -> Simulator:
    """A simulator on a free port, signing with app_secret; webhook retries off."""
    return Simulator(app_secret=app_secret, verify_token=verify_token, **settings).serve()


def point_app_at(app_config: dict, sim: Simulator) -> None:
    """Make an app (not built yet) talk to the simulator instead of Meta."""
    app_config.update(
        GRAPH_API_BASE=sim.url,
        GRAPH_FACEBOOK_API_BASE=sim.url,
        OAUTH_AUTHORIZE_URL=f"{sim.url}/oauth/authorize",
        OAUTH_TOKEN_URL=f"{sim.url}/oauth/access_token",
        META_APP_ID=sim.settings.app_id,
        META_INSTAGRAM_APP_ID=sim.settings.app_id,
    )
    # The simulator's CDN lives on 127.0.0.1; the media fetcher's allow-list must know it.
    from inbox.config import Defaults

    hosts = list(app_config.get("MEDIA_ALLOWED_HOSTS", Defaults.MEDIA_ALLOWED_HOSTS))
    app_config["MEDIA_ALLOWED_HOSTS"] = hosts + ["127.0.0.1"]
    # …and that this one host may be fetched on a private address and its own port.
    app_config["MEDIA_PRIVATE_HOSTS"] = [*app_config.get("MEDIA_PRIVATE_HOSTS", ()), "127.0.0.1"]


def wire_webhooks(sim: Simulator, base_url: str, path: str = WEBHOOK_PATH, *, verify_token: str | None = None,
                  app_secret: str | None = None) -> Handshake:
    """Point the simulator's webhooks at base_url+path and run the handshake (asserted to pass)."""
    result = sim.connect_webhooks(base_url.rstrip("/") + path, verify_token=verify_token, app_secret=app_secret)
    assert result.ok, f"webhook handshake failed: HTTP {result.status} {result.response!r} {result.error or ''}"
    return result


@dataclass(frozen=True)
class Connected:
    """An account in the inbox and the same account in the simulator."""

    account: Account  # the row, detached (read its ids outside an app context)
    ig: AccountHandle  # the simulated account: add customers, posts; tokens


def connect_account(factory, sim: Simulator, username: str | None = None, *, flavour: str = "instagram") -> Connected:
    """Create an account in the simulator and the same one in the inbox (its token stored encrypted)."""
    ig = sim.add_account(username or "shop")
    account = factory.account(ig.ig_user_id, ig.username, token=ig.token)
    if flavour != "instagram":
        with factory.app.app_context():
            db.session.execute(update(Account).where(Account.id == account.id)
                               .values(api_flavour=flavour, page_id=ig.page_id))
            db.session.commit()
            account = db.session.get(Account, account.id)
            db.session.expunge(account)
    return Connected(account, ig)
