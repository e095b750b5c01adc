"""Chromium through Playwright: the system browser when there is one, else Playwright's own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def chromium_path() -> str | None:
    explicit = os.environ.get("CHROMIUM_PATH")
    if explicit:
        return explicit
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


def launch(playwright):
    path = chromium_path()
    kwargs = {"headless": True, "args": CHROMIUM_FLAGS}
    if path:
        kwargs["executable_path"] = path
    return playwright.chromium.launch(**kwargs)


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/ for people to look at
    (and a copy in $INBOX_SHOTS when that is set)."""
    target = ARTIFACTS / "screenshots" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    extra = os.environ.get("INBOX_SHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, Path(extra) / target.name)
    return target


def login(page, base_url: str, user, password: str | None = None) -> None:
    """Log in through the form and wait until the app has let us in."""
    from tests.support.factory import PASSWORD

    page.goto(base_url + "/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(password or PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)
