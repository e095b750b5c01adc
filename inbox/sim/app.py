"""The simulator's Flask app: Graph API, fake CDN and control API on one host."""

from __future__ import annotations

import re

from flask import Flask, jsonify, request

from . import api, cdn, graph

_VERSION = re.compile(r"^/(v\d+(?:\.\d+)?)(?=/|$)")


class _StripVersion:
    """Serve /v24.0/me and /me alike (Meta accepts any version; so do we), remembering it for links."""

    def __init__(self, wsgi_app) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        match = _VERSION.match(environ.get("PATH_INFO", ""))
        if match:
            environ["sim.graph_version"] = match.group(1)
            environ["PATH_INFO"] = environ["PATH_INFO"][match.end():] or "/"
        return self.wsgi_app(environ, start_response)


def create_sim_app(sim) -> Flask:
    app = Flask("inbox.sim")
    app.extensions["sim"] = sim
    app.json.sort_keys = False  # keep Meta's key order
    app.register_blueprint(api.bp)
    app.register_blueprint(cdn.bp)
    app.register_blueprint(graph.bp)
    app.wsgi_app = _StripVersion(app.wsgi_app)

    @app.errorhandler(404)
    @app.errorhandler(405)
    def unknown_path(exc):
        body = {"error": {"message": f"Unknown path components: {request.path}", "type": "OAuthException",
                          "code": 2500, "fbtrace_id": sim.world.fbtrace_id()}}
        return jsonify(body), 400

    return app
