"""A fake CDN: media bytes behind signed links that expire like Instagram's (`oe`, then 403).

Attachment links look like lookaside.fbsbx.com's (`/ig_messaging_cdn/?asset_id=…&signature=…`),
profile pictures and media like scontent's (`/v/t51.2885-19/<id>.jpg?oe=<hex expiry>&oh=…`).
Each link carries its own expiry; once it has passed (on the simulator's clock) the CDN
answers 403 with the plain text `URL signature expired`, as Instagram's does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, request

MIME = {"image": "image/png", "video": "video/mp4", "audio": "audio/mp4", "file": "application/pdf"}


@dataclass(frozen=True)
class Asset:
    id: str
    kind: str
    mime: str
    content: bytes
    name: str


class Cdn:
    """The assets and the links to them."""

    def __init__(self, clock, secret: str) -> None:
        self.clock = clock
        self._key = secret.encode()
        self._assets: dict[str, Asset] = {}
        self._lock = threading.Lock()
        self._seq = 0
        self.base_url = "http://sim.invalid"  # set when the simulator is served
        self.fetches: deque[tuple[str, int]] = deque(maxlen=10_000)  # (asset id, status) of each fetch

    def add(self, kind: str = "image", *, content: bytes | None = None, mime: str | None = None,
            name: str | None = None) -> str:
        """Store bytes (generated for the kind when not given); returns the asset id."""
        with self._lock:
            self._seq += 1
            asset_id = str(10_000_000 + self._seq)
        if content is None:
            content = _sample(kind, int(asset_id))
        ext = {"image": "png", "video": "mp4", "audio": "m4a", "file": "pdf"}.get(kind, "bin")
        asset = Asset(asset_id, kind, mime or MIME.get(kind, "application/octet-stream"), content,
                      name or f"{kind}-{asset_id}.{ext}")
        with self._lock:
            self._assets[asset_id] = asset
        return asset_id

    def get(self, asset_id: str) -> Asset | None:
        with self._lock:
            return self._assets.get(asset_id)

    def _sign(self, asset_id: str, expires: int) -> str:
        return hmac.new(self._key, f"{asset_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def attachment_url(self, asset_id: str, ttl: float) -> str:
        """A lookaside-style link, valid for ttl seconds from now."""
        expires = int(self.clock.now() + ttl)
        token = base64.urlsafe_b64encode(str(expires).encode()).decode().rstrip("=")
        query = urlencode({"asset_id": asset_id, "signature": f"{token}.{self._sign(asset_id, expires)}"})
        return f"{self.base_url}/ig_messaging_cdn/?{query}"

    def picture_url(self, asset_id: str, ttl: float) -> str:
        """An scontent-style link with its `oe` hex expiry, valid for ttl seconds from now."""
        expires = int(self.clock.now() + ttl)
        query = urlencode({"_nc_sid": "7d201b", "oh": "00_" + self._sign(asset_id, expires), "oe": f"{expires:X}"})
        return f"{self.base_url}/v/t51.2885-19/{asset_id}.jpg?{query}"

    def serve(self, asset_id: str | None, expires: int | None, signature: str | None) -> Response:
        asset = self.get(asset_id) if asset_id else None
        if asset is None or expires is None or not signature:
            status, response = 404, Response("Not Found", 404, mimetype="text/plain")
        elif not hmac.compare_digest(signature, self._sign(asset_id, expires)):
            status, response = 403, Response("URL signature mismatch", 403, mimetype="text/plain")
        elif self.clock.now() > expires:
            status, response = 403, Response("URL signature expired", 403, mimetype="text/plain")
        else:
            status, response = 200, Response(asset.content, 200, mimetype=asset.mime)
            response.headers["Cache-Control"] = "max-age=1209600, no-transform"
        with self._lock:
            self.fetches.append((asset_id or "", status))
        return response


bp = Blueprint("cdn", __name__)


def _cdn() -> Cdn:
    sim = current_app.extensions["sim"]
    if sim.settings.faults.cdn_latency:
        time.sleep(sim.settings.faults.cdn_latency)  # in the request's own thread, like the Graph latency
    return sim.cdn


@bp.get("/ig_messaging_cdn/")
def lookaside():
    """An attachment link."""
    token, _, sig = (request.args.get("signature") or "").partition(".")
    try:
        expires = int(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        expires = None
    return _cdn().serve(request.args.get("asset_id"), expires, sig)


@bp.get("/v/<path:prefix>/<asset_file>")
def scontent(prefix: str, asset_file: str):
    """A profile picture or media link."""
    oh = request.args.get("oh", "")
    try:
        expires = int(request.args.get("oe", ""), 16)
    except ValueError:
        expires = None
    return _cdn().serve(asset_file.rsplit(".", 1)[0], expires, oh.removeprefix("00_"))


# --- Sample bytes -------------------------------------------------------------------

def _sample(kind: str, n: int) -> bytes:
    if kind == "image":
        return png(48, 48, ((n * 67) % 256, (n * 131) % 256, (n * 199) % 256))
    if kind == "file":
        return b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    # A bare ftyp box: enough for a type sniffer, not for a player.
    brand = b"M4A " if kind == "audio" else b"isom"
    return struct.pack(">I4s4sI", 16, b"ftyp", brand, 0) + bytes(n % 64)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))
