"""Shared by the browser checks (check_site.py, check_jupyterlab.py): Debian's Chromium under Playwright.

Playwright drives the system's /usr/bin/chromium (`apt-get install chromium chromium-driver`); its own
browser download (`playwright install`) is never used. The flags keep Chromium from reaching for the
network on its own (updates, sync, QUIC), which on a machine without internet only makes errors.
Without Chromium (or Playwright) the checks skip, except under CI (the CI environment variable set),
where they fail: a CI run whose browser install failed must not pass quietly.
"""

import os
import socket
import sys
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_CHROMIUM = "apt-get install chromium chromium-driver"
INSTALL_PLAYWRIGHT = "pip install -e '.[site]'"


def exit_if_no_chromium() -> None:
    """Exit when there is no Chromium or no Playwright to drive it: 0 with a skip message, or 1 under CI."""
    if not CHROMIUM.exists():
        skip_or_fail(f"Chromium is not installed at {CHROMIUM}", INSTALL_CHROMIUM)
    try:
        import playwright  # noqa: F401
    except ImportError:
        skip_or_fail("Playwright is not installed", INSTALL_PLAYWRIGHT)


def skip_or_fail(missing: str, install: str) -> None:
    """Outside CI print that the check is skipped and exit 0; under CI print an error and exit 1."""
    if os.environ.get("CI"):
        print(f"error: {missing} ({install}), and CI is set, so the browser checks must run", file=sys.stderr)
        sys.exit(1)
    print(f"skipped: {missing} ({install})")
    sys.exit(0)


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(playwright):
    """Start headless Chromium through Playwright's Chromium driver."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
