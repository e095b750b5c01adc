"""Site administration pages: who may use them, staff roles."""

from __future__ import annotations

from tests.support.factory import PASSWORD


def test_only_site_administrators_may_use_admin_pages(app, client, auth, factory):
    account = factory.account(username="mine")
    auth.login(factory.staff_on(account, "admin"))  # an account admin, not a site administrator
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin."):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                url = rule.rule.replace("<int:run_id>", "1")
                assert client.open(url, method=method).status_code == 403, f"{method} {url}"
    assert "/admin/accounts" not in client.get(f"/accounts/{account.id}/").get_data(as_text=True)


def test_staff_management_lists_grants_and_revokes(app, client, auth, factory):
    shop = factory.account(username="bloom.studio")
    other = factory.account(username="second.shop")
    ana = factory.staff_on(shop, "agent", name="Ana Agent")
    boss = factory.user("boss@shop.example", superadmin=True, name="Boss")
    auth.login(boss)

    page = client.get("/admin/staff").get_data(as_text=True)
    assert "Ana Agent" in page and "@bloom.studio · <strong>agent</strong>" in page

    client.post("/admin/staff/grant", data={"user_id": ana.id, "account_id": other.id, "role": "admin"})
    client.post("/admin/staff/revoke", data={"user_id": ana.id, "account_id": shop.id})
    page = client.get("/admin/staff").get_data(as_text=True)
    assert "@second.shop · <strong>admin</strong>" in page and "@bloom.studio · <strong>agent</strong>" not in page

    bad = client.post("/admin/staff/grant", data={"user_id": ana.id, "account_id": other.id, "role": "owner"},
                      follow_redirects=True)
    assert "The role must be admin or agent." in bad.get_data(as_text=True)
    assert client.post("/admin/staff/grant", data={"user_id": "x", "account_id": other.id}).status_code == 400
    missing = client.post("/admin/staff/grant", data={"user_id": 9999, "account_id": other.id, "role": "agent"},
                          follow_redirects=True)
    assert "No such staff user." in missing.get_data(as_text=True)
    # Ana now sees only the account she was given.
    client.post("/logout")
    client.post("/login", data={"email": ana.email, "password": PASSWORD})
    assert client.get(f"/accounts/{shop.id}/").status_code == 404
    assert client.get(f"/accounts/{other.id}/").status_code == 200
    assert client.post("/admin/staff/revoke", data={"user_id": ana.id, "account_id": other.id}).status_code == 403
