"""A real database trigger that refuses messages with one text: how tests make one event fail."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import text

from inbox.extensions import db
from tests.support.databases import is_postgres


def refuse_text(app, refused: str) -> None:
    """From now on the database refuses to insert a message whose text is `refused`."""
    lift(app)
    literal = refused.replace("'", "''")
    with app.app_context():
        if is_postgres():
            db.session.execute(text(
                "CREATE FUNCTION inbox_test_refuse() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.text = '{literal}' THEN RAISE EXCEPTION 'refused by the database'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"))
            db.session.execute(text("CREATE TRIGGER inbox_test_refuse BEFORE INSERT ON messages FOR EACH ROW "
                                    "EXECUTE FUNCTION inbox_test_refuse()"))
        else:
            db.session.execute(text(f"CREATE TRIGGER inbox_test_refuse BEFORE INSERT ON messages "
                                    f"WHEN NEW.text = '{literal}' BEGIN SELECT RAISE(FAIL, 'refused by the database'); END"))
        db.session.commit()


def lift(app) -> None:
    """The database accepts every message again."""
    with app.app_context():
        if is_postgres():
            db.session.execute(text("DROP TRIGGER IF EXISTS inbox_test_refuse ON messages"))
            db.session.execute(text("DROP FUNCTION IF EXISTS inbox_test_refuse()"))
        else:
            db.session.execute(text("DROP TRIGGER IF EXISTS inbox_test_refuse"))
        db.session.commit()


@contextmanager
def refusing(app, refused: str):
    refuse_text(app, refused)
    try:
        yield lambda: lift(app)
    finally:
        lift(app)
