"""`flask --app inbox users …`."""

from __future__ import annotations


def test_users_create_list_and_set_password(runner, app, client):
    result = runner.invoke(args=["users", "create", "ana@shop.example", "--name", "Ana", "--password", "secret password 1"])
    assert result.exit_code == 0, result.output
    assert "Created ana@shop.example" in result.output
    duplicate = runner.invoke(args=["users", "create", "ANA@shop.example", "--password", "secret password 1"])
    assert duplicate.exit_code != 0 and "already exists" in duplicate.output
    short = runner.invoke(args=["users", "create", "bo@shop.example", "--password", "short"])
    assert short.exit_code != 0 and "at least 10" in short.output

    listed = runner.invoke(args=["users", "list"])
    assert "ana@shop.example" in listed.output and "Ana" in listed.output

    result = runner.invoke(args=["users", "set-password", "ana@shop.example", "--password", "another password 2"])
    assert result.exit_code == 0, result.output
    assert client.post("/login", data={"email": "ana@shop.example", "password": "secret password 1"}).status_code == 401
    assert client.post("/login", data={"email": "ana@shop.example", "password": "another password 2"}).status_code == 302
