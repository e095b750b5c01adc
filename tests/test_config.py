"""The configuration layers and the start-up rules."""

from __future__ import annotations

import json

import pytest

from inbox import create_app
from inbox.config import ConfigError, normalize_database_url


def test_production_refuses_to_start_without_its_secrets(monkeypatch, tmp_path):
    for name in ("SECRET_KEY", "TOKEN_ENCRYPTION_KEY", "META_APP_SECRET", "META_VERIFY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as excinfo:
        create_app({"INBOX_ENV": "production", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    message = str(excinfo.value)
    assert "SECRET_KEY" in message and "TOKEN_ENCRYPTION_KEY" in message and "META_APP_SECRET" in message


def test_production_sets_secure_cookies(tmp_path):
    app = create_app({"INBOX_ENV": "production", "SECRET_KEY": "s", "TOKEN_ENCRYPTION_KEY": "k",
                      "META_APP_SECRET": "a", "META_VERIFY_TOKEN": "v", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]


def test_development_generates_secrets_once_and_keeps_them(monkeypatch, tmp_path):
    for name in ("SECRET_KEY", "TOKEN_ENCRYPTION_KEY", "META_APP_SECRET", "META_VERIFY_TOKEN", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INBOX_INSTANCE_PATH", str(tmp_path / "instance"))
    first = create_app({"INBOX_ENV": "development"})
    second = create_app({"INBOX_ENV": "development"})
    assert first.config["SECRET_KEY"] and first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    stored = tmp_path / "instance" / "secrets.json"
    assert json.loads(stored.read_text())["TOKEN_ENCRYPTION_KEY"] == first.config["TOKEN_ENCRYPTION_KEY"]
    assert oct(stored.stat().st_mode & 0o777) == "0o600"
    # No DATABASE_URL: a SQLite file under instance/.
    assert first.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'instance' / 'inbox.sqlite3'}"


def test_layers_apply_in_order(monkeypatch, tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text('GRAPH_API_VERSION = "v1.0"\nGRAPH_API_BASE = "http://from-file"\nMEDIA_ROOT = "/from/file"\n')
    monkeypatch.setenv("INBOX_INSTANCE_PATH", str(instance))
    monkeypatch.setenv("GRAPH_API_BASE", "http://from-env")
    monkeypatch.setenv("MEDIA_ROOT", "/from/env")
    app = create_app({"MEDIA_ROOT": "/from/test", "SECRET_KEY": "x", "TOKEN_ENCRYPTION_KEY": "k",
                      "META_APP_SECRET": "a", "META_VERIFY_TOKEN": "v", "DATABASE_URL": "sqlite://"})
    assert app.config["GRAPH_API_VERSION"] == "v1.0"  # file beats default
    assert app.config["GRAPH_API_BASE"] == "http://from-env"  # environment beats file
    assert app.config["MEDIA_ROOT"] == "/from/test"  # test mapping beats environment


def test_postgres_urls_use_psycopg3():
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("sqlite:///x") == "sqlite:///x"
