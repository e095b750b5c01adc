"""safe_fetch against a real HTTP server that misbehaves: only Instagram's CDN, only media, only so much."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask import Flask, Response, redirect, request

from inbox.services import safe_fetch
from inbox.services.storage import get_storage
from inbox.sim.cdn import png
from tests.support.servers import ThreadedServer

PNG = png(8, 8, (10, 200, 30))
LIMIT = 64 * 1024


def _bad_cdn() -> Flask:
    cdn = Flask("bad_cdn")

    @cdn.get("/ok.png")
    def ok():
        return Response(PNG, mimetype="image/png")

    @cdn.get("/doc.pdf")
    def pdf():
        return Response(b"%PDF-1.4\n%%EOF\n", mimetype="application/pdf")

    @cdn.get("/streamed-big")
    def streamed_big():
        def body():
            yield PNG
            for _ in range(40):
                yield b"\0" * 4096
        return Response(body(), mimetype="image/png")  # no Content-Length: only the count stops it

    @cdn.get("/declared-big")
    def declared_big():
        response = Response(PNG, mimetype="image/png")
        response.headers["Content-Length"] = str(LIMIT * 10)
        response.direct_passthrough = True
        response.automatically_set_content_length = False
        return response

    @cdn.get("/page")
    def page():
        return Response("<html><script>alert(1)</script></html>", mimetype="text/html")

    @cdn.get("/html-as.png")
    def html_as_png():
        return Response("<html><script>alert(1)</script></html>", mimetype="image/png")

    @cdn.get("/drawing.svg")
    def svg():
        return Response('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
                        mimetype="image/svg+xml")

    @cdn.get("/expired")
    def expired():
        return Response("URL signature expired", 403, mimetype="text/plain")

    @cdn.get("/mismatch")
    def mismatch():
        return Response("URL signature mismatch", 403, mimetype="text/plain")

    @cdn.get("/gone")
    def gone():
        return Response("", 410)

    @cdn.get("/broken")
    def broken():
        return Response("oops", 502)

    @cdn.get("/slow")
    def slow():
        time.sleep(1.5)  # a CDN slower than the fetcher's read timeout (MEDIA_READ_TIMEOUT_SECONDS, 0.5 below)
        return Response(PNG, mimetype="image/png")

    @cdn.get("/to-ok")
    def to_ok():
        return redirect("/ok.png")

    @cdn.get("/to-private")
    def to_private():
        return redirect("http://localhost/ok.png")  # an allowed name that resolves to loopback

    @cdn.get("/to-metadata")
    def to_metadata():
        return redirect("http://169.254.169.254/latest/meta-data/")

    @cdn.get("/to-elsewhere")
    def to_elsewhere():
        return redirect("https://evil.example/x.png")

    @cdn.get("/to-file")
    def to_file():
        return redirect("file:///etc/passwd")

    @cdn.get("/loop")
    def loop():
        return redirect(f"/loop?n={int(request.args.get('n', 0)) + 1}")

    return cdn


@pytest.fixture
def cdn():
    server = ThreadedServer(_bad_cdn()).start()
    yield server
    server.stop()


@pytest.fixture
def app_config(app_config):
    # The test server is on 127.0.0.1 (trusted like the simulator's CDN); "localhost" and
    # "169.254.169.254" are allowed names that are NOT trusted to be private.
    app_config.update(MEDIA_ALLOWED_HOSTS=["lookaside.fbsbx.com", "*.fbcdn.net", "*.cdninstagram.com", "127.0.0.1",
                                           "localhost", "169.254.169.254"],
                      MEDIA_PRIVATE_HOSTS=["127.0.0.1"], MEDIA_MAX_BYTES=LIMIT, MEDIA_READ_TIMEOUT_SECONDS=0.5)
    return app_config


def _fetch(app, url, kind="image", **policy):
    with app.app_context():
        return safe_fetch.fetch(url, kind, policy=safe_fetch.Policy.from_config(**policy) if policy else None)


def _stored_files(app) -> list[Path]:
    root = Path(app.config["MEDIA_ROOT"])
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_an_image_from_an_allowed_host_is_stored_byte_for_byte(app, cdn):
    result = _fetch(app, f"{cdn.url}/ok.png")
    assert (result.outcome, result.content_type, result.size) == ("stored", "image/png", len(PNG))
    with app.app_context():
        with get_storage().open(result.key) as f:
            assert f.read() == PNG
    assert result.key.startswith("att/") and result.key.endswith(".png")


def test_a_redirect_within_the_allowed_hosts_is_followed(app, cdn):
    assert _fetch(app, f"{cdn.url}/to-ok").outcome == "stored"


@pytest.mark.parametrize("url, why", [
    ("file:///etc/passwd", "file URLs are never fetched"),
    ("ftp://lookaside.fbsbx.com/x.png", "ftp URLs are never fetched"),
    ("javascript:alert(1)", "javascript URLs are never fetched"),
    ("https://evil.example/x.png", "evil.example is not an Instagram media host"),
    ("https://fbcdn.net.evil.example/x.png", "is not an Instagram media host"),
    ("https://evilfbcdn.net/x.png", "is not an Instagram media host"),
    ("https://user:pw@lookaside.fbsbx.com/x.png", "credentials"),
    ("https://lookaside.fbsbx.com:8443/x.png", "port 8443 is not fetched"),
    ("http://localhost/ok.png", "resolves to a private address"),
    ("http://169.254.169.254/latest/meta-data/", "resolves to a private address"),
    ("not a url", "URLs are never fetched"),
])
def test_links_that_are_not_instagram_media_are_refused_before_any_connection(app, url, why):
    result = _fetch(app, url)
    assert result.outcome == "refused" and why in result.reason
    assert _stored_files(app) == []


def test_loopback_is_refused_unless_the_host_is_trusted_for_tests(app, cdn):
    trusted = _fetch(app, f"{cdn.url}/ok.png")
    assert trusted.outcome == "stored"
    untrusted = _fetch(app, "http://127.0.0.1/ok.png", private_hosts=frozenset())
    assert untrusted.outcome == "refused" and "private address (127.0.0.1)" in untrusted.reason
    other_port = _fetch(app, f"{cdn.url}/ok.png", private_hosts=frozenset())
    assert other_port.outcome == "refused" and "is not fetched" in other_port.reason


def test_http_is_refused_where_https_is_required(app, cdn):
    result = _fetch(app, f"{cdn.url}/ok.png", require_https=True)
    assert result.outcome == "refused" and result.reason == "only https links are fetched"


@pytest.mark.parametrize("path, why", [
    ("/to-private", "redirected to a link that is not fetched: localhost resolves to a private address"),
    ("/to-metadata", "169.254.169.254 resolves to a private address"),
    ("/to-elsewhere", "redirected to a link that is not fetched: evil.example is not an Instagram media host"),
    ("/to-file", "redirected to a link that is not fetched: file URLs are never fetched"),
    ("/loop", "more than 3 redirects"),
])
def test_redirects_are_checked_like_the_first_link(app, cdn, path, why):
    result = _fetch(app, f"{cdn.url}{path}")
    assert result.outcome == "refused" and why in result.reason
    assert _stored_files(app) == []


def test_an_oversized_body_is_cut_off_and_nothing_is_left_behind(app, cdn):
    streamed = _fetch(app, f"{cdn.url}/streamed-big")
    assert streamed.outcome == "too_large" and streamed.reason == "more than the 64 KB limit"
    declared = _fetch(app, f"{cdn.url}/declared-big")  # refused on its Content-Length, before the body
    assert declared.outcome == "too_large" and declared.reason == "640 KB is over the 64 KB limit"
    assert _stored_files(app) == []  # no temporary file either


@pytest.mark.parametrize("path, kind, why", [
    ("/page", "image", "text/html is not accepted for an image"),
    ("/html-as.png", "image", "the bytes are not image/png"),
    ("/drawing.svg", "image", "image/svg+xml is not accepted for an image"),
    ("/ok.png", "file", "image/png is not accepted for a file"),
    ("/doc.pdf", "video", "application/pdf is not accepted for a video"),
])
def test_the_content_type_must_fit_the_attachment(app, cdn, path, kind, why):
    result = _fetch(app, f"{cdn.url}{path}", kind)
    assert result.outcome == "refused" and result.reason == why
    assert _stored_files(app) == []


def test_a_pdf_is_a_file(app, cdn):
    assert _fetch(app, f"{cdn.url}/doc.pdf", "file").outcome == "stored"


@pytest.mark.parametrize("path, outcome, transient", [
    ("/expired", "expired", False),
    ("/gone", "expired", False),
    ("/mismatch", "failed", False),
    ("/broken", "failed", True),
    ("/slow", "failed", True),  # read timeout 0.5 s
])
def test_answers_other_than_the_media_are_typed(app, cdn, path, outcome, transient):
    result = _fetch(app, f"{cdn.url}{path}")
    assert (result.outcome, result.transient) == (outcome, transient)
    assert result.reason
