"""The website's API page documents every module of the package (the site check fails otherwise, but only in CI)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_api_page_lists_every_module():
    modules = {p.stem for p in (ROOT / "shared" / "llmcourse").glob("*.py") if p.stem != "__init__"}
    listed = set(re.findall(r"^\.\. automodule:: llmcourse\.(\w+)$", (ROOT / "website" / "api.rst").read_text(), re.M))
    assert modules - listed == set(), f"website/api.rst lacks {sorted(modules - listed)}"
    assert listed - modules == set(), f"website/api.rst names modules that do not exist: {sorted(listed - modules)}"
