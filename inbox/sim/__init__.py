"""A local stand-in for Meta: the Graph API, the webhook sender, a CDN and scripted customers.

Faithful to Meta's documentation (https://developers.facebook.com/docs/instagram-platform) and,
where it is silent, to what integrators observe. Layers:

- world.py      the state (accounts, customers, conversations, messages, media, clock)
- graph.py      the Graph API routes, errors, rate limits (fields.py parses field expansion)
- webhooks.py   the handshake, signed deliveries, retries and delivery faults (events.py builds bodies)
- cdn.py        signed, expiring media links
- control.py    the Python control surface (AccountHandle, CustomerHandle); api.py the same over HTTP
- simulator.py  the Simulator that ties them together; __main__.py runs it as a process

Use from Python:

    sim = Simulator(app_secret="s", verify_token="v").serve()
    shop = sim.add_account("shop")
    sim.connect_webhooks("http://127.0.0.1:5000/webhooks/instagram")
    alice = shop.add_customer("alice", name="Alice")
    alice.sends_text("hello")           # delivered before this returns (sync mode)

Or as a process: `python -m inbox.sim --port 8765 --callback URL --verify-token T --app-secret S`.
"""

from .control import ACTIONS, AccountHandle, CustomerHandle, Sent
from .graph import GraphFault
from .settings import Faults, Limits, Settings
from .simulator import GraphCall, Simulator
from .webhooks import Delivery, Handshake, WebhookRefused

__all__ = ["ACTIONS", "AccountHandle", "CustomerHandle", "Delivery", "Faults", "GraphCall", "GraphFault",
           "Handshake", "Limits", "Sent", "Settings", "Simulator", "WebhookRefused"]
