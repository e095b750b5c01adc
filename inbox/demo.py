"""`inbox demo`: the whole inbox against the Meta simulator, seeded and kept alive.

One command, no Meta app: the simulator (inbox/sim) plays Instagram on a local port, the
inbox runs as `inbox run` does (migrations, two web processes, one worker) in its own
instance directory (`instance/demo/`), and a script plays customers who keep writing at
a gentle pace. Replies typed in the inbox go through the real Send API client to the
simulator, whose echoes come back as webhooks, exactly as with Meta.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select

from . import create_app, runner
from .extensions import db
from .models import Conversation
from .services import accounts, applier, assignees, automations, conversations, labels, notes, saved_replies, staff
from .services.insights import facts, sales
from .services.products import catalogue, posts
from .sim import Simulator

log = logging.getLogger(__name__)

ADMIN_EMAIL = "admin@demo.local"
AGENT_EMAIL = "agent@demo.local"
ADMIN_PASSWORD = "demo-admin-password"
AGENT_PASSWORD = "demo-agent-password"
# The team: a second agent, labels, saved replies (then a few notes and assignments on the history).
AGENT2_EMAIL = "agent2@demo.local"
AGENT2_PASSWORD = "demo-agent2-password"
LABELS = [("VIP", "purple"), ("Wholesale", "blue"), ("Follow up", "orange")]
SAVED_REPLIES = [
    ("hi", "Hi {first_name}! Thanks for writing to us. How can I help?"),
    ("price", "Hi {first_name}, {product} is {price}. Shall I put one aside for you?"),
    ("ship", "We ship within 2 working days; you'll get a tracking link. — {agent}"),
]

# The catalogue: (sku, name, price, keywords).
PRODUCTS = [
    ("RD-1", "Red Linen Dress", "89.00", "red dress, linen dress"),
    ("BS-2", "Blue Silk Scarf", "35.00", "silk scarf, blue scarf"),
    ("CT-3", "Canvas Tote", "29.00", "tote, canvas bag"),
    ("GH-4", "Gold Hoops", "45.00", "hoops, gold earrings"),
]
# The shop's own posts: (caption, sku linked by hand or None).
POSTS = [
    ("Our new red linen dress is here. Breezy, easy, made for summer evenings.", "RD-1"),
    ("Silk scarf in ocean blue: wear it three ways.", "BS-2"),
    ("The everyday canvas tote, now in sand and olive.", None),  # auto-linked by its caption
    ("Weekend look: canvas tote and gold hoops.", None),  # matches two products: staff decide
]
CUSTOMERS = [
    ("maya.styles", "Maya Lindqvist"),
    ("jonas_k", "Jonas Keller"),
    ("priya.makes", "Priya Raman"),
    ("tom.b", None),
    ("lea_v", "Léa Vidal"),
]
NEW_CUSTOMERS = [
    ("sofia.rn", "Sofia Rinaldi"), ("kenji.t", "Kenji Tanaka"), ("amara.o", "Amara Okafor"),
    ("lukas_m", "Lukas Meyer"), ("nina.p", "Nina Petrova"), ("omar.h", None),
]
QUESTIONS = [
    "Hi! Do you ship to Germany?", "Is this still available in medium?", "How long does delivery take?",
    "Can I pay on delivery?", "Do you have it in black too?", "What are the measurements of size S?",
    "Is the fabric machine washable?", "Can I return it if it doesn't fit?", "Any discount for two? 😊",
    "Hello, I ordered last week and haven't received a tracking number.",
]
THANKS = ["Thank you!", "Perfect, thanks 🙏", "Great, I will order now.", "Ok! 👍", "Super, merci !"]
OWNER_LINES = ["Hi! Yes, we ship everywhere in the EU.", "It is, in every size 🙂", "Sending you the link now!"]
# People who only comment on the shop's posts (no profile can be read until they write a DM).
COMMENTERS = ["nora.designs", "felix_r", "ines.pt", "dario.m", "yuki.s"]
COMMENTS = [
    "Price? 😍", "How much is this?", "Is it available in M?", "Love it!! 🔥", "Do you ship to Spain?",
    "Preço? 🙏", "Need this 💕", "What fabric is it?", "link pls", "Stunning 😍😍",
]
# The keyword rule the demo starts with: a private reply to price questions, and a public nudge.
DEMO_RULE = dict(
    name="Price questions", keywords="price, how much, preço, precio, prix, 💰",
    template="Hi {first_name}! {product} is {price}. Here is the post: {link} Reply here to order 🙂",
    public_replies=["Sent you a DM, {username}!", "Check your DMs {username} 💌"],
)


def default_instance() -> Path:
    return Path(Flask("inbox").instance_path) / "demo"


@dataclass
class DemoWorld:
    """What the demo seeded, for the script and the banner."""

    sim: object
    shop: object
    posts: list = field(default_factory=list)  # (Media, sku or None)
    customers: list = field(default_factory=list)  # CustomerHandle
    replied: dict = field(default_factory=dict)  # igsid -> number of replies seen
    commenters: list = field(default_factory=list)  # CustomerHandle: people who comment
    account_id: int | None = None
    admin_id: int | None = None


def prepare_instance(instance: Path, *, reset: bool) -> None:
    """A fresh SQLite database and media folder on each start (secrets are kept)."""
    instance.mkdir(parents=True, exist_ok=True)
    if reset and not os.environ.get("DATABASE_URL"):
        for name in ("inbox.sqlite3", "inbox.sqlite3-wal", "inbox.sqlite3-shm"):
            (instance / name).unlink(missing_ok=True)
        shutil.rmtree(instance / "media", ignore_errors=True)


def write_config(instance: Path, sim_url: str, public_url: str) -> None:
    """Point this instance at the simulator (the web processes and the worker read it)."""
    (instance / "config.py").write_text(
        "# Written by `inbox demo` on each start: this instance talks to the Meta simulator.\n"
        f"GRAPH_API_BASE = {sim_url!r}\n"
        f"GRAPH_FACEBOOK_API_BASE = {sim_url!r}\n"
        f"OAUTH_AUTHORIZE_URL = {sim_url + '/oauth/authorize'!r}\n"
        f"OAUTH_TOKEN_URL = {sim_url + '/oauth/access_token'!r}\n"
        "MEDIA_ALLOWED_HOSTS = ['lookaside.fbsbx.com', '*.fbcdn.net', '*.cdninstagram.com', '127.0.0.1']\n"
        "MEDIA_REQUIRE_HTTPS = False\n"
        "MEDIA_PRIVATE_HOSTS = ['127.0.0.1']  # the simulator's CDN: the fetcher may reach it on loopback\n"
        f"PUBLIC_BASE_URL = {public_url!r}\n"
    )


def seed_database(app, world: DemoWorld) -> None:
    """Staff, the account (with the simulator's token) and the catalogue with its posts."""
    with app.app_context():
        admin = staff.find_user(ADMIN_EMAIL) or staff.create_user(
            ADMIN_EMAIL, ADMIN_PASSWORD, name="Ana (admin)", superadmin=True)
        agent = staff.find_user(AGENT_EMAIL) or staff.create_user(AGENT_EMAIL, AGENT_PASSWORD, name="Ben (agent)")
        shop = world.shop
        account = accounts.find_account(shop.ig_user_id)
        if account is None:
            account = accounts.add_account(shop.ig_user_id, shop.username, token=shop.token, name="Demo Shop")
        else:
            accounts.set_token(account.id, shop.token)
        staff.grant_role(admin.id, account.id, "admin")
        staff.grant_role(agent.id, account.id, "agent")
        agent2 = staff.find_user(AGENT2_EMAIL) or staff.create_user(AGENT2_EMAIL, AGENT2_PASSWORD,
                                                                     name="Cleo (agent)")
        staff.grant_role(agent2.id, account.id, "agent")
        for name, color in LABELS:
            if labels.find_label(account.id, name) is None:
                labels.create_label(account.id, name, color)
        have = {r.shortcut for r in saved_replies.replies(account.id)}
        for shortcut, text in SAVED_REPLIES:
            if shortcut not in have:
                saved_replies.create_reply(account.id, shortcut, text, user_id=admin.id)

        for sku, name, price, keywords in PRODUCTS:
            if catalogue.find_by_sku(account.id, sku) is None:
                catalogue.create_product(account.id, name=name, sku=sku, price=price, keywords=keywords,
                                         currency="EUR")
        for media, sku in world.posts:
            post = posts.ensure_post(account.id, media.id, caption=media.caption, seen_via="own_media")
            post.is_own = True
            post.owner_username = shop.username
            db.session.commit()
            if sku and post.link is None:
                posts.link_post(account.id, post.id, catalogue.find_by_sku(account.id, sku).id, admin.id)
        facts.update_settings(account.id, timezone="Europe/Lisbon", currency="EUR",
                              schedule={d: [(9 * 60, 19 * 60)] for d in range(6)})
        account_id, admin_id = account.id, admin.id
    world.account_id, world.admin_id = account_id, admin_id


def wait_until_applied(app, timeout: float = 60.0) -> None:
    """Wait until the worker's applier has applied every delivery received so far.

    The webhook only stores a delivery; the applier writes its messages a moment later, so
    seeding that reads the history waits for it (or gives up after `timeout` and seeds what
    has arrived).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            waiting = applier.apply_lag(window=0).waiting
            db.session.remove()
        if not waiting:
            return
        time.sleep(0.2)
    log.warning("the applier had not caught up after %.0f s; seeding what has arrived", timeout)


def seed_team_work(app, world: DemoWorld) -> None:
    """On the history: assignments to each agent, labels, and notes that mention a colleague."""
    wait_until_applied(app)
    with app.app_context():
        account_id = world.account_id
        ben, cleo = staff.find_user(AGENT_EMAIL), staff.find_user(AGENT2_EMAIL)
        rows = conversations.list_conversations(account_id, conversations.Filters()).rows[:4]
        plan = [(ben, "VIP", "@ben she is a regular: offer the 10% code."),
                (cleo, "Wholesale", "@cleo asks for 20 pieces; check stock with the warehouse first."),
                (ben, "Follow up", None), (None, None, None)]
        for row, (person, label_name, note) in zip(rows, plan):
            conversation = row.conversation
            if conversation.assignee_user_id is None and person is not None:
                assignees.assign(account_id, conversation.id, person.id, actor_id=world.admin_id)
            label = labels.find_label(account_id, label_name) if label_name else None
            if label is not None:
                labels.add_label(account_id, conversation.id, label.id, actor_id=world.admin_id)
            if note:
                notes.add_note(account_id, conversation.id, world.admin_id, note)


def seed_automation(app, world: DemoWorld) -> None:
    """One keyword rule, active: price questions in the comments get a private reply."""
    with app.app_context():
        if not automations.list_automations(world.account_id):
            spec = automations.check_rule(world.account_id, **DEMO_RULE)
            automations.create_automation(world.account_id, spec, world.admin_id)


def play_comments(world: DemoWorld, rng: random.Random) -> None:
    """A few comments on the shop's posts: questions, a reply between customers, emoji."""
    now = datetime.now(timezone.utc)
    people = [world.shop.add_customer(username) for username in COMMENTERS]
    world.commenters.extend(people)
    first = people[0].comments_on(world.posts[0][0], "Love the colour 😍", at=now - timedelta(minutes=50))
    people[1].comments_on(world.posts[0][0], "@nora.designs same!! 🔥", reply_to=first.mid,
                          at=now - timedelta(minutes=45))
    people[2].comments_on(world.posts[2][0], "Is it big enough for a laptop?", at=now - timedelta(minutes=20))
    people[3].comments_on(world.posts[1][0], "How much? 💰")
    world.sim.settle(30)


def load_own_media(app, world: DemoWorld) -> None:
    """Fill in the posts' details from the (simulated) Graph API, as the Posts page's button does."""
    with app.app_context():
        posts.start_load_own_media(world.account_id, world.admin_id)


def build_world(sim) -> DemoWorld:
    shop = sim.add_account("demo.shop", name="Demo Shop")
    world = DemoWorld(sim=sim, shop=shop)
    for caption, sku in POSTS:
        world.posts.append((shop.add_post(caption), sku))
    return world


def play_history(world: DemoWorld, rng: random.Random) -> None:
    """A handful of customers with a few hours of history, through real webhooks."""
    now = datetime.now(timezone.utc)
    shop = world.shop
    scripts = [
        lambda c, at: [c.sends_text("Hi! I love the red dress in your last post 😍", at=at(180)),
                       c.shares_post(world.posts[0][0], at=at(179)),
                       c.sends_text("Is it true to size?", at=at(178))],
        lambda c, at: [c.clicks_ad("Hi! I saw your ad, is the scarf still available?", post=world.posts[1][0],
                                   at=at(120)),
                       shop.types_in_app(c, "Hi Jonas! Yes it is, which colour would you like?", at=at(110)),
                       c.sends_text("The blue one please", at=at(100))],
        lambda c, at: [c.mentions_in_story(at=at(90)),
                       c.sends_text("Wore my new hoops today ✨", at=at(89))],
        lambda c, at: [c.sends_text("hello", at=at(60)),
                       c.sends_attachment("image", text="Do you have this one?", at=at(59))],
        lambda c, at: [c.shares_post(world.posts[2][0], at=at(30)),
                       c.sends_text("How much is this tote?", at=at(29))],
    ]
    for (username, name), script in zip(CUSTOMERS, scripts):
        customer = shop.add_customer(username, name=name)
        world.customers.append(customer)
        script(customer, lambda minutes: now - timedelta(minutes=minutes))
    world.sim.settle(30)


class CustomerScript(threading.Thread):
    """Customers who keep writing, one small action every `pace` seconds (give or take)."""

    def __init__(self, world: DemoWorld, pace: float, seed: int | None = None) -> None:
        super().__init__(name="demo-customers", daemon=True)
        self.world = world
        self.pace = pace
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self._new = list(NEW_CUSTOMERS)

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.wait(self.pace * self.rng.uniform(0.6, 1.4)):
            try:
                self.step()
            except Exception:  # the demo keeps going whatever one action did
                log.warning("demo action failed", exc_info=True)

    def step(self) -> None:
        if self.answer_replies():
            return
        w, rng = self.world, self.rng
        action = rng.choices(
            ["question", "new", "share", "ad", "story", "owner", "react", "photo", "voice", "video", "reel", "comment"],
            weights=[5, 2, 2, 1, 1, 1, 1, 1, 1, 0.5, 0.5, 3])[0]
        if action == "comment" and w.commenters:
            self.comment()
            return
        if action == "new" and self._new:
            username, name = self._new.pop(0)
            customer = w.shop.add_customer(username, name=name)
            w.customers.append(customer)
            customer.sends_text(rng.choice(QUESTIONS))
            return
        customer = rng.choice(w.customers)
        if action == "share":
            media, _ = rng.choice(w.posts)
            customer.shares_post(media)
            customer.sends_text(rng.choice(["Is this available?", "How much?", "Do you have it in stock?"]))
        elif action == "ad":
            media, _ = rng.choice(w.posts)
            customer.clicks_ad(post=media)
        elif action == "story":
            customer.mentions_in_story()
        elif action == "owner":
            w.shop.types_in_app(customer, rng.choice(OWNER_LINES))
        elif action == "react":
            received = customer.received
            if received:
                customer.reacts(received[-1].mid)
            else:
                customer.sends_text(rng.choice(QUESTIONS))
        elif action == "photo":
            customer.sends_attachment("image", text="Like this one")
        elif action == "voice":
            customer.sends_attachment("audio")
        elif action == "video":
            customer.sends_attachment("video", text="Here is how it looks on")
        elif action == "reel":
            customer.shares_reel()
        else:
            customer.sends_text(rng.choice(QUESTIONS))

    def comment(self) -> None:
        """Someone comments on a post, answers another comment, or deletes what they wrote."""
        w, rng = self.world, self.rng
        person = rng.choice(w.commenters + w.customers[:2])
        media, _ = rng.choice(w.posts)
        sim_comments = [c for c in w.sim.world.comments.values() if c.media_id == media.id and not c.deleted]
        roll = rng.random()
        if roll < 0.15 and sim_comments:
            other = rng.choice(sim_comments)
            if other.author_id != person.igsid and not other.own:
                person.comments_on(media, f"@{other.username} {rng.choice(['same!', 'me too 😍', 'agree'])}",
                                   reply_to=other.id)
                return
        mine = [c for c in sim_comments if c.author_id == person.igsid]
        if roll > 0.95 and mine:
            person.deletes_comment(mine[-1].id)
            return
        person.comments_on(media, rng.choice(COMMENTS))

    def answer_replies(self) -> bool:
        """A customer who got a reply from the inbox answers it (once per reply)."""
        for customer in list(self.world.customers) + list(self.world.commenters):
            replies = [r for r in customer.received if r.origin == "api"]
            seen = self.world.replied.get(customer.igsid, 0)
            if len(replies) > seen:
                self.world.replied[customer.igsid] = len(replies)
                customer.sees(replies[-1].mid)
                customer.sends_text(self.rng.choice(THANKS))
                return True
        return False


def play_weeks(world: DemoWorld, rng: random.Random, weeks: int = 6) -> list[tuple[object, str | None]]:
    """Weeks of earlier conversations through real webhooks, so Insights is full on first open.

    Each day brings a few new customers (more on weekdays and in the evening): a plain DM,
    a shared post, an ad, a story reply. The owner answers most from the Instagram app,
    sooner in business hours. Returns (customer, sku of the post or ad) for the outcomes.
    """
    shop, now = world.shop, datetime.now(timezone.utc)
    opened = []
    n = 0
    for day in range(weeks * 7, 0, -1):
        date = (now - timedelta(days=day)).replace(minute=0, second=0, microsecond=0)
        for _ in range(rng.randint(4, 9) if date.weekday() < 5 else rng.randint(2, 5)):
            n += 1
            at = date.replace(hour=rng.choice((9, 10, 11, 12, 13, 14, 17, 18, 19, 20, 21, 21, 22))) + \
                timedelta(minutes=rng.randint(0, 59))
            customer = shop.add_customer(f"{rng.choice(('ana', 'rui', 'eva', 'leo', 'mia', 'tia'))}.{n}")
            kind = rng.choices(("dm", "post", "ad", "story"), (40, 30, 18, 12))[0]
            media, sku = rng.choice(world.posts[:3])
            if kind == "post":
                customer.shares_post(media, at=at)
                customer.sends_text(rng.choice(QUESTIONS), at=at + timedelta(seconds=30))
            elif kind == "ad":
                customer.clicks_ad("Hi! I saw your ad, is it still available?", post=media, ad_id=f"AD-{sku}",
                                   title=f"{sku} spring campaign", at=at)
            elif kind == "story":
                customer.replies_to_story("Love this! 😍", at=at)
            else:
                customer.sends_text(rng.choice(QUESTIONS), at=at)
            if rng.random() < 0.88:
                open_hours = at.weekday() < 6 and 9 <= at.hour < 19
                wait = timedelta(minutes=rng.randint(2, 50) if open_hours else rng.randint(60, 600))
                shop.types_in_app(customer, rng.choice(OWNER_LINES), at=at + wait)
                if rng.random() < 0.6:
                    customer.sends_text(rng.choice(THANKS), at=at + wait + timedelta(minutes=rng.randint(1, 30)))
            opened.append((customer, sku if kind in ("post", "ad") else None))
    return opened


def mark_outcomes(app, world: DemoWorld, opened: list, rng: random.Random, wait_seconds: float = 300) -> None:
    """Staff marked some of those conversations Sold (with the product and amount) or Not sold.

    Waits (polling; the live script keeps the simulator busy, so it never settles) until
    the history's conversations arrived, or wait_seconds passed.
    """
    igsids = [customer.igsid for customer, _ in opened]
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        with app.app_context():
            arrived = db.session.scalar(select(func.count()).select_from(Conversation).where(
                Conversation.account_id == world.account_id, Conversation.customer_igsid.in_(igsids)))
            db.session.remove()
        if arrived >= len(igsids):
            break
        time.sleep(2)  # the webhooks are still arriving
    with app.app_context():
        agent = staff.find_user(AGENT_EMAIL)
        prices = {sku: price for sku, _, price, _ in PRODUCTS}
        for customer, sku in opened:
            conversation = db.session.scalar(select(Conversation).where(
                Conversation.account_id == world.account_id, Conversation.customer_igsid == customer.igsid))
            if conversation is None or rng.random() > 0.3:
                continue
            user_id = rng.choice((world.admin_id, agent.id if agent else world.admin_id))
            product = catalogue.find_by_sku(world.account_id, sku or rng.choice(PRODUCTS)[0])
            if rng.random() < 0.7:
                quantity = rng.choice((1, 1, 1, 2))
                sales.mark_sold(world.account_id, conversation.id, product_id=product.id, quantity=quantity,
                                amount=str(Decimal(prices[product.sku]) * quantity), user_id=user_id)
            else:
                sales.mark_not_sold(world.account_id, conversation.id, user_id=user_id,
                                    reason=rng.choice(sales.REASONS))


def play_weeks_and_outcomes(app, world: DemoWorld, seed: int | None) -> None:
    """The weeks of history, then their outcomes (a thread beside the live script)."""
    try:
        mark_outcomes(app, world, play_weeks(world, random.Random(seed)), random.Random(seed))
    except Exception:  # a demo nicety: say so in the log and keep the demo running
        log.exception("the demo's weeks of history did not finish")


def run_demo(*, host: str = "127.0.0.1", port: int = 5000, sim_port: int = 0, pace: float = 8.0,
             web_processes: int = 2, instance: str | os.PathLike | None = None, reset: bool = True,
             seed: int | None = None) -> int:
    """Start the simulator and the inbox, seed them, keep customers writing; until Ctrl-C."""
    instance_path = Path(instance) if instance else default_instance()
    prepare_instance(instance_path, reset=reset)
    os.environ["INBOX_INSTANCE_PATH"] = str(instance_path)
    base = create_app()  # generates this instance's development secrets
    sim = Simulator(app_secret=base.config["META_APP_SECRET"], verify_token=base.config["META_VERIFY_TOKEN"],
                    sync=False, seed=seed).serve("127.0.0.1", sim_port)
    public_url = f"http://{host}:{port}"
    write_config(instance_path, sim.url, public_url)
    app = create_app()
    world = build_world(sim)
    script = CustomerScript(world, pace, seed)

    def after_start(base_url: str) -> None:
        handshake = sim.connect_webhooks(base_url + "/webhooks/instagram")
        if not handshake.ok:
            raise RuntimeError(f"The inbox refused the simulator's webhook handshake: {handshake.status}")
        load_own_media(app, world)
        play_history(world, random.Random(seed))
        world.sim.settle(30)
        seed_team_work(app, world)
        play_comments(world, random.Random(seed))
        script.start()
        # Older weeks arrive beside the live script (a minute or so of webhooks) for Insights.
        threading.Thread(target=play_weeks_and_outcomes, args=(app, world, seed), name="demo-weeks",
                         daemon=True).start()

    banner = (
        f"  Meta simulator at {sim.url}  (account @{world.shop.username}, id {world.shop.ig_user_id})\n"
        f"  Log in as   {ADMIN_EMAIL} / {ADMIN_PASSWORD}   (admin)\n"
        f"         or   {AGENT_EMAIL} / {AGENT_PASSWORD}   (agent)\n"
        f"         or   {AGENT2_EMAIL} / {AGENT2_PASSWORD}   (a second agent: try two browsers)\n"
        f"  Customers write every ~{pace:g} s; replies you send reach them through the simulator.\n"
        f"  Comments: people comment on the posts; the rule {DEMO_RULE['name']!r} answers price questions.\n"
    )
    try:
        return runner.run(host=host, port=port, app=app, web_processes=web_processes,
                          before_serving=lambda app, env: (seed_database(app, world), seed_automation(app, world)),
                          after_start=after_start, banner_extra=banner)
    finally:
        script.stop()
        sim.close()
