"""The deployment files agree with the code: the image's commands and gunicorn's settings load."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_images_gunicorn_command_loads_its_settings_and_the_app(tmp_path, log_format):
    dockerfile = (ROOT / "Dockerfile").read_text()
    command = re.search(r'^CMD \["gunicorn", (.*)\]$', dockerfile, re.M).group(1)
    args = [a.strip().strip('"') for a in command.split(",")]
    env = {**os.environ, "LOG_FORMAT": log_format, "INBOX_INSTANCE_PATH": str(tmp_path),
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    done = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_the_worker_and_migrations_with_the_images_commands():
    compose = (ROOT / "compose.yaml").read_text()
    assert 'command: ["inbox", "worker"]' in compose
    assert 'command: ["flask", "--app", "inbox", "db", "upgrade"]' in compose
    for service in ("postgres:", "redis:", "web:", "worker:", "proxy:"):
        assert f"\n  {service}" in compose
    assert "reverse_proxy web:8000" in (ROOT / "deploy" / "Caddyfile").read_text()
