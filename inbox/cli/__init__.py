"""Command line: the `inbox` console script and the `flask --app inbox` command groups.

    inbox run | demo | worker       the processes (below)
    flask --app inbox <group> …     one module per group: users, accounts, webhooks, identities,
                                    sync, media, products, posts, conversations, customers, doctor

`inbox` also answers every group (`inbox users list`), as `flask --app inbox` does.
"""

from __future__ import annotations

import os
import socket
import threading

import click
from flask import Flask
from flask.cli import FlaskGroup

from .. import create_app
from ..demo import run_demo
from ..runner import run
from ..worker import run_worker
from . import (accounts, automations, comments, conversations, customers, doctor, identities, insights, labels, media,
               posts, products, replies, staff, sync, users, webhooks)


def init_app(app: Flask) -> None:
    """Register the command groups on the app (`flask --app inbox …`)."""
    for command in (users.group, accounts.group, webhooks.group, identities.group, sync.command, media.group,
                    products.group, posts.group, conversations.group, comments.group, automations.group,
                    customers.group, doctor.command, staff.group, labels.group, replies.group, insights.group):
        app.cli.add_command(command)


@click.group(cls=FlaskGroup, create_app=create_app, add_default_commands=False,
             help="The Instagram staff inbox.")
def main() -> None:
    pass


# run, demo and worker build their own app (in each process they start): no app context here.


@main.command("run", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=64, show_default=True, type=int, help="web threads (one per open websocket)")
def run_command(host: str, port: int, threads: int) -> None:
    """Apply migrations, then run the web server and one worker until Ctrl-C."""
    raise SystemExit(run(host=host, port=port, threads=threads))


@main.command("demo", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--sim-port", default=8765, show_default=True, type=int, help="the Meta simulator's port (0: any)")
@click.option("--pace", default=8.0, show_default=True, type=float, help="seconds between customer actions")
@click.option("--web-processes", default=2, show_default=True, type=int)
@click.option("--keep/--reset", default=False, show_default=True,
              help="keep the demo database of the last run instead of starting fresh")
@click.option("--instance", type=click.Path(file_okay=False), default=None,
              help="instance directory of the demo (default: instance/demo)")
def demo_command(host: str, port: int, sim_port: int, pace: float, web_processes: int, keep: bool,
                 instance: str | None) -> None:
    """Run the inbox against the Meta simulator with seeded data and customers who keep writing."""
    raise SystemExit(run_demo(host=host, port=port, sim_port=sim_port, pace=pace,
                              web_processes=web_processes, reset=not keep, instance=instance))


def _worker_name() -> str:
    return f"{socket.gethostname()}.{os.getpid()}.{threading.get_ident() % 10000}"


@main.command("worker", with_appcontext=False)
@click.option("--burst", is_flag=True, help="run what is queued, then exit")
@click.option("--name", default=_worker_name, show_default="HOST.PID.THREAD",
              help="the worker's name (unique among the running workers)")
def worker_command(burst: bool, name: str) -> None:
    """Run an RQ worker (with the scheduler) on the app's queues until stopped."""
    raise SystemExit(run_worker(create_app(), burst=burst, name=name))
