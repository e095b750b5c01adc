"""Fetch media from Instagram's CDN, and from nowhere else.

URLs come from webhook payloads, so they are attacker-influenced. A fetch:

- accepts only http(s) URLs (https only when MEDIA_REQUIRE_HTTPS, the default outside
  tests) without credentials, on the scheme's default port, to a host on
  MEDIA_ALLOWED_HOSTS (`lookaside.fbsbx.com`, `*.fbcdn.net`, `*.cdninstagram.com`);
- resolves the host itself and refuses private, loopback, link-local, reserved and
  multicast addresses, unless the host is named in MEDIA_PRIVATE_HOSTS (the simulator's
  CDN in tests and the demo; that list also lifts the default-port rule). It then
  connects to the address it checked (no second lookup a DNS rebinding could change),
  with TLS verified against the host name;
- follows at most MEDIA_MAX_REDIRECTS redirects itself, each checked like the first URL;
- has connect and read timeouts and an overall deadline, asks for no compression,
  refuses a declared length over the cap and stops reading at the cap;
- checks the content type against what the attachment may be, and for images and PDFs
  that the first bytes really are one (an HTML page labelled image/png is refused).

The answer is a `Fetched` with one of the outcomes below; nothing raises for a bad URL
or a bad answer. Bytes are written to the storage only when everything passed (the
storage's put is atomic, so a refused body leaves nothing behind).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from flask import current_app

from . import storage as storage_module

OUTCOMES = ("stored", "expired", "too_large", "refused", "failed")

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/heic", "image/heif"})
VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm", "video/ogg", "video/x-msvideo",
                         "video/3gpp"})
AUDIO_TYPES = frozenset({"audio/mp4", "audio/x-m4a", "audio/aac", "audio/mpeg", "audio/wav", "audio/x-wav",
                         "audio/ogg", "audio/webm", "video/mp4"})  # voice notes may come as mp4
FILE_TYPES = frozenset({"application/pdf"})
# What each kind of media may be.
ACCEPTED_TYPES = {
    "image": IMAGE_TYPES,
    "picture": IMAGE_TYPES,
    "video": VIDEO_TYPES,
    "audio": AUDIO_TYPES,
    "file": FILE_TYPES,
    "preview": IMAGE_TYPES | {"video/mp4"},  # shared posts and reels
}
KIND_NAMES = {"image": "an image", "picture": "a picture", "video": "a video", "audio": "audio",
              "file": "a file", "preview": "a preview"}
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Fetched:
    """What a fetch came to. `transient`: a failure worth trying again later."""

    outcome: str
    reason: str | None = None
    content_type: str | None = None
    size: int | None = None
    key: str | None = None
    status: int | None = None
    transient: bool = False


@dataclass(frozen=True)
class Policy:
    allowed_hosts: tuple[str, ...]
    private_hosts: frozenset[str] = field(default_factory=frozenset)
    require_https: bool = True
    max_bytes: int = 25 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 120.0
    max_redirects: int = 3

    @classmethod
    def from_config(cls, config=None, **overrides) -> Policy:
        cfg = config or current_app.config
        values = dict(
            allowed_hosts=tuple(h.lower() for h in cfg.get("MEDIA_ALLOWED_HOSTS") or ()),
            private_hosts=frozenset(h.lower() for h in cfg.get("MEDIA_PRIVATE_HOSTS") or ()),
            require_https=bool(cfg.get("MEDIA_REQUIRE_HTTPS", True)),
            max_bytes=int(cfg.get("MEDIA_MAX_BYTES") or 25 * 1024 * 1024),
            connect_timeout=float(cfg.get("MEDIA_CONNECT_TIMEOUT_SECONDS", 5.0)),
            read_timeout=float(cfg.get("MEDIA_READ_TIMEOUT_SECONDS", 15.0)),
            total_timeout=float(cfg.get("MEDIA_FETCH_DEADLINE_SECONDS", 120.0)),
            max_redirects=int(cfg.get("MEDIA_MAX_REDIRECTS", 3)),
        )
        values.update(overrides)
        return cls(**values)


class _Refused(Exception):
    pass


class _Failed(Exception):
    def __init__(self, reason: str, transient: bool = True) -> None:
        super().__init__(reason)
        self.transient = transient


class _TooLarge(Exception):
    pass


# --- Checks that need no network ---------------------------------------------------------

def host_allowed(host: str, patterns) -> bool:
    """Exact host, or a suffix match for a pattern with a leading "*."."""
    host = (host or "").lower()
    if not host:
        return False
    for pattern in patterns:
        pattern = pattern.lower()
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1):
            return True
    return False


def check_url(url: str, policy: Policy) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL the policy lets us fetch; raises _Refused with the reason."""
    if not isinstance(url, str) or not url:
        raise _Refused("no URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _Refused("not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise _Refused(f"{scheme or 'this'} URLs are never fetched")
    if scheme == "http" and policy.require_https:
        raise _Refused("only https links are fetched")
    if parts.username is not None or parts.password is not None:
        raise _Refused("links with credentials are never fetched")
    host = (parts.hostname or "").lower()
    if not host:
        raise _Refused("the link has no host")
    if not host_allowed(host, policy.allowed_hosts):
        raise _Refused(f"{host} is not an Instagram media host")
    default = 443 if scheme == "https" else 80
    port = port or default
    if port != default and host not in policy.private_hosts:
        raise _Refused(f"port {port} is not fetched")
    return scheme, host, port


def _address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int, policy: Policy) -> str:
    """The address to connect to; every address the name has must be public (unless trusted)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise _Failed(f"could not resolve {host}: {exc}") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise _Failed(f"{host} has no address")
    if host not in policy.private_hosts:
        for address in addresses:
            try:
                public = _address_is_public(address)
            except ValueError:
                public = False
            if not public:
                raise _Refused(f"{host} resolves to a private address ({address})")
    return addresses[0]


def sniff(head: bytes) -> str | None:
    """The media family the first bytes announce: image/png, image/jpeg, …, application/pdf, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"hevc"):
            return "image/heic"
        return "video/mp4"  # the ISO family: mp4, m4a, mov
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def content_matches(content_type: str, head: bytes) -> bool:
    """Images and PDFs must be what they say; other types are served as declared with nosniff."""
    if content_type in IMAGE_TYPES:
        found = sniff(head)
        return found in IMAGE_TYPES and (found == content_type or {found, content_type} <= {"image/heic", "image/heif"})
    if content_type in FILE_TYPES:
        return sniff(head) == "application/pdf"
    return True


# --- The fetch ---------------------------------------------------------------------------------

def fetch(url: str, kind: str, *, area: str = "att", store=None, policy: Policy | None = None) -> Fetched:
    """Fetch url as media of this kind into the store; never raises for the URL or the answer."""
    policy = policy or Policy.from_config()
    store = store or storage_module.get_storage()
    accepted = ACCEPTED_TYPES.get(kind)
    if accepted is None:
        return Fetched("refused", f"{kind} media is never fetched")
    deadline = time.monotonic() + policy.total_timeout
    try:
        return _fetch(url, kind, accepted, area, store, policy, deadline)
    except _Refused as exc:
        return Fetched("refused", str(exc))
    except _TooLarge as exc:
        return Fetched("too_large", str(exc))
    except _Failed as exc:
        return Fetched("failed", str(exc), transient=exc.transient)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return Fetched("failed", _network_reason(exc), transient=True)


def _network_reason(exc: Exception) -> str:
    if isinstance(exc, (urllib3.exceptions.TimeoutError, socket.timeout, TimeoutError)):
        return "Instagram's server did not answer in time"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "the TLS certificate could not be verified"
    return f"network error: {type(exc).__name__}"


def _fetch(url, kind, accepted, area, store, policy: Policy, deadline: float) -> Fetched:
    current = url
    for hop in range(policy.max_redirects + 1):
        try:
            scheme, host, port = check_url(current, policy)
            address = resolve(host, port, policy)
        except _Refused as exc:
            if hop:
                raise _Refused(f"redirected to a link that is not fetched: {exc}") from None
            raise
        response, pool = _request(current, scheme, host, port, address, policy)
        try:
            status = response.status
            if status in _REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise _Failed(f"HTTP {status} without a Location", transient=False)
                current = urljoin(current, location)
                continue
            if status != 200:
                return _error_status(status, response)
            return _store(response, kind, accepted, area, store, policy, deadline)
        finally:
            response.release_conn()
            pool.close()
    raise _Refused(f"more than {policy.max_redirects} redirects")


def _request(url: str, scheme: str, host: str, port: int, address: str, policy: Policy):
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timeout = urllib3.Timeout(connect=policy.connect_timeout, read=policy.read_timeout)
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1,
                                           server_hostname=host, assert_hostname=host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
    default = 443 if scheme == "https" else 80
    host_header = host if port == default else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if port == default else f"[{host}]:{port}"
    headers = {"Host": host_header, "User-Agent": "inbox-media/1", "Accept": "*/*", "Accept-Encoding": "identity"}
    try:
        response = pool.urlopen("GET", target, headers=headers, redirect=False, retries=False,
                                preload_content=False, decode_content=False, assert_same_host=False)
    except BaseException:
        pool.close()
        raise
    return response, pool


def _error_status(status: int, response) -> Fetched:
    body = b""
    if status in (403, 404, 410):
        try:
            body = response.read(1024)
        except (urllib3.exceptions.HTTPError, OSError):
            body = b""
    if status == 403 and b"URL signature expired" in body:
        return Fetched("expired", "Instagram's link has expired (URL signature expired)", status=status)
    if status in (404, 410):
        return Fetched("expired", f"Instagram no longer serves this media (HTTP {status})", status=status)
    if status == 429 or status >= 500:
        return Fetched("failed", f"Instagram's server answered HTTP {status}", status=status, transient=True)
    return Fetched("failed", f"Instagram's server refused the download (HTTP {status})", status=status)


def _store(response, kind, accepted, area, store, policy: Policy, deadline: float) -> Fetched:
    content_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type not in accepted:
        raise _Refused(f"{content_type or 'no content type'} is not accepted for {KIND_NAMES.get(kind, kind)}")
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise _TooLarge(f"{_mb(int(declared))} is over the {_mb(policy.max_bytes)} limit")
    if response.headers.get("Content-Encoding", "identity").lower() not in ("identity", ""):
        raise _Refused("compressed bodies are not accepted")

    chunks = _chunks(response, policy, deadline)
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= 32:
            break
    if not head:
        raise _Failed("the server sent no bytes", transient=True)
    if not content_matches(content_type, head):
        raise _Refused(f"the bytes are not {content_type}")

    def body() -> Iterator[bytes]:
        yield head
        yield from chunks

    key = storage_module.new_key(area, content_type)
    size = store.put(key, body())
    return Fetched("stored", content_type=content_type, size=size, key=key, status=200)


def _chunks(response, policy: Policy, deadline: float) -> Iterator[bytes]:
    total = 0
    for chunk in response.stream(64 * 1024, decode_content=False):
        total += len(chunk)
        if total > policy.max_bytes:
            raise _TooLarge(f"more than the {_mb(policy.max_bytes)} limit")
        if time.monotonic() > deadline:
            raise _Failed("the download took too long", transient=True)
        yield chunk


def _mb(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    return f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} bytes"
