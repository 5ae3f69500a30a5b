"""Shared by the browser checks (check_site.py, check_jupyterlab.py): Debian's Chromium under Playwright.

Playwright drives the system's /usr/bin/chromium (`apt-get install chromium chromium-driver`); its own
browser download (`playwright install`) is never used. The flags keep Chromium from reaching for the
network on its own (updates, sync, QUIC), which on a machine without internet only makes errors.
"""

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
SKIP_MESSAGE = "skipped: Chromium not installed (apt-get install chromium chromium-driver)"


def exit_if_no_chromium() -> None:
    """Print the skip message and exit 0 when there is no Chromium or no Playwright to drive it."""
    if not CHROMIUM.exists():
        print(SKIP_MESSAGE)
        sys.exit(0)
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("skipped: Playwright not installed (pip install -e '.[site]')")
        sys.exit(0)


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(playwright):
    """Start headless Chromium through Playwright's Chromium driver."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
