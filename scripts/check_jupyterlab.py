"""Run one course notebook end to end in JupyterLab, through the browser, as a student would.

    python scripts/check_jupyterlab.py [NOTEBOOK]

Copies NOTEBOOK (default: ch03_attention/01_attention_without_weights.ipynb, about 10 s to run) into a
temporary folder, starts `jupyter lab` there on a free loopback port with no token, opens the notebook
in headless Chromium (see browser.py), runs Run > Run All Cells from the menu and waits until the
kernel is idle. Fails (exit 1) when a cell is left unrun ("[*]" or "[ ]") or shows a traceback; then
saves the copy, checks the saved file the same way, takes a screenshot into
_site/_screenshots/jupyterlab.png and stops the server. The notebook in the repository is never
touched. Exit 0 with a message when Chromium is not installed, except under CI (the CI environment
variable set): exit 1 there.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from browser import exit_if_no_chromium, free_port, launch

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NOTEBOOK = ROOT / "ch03_attention" / "01_attention_without_weights.ipynb"
RUN_TIMEOUT_S = 300
SCREENSHOT = ROOT / "_site" / "_screenshots" / "jupyterlab.png"

# Every code cell's prompt and whether it shows a traceback, read in the page.
CELLS_JS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')].map(cell => ({
    prompt: (cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
    traceback: [...cell.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
        .some(out => /Traceback|Error/.test(out.textContent)),
}))"""


def start_lab(folder: Path, port: int) -> subprocess.Popen:
    """Start JupyterLab serving `folder`, with its settings and state kept inside `folder`."""
    settings = folder / ".lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Keep every cell in the page (no virtual scrolling), so that all prompts can be read.
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(folder / ".runtime"))
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.token=",
               "--ServerApp.password=", "--ServerApp.ip=127.0.0.1", f"--port={port}",
               f"--ServerApp.root_dir={folder}", f"--LabApp.user_settings_dir={folder / '.lab-settings'}",
               f"--LabApp.workspaces_dir={folder / '.lab-workspaces'}"]
    if os.geteuid() == 0:  # CI and containers run as root, which jupyter refuses without this
        command.append("--allow-root")
    log = open(folder / ".lab.log", "w")
    return subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_server(url: str, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url + "api/status", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer at {url} within {timeout_s} s")


def kernels_idle(url: str) -> bool:
    with urllib.request.urlopen(url + "api/kernels", timeout=5) as response:
        kernels = json.load(response)
    return bool(kernels) and all(k["execution_state"] == "idle" for k in kernels)


def stop_lab(process: subprocess.Popen) -> None:
    """Stop the server and the kernels it started (its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def problems_in_page(cells: list[dict]) -> list[str]:
    problems = []
    for number, cell in enumerate(cells, 1):
        prompt = cell["prompt"].strip()
        if prompt in ("[*]:", "[ ]:", ""):
            problems.append(f"code cell {number} did not finish: prompt {prompt or 'empty'}")
        if cell["traceback"]:
            problems.append(f"code cell {number} shows a traceback")
    return problems


def problems_in_saved(notebook: Path) -> list[str]:
    cells = [c for c in json.loads(notebook.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    problems = []
    for number, cell in enumerate(cells, 1):
        if cell.get("execution_count") is None and cell["source"]:
            problems.append(f"saved code cell {number} has no execution count")
        errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
        problems += [f"saved code cell {number}: {e['ename']}: {e['evalue']}" for e in errors]
    return problems


def run_in_lab(page, url: str, name: str, copy: Path) -> tuple[int, list[str]]:
    """Open `name` in JupyterLab, run all cells from the menu, wait for idle; returns (cells, problems)."""
    page.goto(f"{url}lab/tree/{name}", wait_until="load")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    deadline = time.monotonic() + 60
    while not kernels_idle(url):  # the kernel has started and is ready
        accept = page.locator(".jp-Dialog .jp-mod-accept")
        if accept.count():  # a notebook with no kernelspec asks which kernel: take the proposed one
            accept.first.click()
        if time.monotonic() > deadline:
            return 0, ["the kernel did not start within 60 s"]
        time.sleep(0.5)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    deadline = time.monotonic() + RUN_TIMEOUT_S
    time.sleep(1)
    while True:
        cells = page.evaluate(CELLS_JS)
        if kernels_idle(url) and not any(c["prompt"].strip() == "[*]:" for c in cells):
            break
        if time.monotonic() > deadline:
            return len(cells), [f"still running after {RUN_TIMEOUT_S} s"]
        time.sleep(1)
    problems = problems_in_page(cells)

    before = copy.stat().st_mtime_ns
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while copy.stat().st_mtime_ns == before and time.monotonic() < deadline:
        time.sleep(0.2)
    if copy.stat().st_mtime_ns == before:
        problems.append("the notebook was not saved")
    else:
        problems += problems_in_saved(copy)
    return len(cells), problems


def main() -> int:
    exit_if_no_chromium()
    from playwright.sync_api import sync_playwright

    notebook = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else DEFAULT_NOTEBOOK
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmcourse-lab-") as tmp:
        folder = Path(tmp)
        copy = folder / notebook.name
        shutil.copy2(notebook, copy)
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        lab = start_lab(folder, port)
        try:
            wait_for_server(url, lab)
            with sync_playwright() as playwright:
                browser = launch(playwright)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                cells, problems = run_in_lab(page, url, notebook.name, copy)
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=SCREENSHOT)
                browser.close()
        except Exception as err:  # a server that never came up, a browser that could not start
            cells, problems = 0, [f"{type(err).__name__}: {err}"]
        finally:
            stop_lab(lab)
        if problems:
            print((folder / ".lab.log").read_text(errors="replace")[-3000:], file=sys.stderr)

    label = notebook.relative_to(ROOT) if notebook.is_relative_to(ROOT) else notebook
    print(f"JupyterLab: {label}, {cells} code cells run with Run All Cells, "
          f"{time.perf_counter() - start:.0f} s")
    for problem in problems:
        print("FAIL", problem)
    print(f"JupyterLab check: {'FAILED' if problems else 'passed'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
