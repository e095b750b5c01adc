"""The catalogue and posts pages, post links from a thread card, the dropdown, and the CLI."""

from __future__ import annotations

import io
import json

from sqlalchemy import select

from inbox.extensions import db, get_redis
from inbox.models import Attachment, Message, Product
from inbox.live.publish import channel
from inbox.services.products import posts
from tests.support.stored import conversation_of


def _attachment_id(app, mid):
    with app.app_context():
        return db.session.scalar(select(Attachment.id).join(Message).where(Message.mid == mid))


# --- Catalogue ----------------------------------------------------------------------------

def test_admins_add_edit_and_archive_products_and_agents_only_read(app, client, auth, factory):
    account = factory.account()
    admin = factory.staff_on(account, "admin")
    agent = factory.staff_on(account, "agent")
    auth.login(admin)
    base = f"/accounts/{account.id}/products/"
    r = client.post(base, data={"name": "Red Dress", "sku": "RD-1", "price": "49,90", "currency": "eur",
                                "keywords": "red dress, , crimson"})
    assert r.status_code == 303
    page = client.get(base).get_data(as_text=True)
    assert "Red Dress" in page and "RD-1" in page and "49.90 EUR" in page and "crimson" in page
    r = client.post(base, data={"name": "Other", "sku": "rd-1"})
    assert r.status_code == 422 and "SKU rd-1 is already used by Red Dress." in r.get_data(as_text=True)
    r = client.post(base, data={"name": "  ", "sku": "X-1"})
    assert r.status_code == 422 and "A product needs a name." in r.get_data(as_text=True)
    with app.app_context():
        pid = db.session.scalar(select(Product.id))
    assert client.post(f"{base}{pid}", data={"name": "Red Dress Long", "sku": "RD-1", "keywords": ""}).status_code == 303
    assert client.post(f"{base}{pid}/archive").status_code == 303
    assert f'id="product-{pid}"' not in client.get(base).get_data(as_text=True)
    assert f'id="product-{pid}"' in client.get(base + "?archived=1").get_data(as_text=True)

    auth.logout()
    auth.login(agent)
    page = client.get(base + "?archived=1").get_data(as_text=True)
    assert "Red Dress Long" in page and "New product" not in page
    assert client.post(base, data={"name": "B", "sku": "B-1"}).status_code == 403
    assert client.post(f"{base}{pid}/restore").status_code == 403
    assert client.get(f"{base}new").status_code == 403


def test_csv_import_adds_good_rows_and_reports_each_rejected_one(app, client, auth, factory):
    account = factory.account()
    auth.login(factory.staff_on(account, "admin"))
    factory.product(account, "Red Dress", "RD-1")
    csv_text = ("sku,name,price,keywords\n"
                "BS-2,Blue Scarf,19.5,\"scarf, blue scarf\"\n"
                "rd-1,Another dress,10,\n"
                "GL-3,,5,\n"
                "BS-2,Blue Scarf again,,\n"
                "\n"
                "HT-4,Hat,abc,\n"
                "CP-5,Cap,,cap\n")
    r = client.post(f"/accounts/{account.id}/products/import",
                    data={"file": (io.BytesIO(csv_text.encode()), "catalogue.csv")},
                    content_type="multipart/form-data")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "<strong>2</strong> products added" in html and "<strong>4</strong> rows rejected" in html
    assert "SKU rd-1 is already in the catalogue (Red Dress)." in html
    assert "A product needs a name." in html
    assert "SKU BS-2 already appears on line 2 of this file." in html
    assert "The price &#39;abc&#39; is not a number." in html
    with app.app_context():
        assert sorted(db.session.scalars(select(Product.sku))) == ["BS-2", "CP-5", "RD-1"]
        assert db.session.scalars(select(Product).where(Product.sku == "BS-2")).one().keywords == "scarf, blue scarf"
    r = client.post(f"/accounts/{account.id}/products/import",
                    data={"file": (io.BytesIO(b"title,price\nx,1\n"), "bad.csv")}, content_type="multipart/form-data")
    assert r.status_code == 422 and "at least sku and name" in r.get_data(as_text=True)


# --- Posts and links --------------------------------------------------------------------

def test_the_posts_page_shows_link_states_and_links_and_unlinks(
        app, client, auth, factory, sim_webhooks, connected, run_jobs):
    account, shop = connected.account, connected.ig
    auth.login(factory.staff_on(account, "agent", name="Ana"))
    dress = factory.product(account, "Red Dress", "RD-1", keywords="dress").id
    shop.add_customer("alice").shares_post(caption="A dress for summer")
    shop.add_customer("bob").shares_post(caption="Nothing to see")
    own = shop.add_post("Our new hat")
    run_jobs()
    r = client.post(f"/accounts/{account.id}/posts/load")
    assert r.status_code == 303
    run_jobs()
    page = client.get(f"/accounts/{account.id}/posts/").get_data(as_text=True)
    assert "Auto-linked" in page and "Not linked" in page and "Our post" in page and "Our new hat" in page
    assert "Loaded 1 post from Instagram (1 new)." in page
    with app.app_context():
        post = posts.find_post(account.id, own.id)
    r = client.post(f"/accounts/{account.id}/posts/{post.id}/link", data={"product_id": dress},
                    headers={"HX-Request": "true"})
    assert r.status_code == 200 and "Linked by hand" in r.get_data(as_text=True)
    manual = client.get(f"/accounts/{account.id}/posts/?state=manual").get_data(as_text=True)
    assert "Our new hat" in manual and "A dress for summer" not in manual
    r = client.post(f"/accounts/{account.id}/posts/{post.id}/unlink", headers={"HX-Request": "true"})
    assert "Not linked" in r.get_data(as_text=True)
    assert "Our new hat" in client.get(f"/accounts/{account.id}/posts/?state=unlinked").get_data(as_text=True)


def test_linking_from_a_thread_card_assigns_that_conversation_and_updates_its_header(
        app, client, auth, factory, sim_webhooks, connected, run_jobs):
    account, shop = connected.account, connected.ig
    auth.login(factory.staff_on(account, "agent", name="Ana"))
    dress = factory.product(account, "Red Dress", "RD-1").id
    alice = shop.add_customer("alice")
    sent = alice.shares_post(caption="cute!")
    run_jobs()
    aid = _attachment_id(app, sent.mid)
    card = client.get(f"/accounts/{account.id}/attachments/{aid}/post-link", headers={"HX-Request": "true"})
    assert "Link post to product…" in card.get_data(as_text=True)
    r = client.post(f"/accounts/{account.id}/attachments/{aid}/link", data={"product_id": dress},
                    headers={"HX-Request": "true"})
    html = r.get_data(as_text=True)
    assert "Linked to <strong>Red Dress (RD-1)</strong>" in html and "by hand" in html
    assert 'hx-swap-oob="true"' in html and "linked to it by hand by Ana just now" in html
    conv = conversation_of(app, account.id, alice.igsid)
    assert conv.product_id == dress
    r = client.post(f"/accounts/{account.id}/attachments/{aid}/unlink", headers={"HX-Request": "true"})
    assert "Link post to product…" in r.get_data(as_text=True)
    assert conversation_of(app, account.id, alice.igsid).product_id == dress  # keeps its product


def test_the_dropdown_sets_the_product_by_hand_publishes_and_explains_why(
        app, client, auth, factory, sim_webhooks, connected, run_jobs):
    account, shop = connected.account, connected.ig
    auth.login(factory.staff_on(account, "agent", name="Ana"))
    factory.product(account, "Red Dress", "RD-1", keywords="dress")
    scarf = factory.product(account, "Blue Scarf", "BS-2").id
    alice = shop.add_customer("alice")
    alice.shares_post(caption="that dress")
    run_jobs()
    conv = conversation_of(app, account.id, alice.igsid)
    url = f"/accounts/{account.id}/conversations/{conv.id}/product"
    html = client.get(url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Assigned automatically" in html and "Why this product" in html
    assert "Assigned to Red Dress (RD-1): the customer shared post" in html

    with app.app_context():
        pubsub = get_redis(app).pubsub()
        pubsub.subscribe(channel(account.id))
        pubsub.get_message(timeout=1)
    r = client.post(url, data={"product_id": scarf}, headers={"HX-Request": "true"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert '<option value="%d" selected>Blue Scarf (BS-2)</option>' % scarf in html
    assert "Chosen by hand by Ana" in html and "Set to Blue Scarf (BS-2) by hand by Ana (was Red Dress (RD-1))." in html
    published = pubsub.get_message(timeout=2)
    assert json.loads(published["data"]) == {"type": "conversation.updated", "account_id": account.id,
                                             "conversation_id": conv.id, "product": 1}
    pubsub.close()
    r = client.post(url, data={"product_id": "none"}, headers={"HX-Request": "true"})
    assert "No product chosen by hand" in r.get_data(as_text=True)
    r = client.post(url + "/automatic", headers={"HX-Request": "true"})
    assert "Ana let the inbox choose again" in r.get_data(as_text=True)
    assert client.post(url, data={"product_id": "abc"}).status_code == 400


def test_another_accounts_products_posts_conversations_and_attachments_are_404(
        app, client, auth, factory, sim_webhooks, connected, run_jobs):
    from tests.support.sim import connect_account

    mine = connected
    other = connect_account(factory, sim_webhooks, "other_shop")
    auth.login(factory.staff_on(mine.account, "admin"))
    theirs = factory.product(other.account, "Their product", "OT-1", keywords="theirs").id
    own_product = factory.product(mine.account, "My product", "MY-1").id
    bob = other.ig.add_customer("bob")
    sent = bob.shares_post(caption="theirs")
    run_jobs()
    their_conv = conversation_of(app, other.account.id, bob.igsid)
    assert their_conv.product_id == theirs
    with app.app_context():
        their_post = posts.find_post(other.account.id, sent.event["message"]["attachments"][0]["payload"]
                                     ["ig_post_media_id"])
    aid = _attachment_id(app, sent.mid)
    base = f"/accounts/{mine.account.id}"
    assert client.get(f"{base}/products/{theirs}/edit").status_code == 404
    assert client.post(f"{base}/products/{theirs}", data={"name": "x", "sku": "y"}).status_code == 404
    assert client.post(f"{base}/products/{theirs}/archive").status_code == 404
    assert client.post(f"{base}/posts/{their_post.id}/link", data={"product_id": own_product}).status_code == 404
    assert client.post(f"{base}/posts/{their_post.id}/unlink").status_code == 404
    assert client.get(f"{base}/conversations/{their_conv.id}/product").status_code == 404
    assert client.post(f"{base}/conversations/{their_conv.id}/product", data={"product_id": own_product}).status_code == 404
    assert client.get(f"{base}/attachments/{aid}/post-link").status_code == 404
    assert client.post(f"{base}/attachments/{aid}/link", data={"product_id": own_product}).status_code == 404
    # A product of the other account cannot be chosen or linked in mine either.
    alice = mine.ig.add_customer("alice")
    mine_sent = alice.shares_post(caption="theirs")  # their keyword: no match in my catalogue
    run_jobs()
    conv = conversation_of(app, mine.account.id, alice.igsid)
    assert conv.product_id is None
    assert client.post(f"{base}/conversations/{conv.id}/product", data={"product_id": theirs}).status_code == 404
    maid = _attachment_id(app, mine_sent.mid)
    assert client.post(f"{base}/attachments/{maid}/link", data={"product_id": theirs}).status_code == 404
    assert "Their product" not in client.get(f"{base}/products/").get_data(as_text=True)
    assert "theirs" not in client.get(f"{base}/posts/?state=manual").get_data(as_text=True)
    with app.app_context():  # the same media id shared in both accounts: two posts, one link
        assert posts.find_post(mine.account.id, their_post.media_id) is None


def test_captions_and_product_names_are_escaped_everywhere(
        app, client, auth, factory, sim_webhooks, connected, run_jobs):
    account, shop = connected.account, connected.ig
    auth.login(factory.staff_on(account, "admin"))
    factory.product(account, "<script>alert(1)</script>", "X-1", keywords="boom")
    alice = shop.add_customer("alice")
    alice.shares_post(caption='boom <img src=x onerror="alert(2)">')
    run_jobs()
    conv = conversation_of(app, account.id, alice.igsid)
    pages = [client.get(f"/accounts/{account.id}/products/").get_data(as_text=True),
             client.get(f"/accounts/{account.id}/posts/").get_data(as_text=True),
             client.get(f"/accounts/{account.id}/conversations/{conv.id}/product").get_data(as_text=True)]
    for html in pages:
        assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
    assert "&lt;img src=x onerror=" in pages[1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; (X-1)" in pages[2]
