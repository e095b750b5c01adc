"""Real HTTP servers in threads: the inbox, and (later) the Meta simulator."""

from __future__ import annotations

import socket
import threading

from werkzeug.serving import make_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadedServer:
    """A threaded werkzeug server (websockets work) serving a WSGI app on 127.0.0.1."""

    def __init__(self, wsgi_app, port: int | None = None):
        self.port = port or free_port()
        self.server = make_server("127.0.0.1", self.port, wsgi_app, threaded=True)
        self.server.daemon_threads = True
        # A short poll interval: stop() waits for the loop to notice, up to one interval.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
