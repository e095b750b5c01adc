"""`flask --app inbox products|posts|conversations explain`: the catalogue, post links, why a product."""

from __future__ import annotations

from tests.support.stored import conversation_of


def test_cli_adds_lists_links_and_explains(app, runner, sim_webhooks, connected, run_jobs, factory):
    account, shop = connected.account, connected.ig
    ig = account.ig_user_id
    r = runner.invoke(args=["products", "add", "--account", ig, "--sku", "RD-1", "--name", "Red Dress",
                            "--keywords", "red dress, ,crimson"])
    assert r.exit_code == 0, r.output
    assert r.output == "Added Red Dress (RD-1) (id %s) to @%s; keywords: red dress, crimson.\n" % (
        r.output.split("(id ")[1].split(")")[0], account.username)
    r = runner.invoke(args=["products", "add", "--account", ig, "--sku", "rd-1", "--name", "Dup"])
    assert r.exit_code == 1 and "SKU rd-1 is already used by Red Dress." in r.output
    r = runner.invoke(args=["products", "list", "--account", ig])
    assert "RD-1" in r.output and "Red Dress" in r.output and "keywords: red dress, crimson" in r.output

    post = sim_webhooks.add_foreign_post(caption="summer look")
    r = runner.invoke(args=["posts", "link", post.id, "RD-1", "--account", ig])
    assert r.exit_code == 0 and f"Linked post {post.id} to Red Dress (RD-1)" in r.output
    r = runner.invoke(args=["posts", "link", post.id, "NOPE", "--account", ig])
    assert r.exit_code == 1 and "No product with SKU NOPE" in r.output
    alice = shop.add_customer("alice")
    alice.shares_post(post)
    run_jobs()
    conv = conversation_of(app, account.id, alice.igsid)
    r = runner.invoke(args=["conversations", "explain", str(conv.id)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith(f"Conversation {conv.id}: ") and f"(IGSID {alice.igsid})" in lines[0]
    assert lines[1].startswith("Product: Red Dress (RD-1). Assigned automatically (linked post)")
    assert lines[2] == "Why:"
    assert "assigned  Assigned to Red Dress (RD-1): the customer shared post" in lines[3]
    assert "linked to it by hand on" in lines[3] and f"[ig_post {post.id}]" in lines[3]
    same = runner.invoke(args=["conversations", "explain", "--customer", alice.igsid, "--account", ig])
    assert same.output == r.output
    assert runner.invoke(args=["conversations", "explain"]).exit_code == 2
    assert "No conversation 999999" in runner.invoke(args=["conversations", "explain", "999999"]).output
    r = runner.invoke(args=["posts", "unlink", post.id, "--account", ig])
    assert r.exit_code == 0 and r.output == f"Unlinked post {post.id} from Red Dress (RD-1).\n"


def test_cli_imports_a_csv_and_lists_rejected_rows(app, runner, factory, tmp_path):
    account = factory.account()
    path = tmp_path / "catalogue.csv"
    path.write_text("sku,name,keywords\nRD-1,Red Dress,dress\nRD-1,Twice,\nGL-3,,\n")
    r = runner.invoke(args=["products", "import", "--account", account.ig_user_id, str(path)])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == ["Added 1 products, rejected 2 rows.",
                                     "  line 3: SKU RD-1 already appears on line 2 of this file.",
                                     "  line 4: A product needs a name."]
