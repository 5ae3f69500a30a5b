"""The package's layering: imports flow one way, from the chapters that use a module down to what it builds on."""

import shutil
import subprocess

import pytest

from llmcourse.runtime import REPO_ROOT

PACKAGE = REPO_ROOT / "shared" / "llmcourse"


def layered_modules() -> set[str]:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    [contract] = config["tool"]["importlinter"]["contracts"]
    return {name.strip() for layer in contract["layers"] for name in layer.split("|")}


def test_every_module_has_a_place_in_the_layers():
    modules = {f"llmcourse.{path.stem}" for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    assert layered_modules() == modules


def test_no_module_imports_from_a_later_layer():
    lint_imports = shutil.which("lint-imports")
    assert lint_imports, "import-linter is part of the dev extra: pip install -e '.[dev]'"
    result = subprocess.run([lint_imports, "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
