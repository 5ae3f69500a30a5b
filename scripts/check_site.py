"""Check the built course website (_site/) in a real browser, with no network beyond this machine.

    python scripts/build_site.py && python scripts/check_site.py

Serves _site/ on a loopback port and opens every page in headless Chromium (see browser.py). Fails
(exit 1) when a page
  - logs a console error or a JavaScript exception, or a request of it fails or leaves this machine;
  - is a notebook with image outputs but shows fewer images than the notebook holds;
  - has math that MathJax did not typeset (or typeset as an error);
  - links inside the site to a file or an anchor that does not exist;
and when the API page lacks a module of llmcourse or a few of its functions, or search finds nothing.
Writes a screenshot of each chapter's first notebook into _site/_screenshots/. Exit 0 with a message
when Chromium is not installed, except under CI (the CI environment variable set): exit 1 there.
"""

import functools
import http.server
import json
import pkgutil
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urljoin

from browser import exit_if_no_chromium, free_port, launch

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_site"
SCREENSHOTS = SITE / "_screenshots"
API_NAMES = ["llmcourse.checkpoint.load_checkpoint", "llmcourse.generate.generate", "llmcourse.lora.add_lora",
             "llmcourse.model.GPTModel", "llmcourse.tokenizer.BPETokenizer"]

# Everything a page shows, read in the page: links, anchors, images, math.
PAGE_FACTS_JS = """async () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
    const outputImages = [...document.querySelectorAll('.cell_output img')];
    return {
        links: [...document.querySelectorAll('a[href]')].map(a => a.href),
        ids: [...document.querySelectorAll('[id]')].map(e => e.id)
             .concat([...document.querySelectorAll('a[name]')].map(a => a.name)),
        images: outputImages.length,
        imagesShown: outputImages.filter(img => img.complete && img.naturalWidth > 0).length,
        math: document.querySelectorAll('.math').length,
        typeset: document.querySelectorAll('mjx-container').length,
        mathErrors: document.querySelectorAll('mjx-merror').length,
    };
}"""


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve `folder` on a free loopback port in a background thread; returns the server and its URL."""
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            if not isinstance(sys.exc_info()[1], ConnectionError):  # the browser may drop a request
                super().handle_error(request, client_address)

    handler = functools.partial(QuietHandler, directory=str(folder))
    server = QuietServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def image_outputs(notebook: Path) -> int:
    """How many image outputs (PNG, JPEG or SVG) a notebook was committed with."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    kinds = ("image/png", "image/jpeg", "image/svg+xml")
    return sum(any(k in out.get("data", {}) for k in kinds) for c in cells for out in c.get("outputs", []))


def status_of(url: str) -> int:
    """The HTTP status of a GET of `url` (the loopback server answers HEAD the same way)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


class SiteCheck:
    """Visits the pages, gathers what they show and collects the failures."""

    def __init__(self, browser, base: str):
        self.base = base
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.failures: list[str] = []
        self.events: list[str] = []  # console errors, exceptions and failed requests of the current page
        self.page.on("console", lambda m: m.type == "error" and self.events.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.events.append(f"exception: {e}"))
        self.page.on("requestfailed", lambda r: self.events.append(f"request failed: {r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.events.append(f"HTTP {r.status}: {r.url}"))
        self.page.route("**/*", self.only_loopback)
        self.ids: dict[str, set[str]] = {}  # page URL -> the anchors it has
        self.links: set[str] = set()
        self.images = self.math_pages = 0

    def only_loopback(self, route):
        """Let requests to the local server through; anything else would need the internet: fail it."""
        if route.request.url.startswith(self.base) or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.events.append(f"external request: {route.request.url}")
            route.abort()

    def visit(self, path: str) -> dict:
        """Open one page, record its problems, anchors and links; returns what it shows."""
        url = urljoin(self.base, path)
        self.events.clear()
        self.page.goto(url, wait_until="load")
        facts = self.page.evaluate(PAGE_FACTS_JS)
        self.page.wait_for_load_state("networkidle")  # fonts and components MathJax loads
        self.failures += [f"{path}: {event}" for event in self.events]
        self.ids[url] = set(facts["ids"])
        self.links |= {link for link in facts["links"] if link.startswith(self.base)}
        if facts["math"]:
            self.math_pages += 1
            if facts["typeset"] < facts["math"] or facts["mathErrors"]:
                self.failures.append(f"{path}: {facts['math']} math elements, {facts['typeset']} typeset, "
                                     f"{facts['mathErrors']} TeX errors")
        return facts

    def check_notebook_images(self, path: str, facts: dict, notebook: Path) -> None:
        expected = image_outputs(notebook)
        self.images += facts["imagesShown"]
        if facts["imagesShown"] < expected:
            self.failures.append(f"{path}: shows {facts['imagesShown']} of the notebook's {expected} images")

    def check_links(self) -> None:
        """Every internal link answers 200, and every #anchor exists on an HTML page it points to."""
        for target in sorted({urldefrag(link).url.split("?")[0] for link in self.links}):
            if (status := status_of(target)) != 200:
                self.failures.append(f"broken link ({status}): {target[len(self.base):]}")
        for link in sorted(self.links):
            page_url, anchor = urldefrag(link)
            if anchor and page_url in self.ids and anchor not in self.ids[page_url]:
                self.failures.append(f"broken anchor: {link[len(self.base):]}")

    def check_api(self) -> None:
        """The API page documents every module of llmcourse and a few named functions."""
        import llmcourse

        ids = self.ids[urljoin(self.base, "api.html")]
        modules = [m.name for m in pkgutil.iter_modules(llmcourse.__path__) if not m.name.startswith("_")]
        missing = [f"module-llmcourse.{m}" for m in modules if f"module-llmcourse.{m}" not in ids]
        missing += [name for name in API_NAMES if name not in ids]
        if missing:
            self.failures.append(f"api.html lacks {', '.join(missing)}")

    def check_search(self, query: str = "attention") -> None:
        self.page.goto(urljoin(self.base, f"search.html?q={query}"), wait_until="load")
        try:
            self.page.wait_for_selector("#search-results li", timeout=15_000)
        except Exception:
            self.failures.append(f"search for {query!r} found nothing")


def main() -> int:
    exit_if_no_chromium()
    from playwright.sync_api import sync_playwright

    if not (SITE / "index.html").exists():
        print("no _site/index.html: run python scripts/build_site.py first", file=sys.stderr)
        return 1
    start = time.perf_counter()
    pages = sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")
                   if not p.relative_to(SITE).as_posix().startswith(("_static/", "_screenshots/")))
    server, base = serve(SITE)
    SCREENSHOTS.mkdir(exist_ok=True)
    notebook_pages = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        check = SiteCheck(browser, base)
        for path in pages:
            facts = check.visit(path)
            notebook = (ROOT / path).with_suffix(".ipynb")
            if path.startswith("ch") and notebook.exists():
                notebook_pages.append(path)
                check.check_notebook_images(path, facts, notebook)
        check.check_links()
        check.check_api()
        check.check_search()
        for chapter in sorted({p.split("/")[0] for p in notebook_pages}):
            first = next(p for p in notebook_pages if p.startswith(chapter + "/"))
            check.page.goto(urljoin(base, first), wait_until="networkidle")
            check.page.screenshot(path=SCREENSHOTS / f"{chapter}.png")
        browser.close()
    server.shutdown()

    print(f"pages checked: {len(pages)} ({len(notebook_pages)} notebooks: {', '.join(notebook_pages)})")
    print(f"images shown in notebook outputs: {check.images}; pages with math typeset: {check.math_pages}; "
          f"internal links checked: {len(check.links)}; screenshots: {SCREENSHOTS.relative_to(ROOT)}/")
    print(f"time: {time.perf_counter() - start:.0f} s")
    for failure in check.failures:
        print("FAIL", failure)
    print(f"site check: {'FAILED, ' + str(len(check.failures)) + ' problems' if check.failures else 'passed'}")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
