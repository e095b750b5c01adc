"""Where kept media bytes live: a small storage interface, local files by default.

Keys are made here (`new_key`), never from user input: `<area>/<yyyy>/<mm>/<32 hex>.<ext>`
where area is `att` (attachments), `pic` (profile pictures) or `out` (staff uploads).
Every operation checks the key's shape first, so a key can never leave the store.

`Storage` is what services use: put (atomic, from an iterable of byte chunks), open,
delete, exists, size, keys (for the sweep), and `local_path` (None for stores that are
not on this disk; the serving route then streams `open`). An S3-compatible store only has
to implement the same methods and be chosen by `MEDIA_STORAGE`.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Protocol

from flask import current_app

AREAS = ("att", "pic", "out")
_KEY = re.compile(r"^(att|pic|out)/\d{4}/\d{2}/[0-9a-f]{32}\.[a-z0-9]{1,5}$")
_EXTENSIONS = {
    "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp", "image/heic": "heic",
    "image/heif": "heif", "video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm", "video/ogg": "ogv",
    "video/x-msvideo": "avi", "video/3gpp": "3gp", "audio/mp4": "m4a", "audio/x-m4a": "m4a", "audio/aac": "aac",
    "audio/mpeg": "mp3", "audio/wav": "wav", "audio/x-wav": "wav", "audio/ogg": "ogg", "audio/webm": "weba",
    "application/pdf": "pdf",
}


class StorageError(RuntimeError):
    """A key of the wrong shape, or the store could not do what was asked."""


def new_key(area: str, content_type: str | None, now: datetime | None = None) -> str:
    """A fresh random key for bytes of this content type."""
    if area not in AREAS:
        raise StorageError(f"unknown storage area {area!r}")
    now = now or datetime.now(timezone.utc)
    ext = _EXTENSIONS.get((content_type or "").lower(), "bin")
    return f"{area}/{now:%Y}/{now:%m}/{secrets.token_hex(16)}.{ext}"


def check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise StorageError("not a storage key")
    return key


class Storage(Protocol):
    def put(self, key: str, chunks: Iterable[bytes]) -> int: ...
    def open(self, key: str) -> BinaryIO: ...
    def delete(self, key: str) -> bool: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...
    def keys(self, older_than: float | None = None) -> Iterator[str]: ...
    def local_path(self, key: str) -> str | None: ...


class LocalStorage:
    """Files under a root directory; writes go to a temporary file renamed into place."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Write every chunk, then rename into place; nothing is left behind if a chunk raises."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o640)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return size

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise StorageError("no such stored file") from exc

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def keys(self, older_than: float | None = None) -> Iterator[str]:
        """Every stored key (temporary files are not keys); only those modified before older_than (epoch)."""
        for area in AREAS:
            base = self.root / area
            if not base.is_dir():
                continue
            for path in base.rglob("*"):
                key = path.relative_to(self.root).as_posix()
                if not _KEY.match(key):
                    continue
                if older_than is not None:
                    try:
                        if path.stat().st_mtime >= older_than:
                            continue
                    except FileNotFoundError:
                        continue
                yield key

    def local_path(self, key: str) -> str | None:
        return str(self._path(key))


def get_storage(app=None) -> Storage:
    """The app's store (MEDIA_STORAGE: "local", the default, under MEDIA_ROOT)."""
    app = app or current_app
    store = app.extensions.get("media_storage")
    if store is None:
        kind = app.config.get("MEDIA_STORAGE", "local")
        if kind != "local":
            raise StorageError(f"unknown MEDIA_STORAGE {kind!r}")
        store = app.extensions["media_storage"] = LocalStorage(app.config["MEDIA_ROOT"])
    return store
