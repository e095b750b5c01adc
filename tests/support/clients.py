"""Flask test clients: one that sends the CSRF token like the browser does, and logged-in ones."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from tests.support.factory import PASSWORD

_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
SESSION_CHANGES = {"/login", "/setup", "/logout"}


class InboxClient(FlaskClient):
    """Adds X-CSRFToken to unsafe requests unless csrf=False is given."""

    _csrf: str | None = None

    def csrf_token(self) -> str:
        if self._csrf is None:
            for path in ("/login", "/setup", "/"):
                html = self.get(path, follow_redirects=True).get_data(as_text=True)
                found = _META.search(html)
                if found:
                    self._csrf = found.group(1)
                    break
            else:
                raise AssertionError("no page gave a CSRF token")
        return self._csrf

    def open(self, *args, **kwargs):
        send_csrf = kwargs.pop("csrf", True)
        method = (kwargs.get("method") or "GET").upper()
        if send_csrf and method in UNSAFE:
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", self.csrf_token())
            kwargs["headers"] = headers
        response = super().open(*args, **kwargs)
        path = args[0] if args and isinstance(args[0], str) else kwargs.get("path", "")
        if method == "POST" and path.split("?")[0] in SESSION_CHANGES:
            self._csrf = None  # the session changed: the CSRF token did too (the next page carries it)
        return response


def logged_in_client(app, user, password: str = PASSWORD) -> InboxClient:
    """A new test client of app with user logged in (a second browser, a second tab)."""
    app.test_client_class = InboxClient
    client = app.test_client()
    response = client.post("/login", data={"email": user.email, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client
