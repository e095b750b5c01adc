"""The floor of a stored-first webhook: a minimal Flask app that checks the HMAC over the raw
body and does one autocommit INSERT of it. `bench/pipeline.py` runs it under gunicorn with the
inbox's settings beside the inbox, as the baseline our acknowledgement path is measured against.

Environment: FLOOR_DATABASE_URL (postgresql://…, psycopg 3), FLOOR_SECRET.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading

import psycopg
from flask import Flask, request

app = Flask(__name__)
SECRET = os.environ["FLOOR_SECRET"].encode()
_local = threading.local()  # one autocommit connection per gunicorn thread: no pool at all


def connection() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(os.environ["FLOOR_DATABASE_URL"], autocommit=True)
    return conn


@app.post("/webhooks/instagram")
def receive():
    body = request.get_data()
    given = request.headers.get("X-Hub-Signature-256", "").removeprefix("sha256=").encode()
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(expected, given):
        return "invalid signature", 403
    connection().execute("INSERT INTO floor_deliveries (body, received_at) VALUES (%s, now())", (body,))
    return "ok"
