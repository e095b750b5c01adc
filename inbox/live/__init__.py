"""Live updates: writers publish small events with ids; each web process renders them and fans out.

- `publish`: event types, channels, publish and publish-after-commit (what services import).
- `hub`: the per-process listener thread, the open sockets and their writer (web processes only).
- `frames`: the HTML each event type pushes, rendered once per event and process.

This package imports neither `hub` nor `frames` here, so a service importing `publish` pulls in
no web code.
"""
