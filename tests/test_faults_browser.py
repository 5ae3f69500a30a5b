"""The browser checks' decision when Chromium is missing: skip on a workstation, fail under CI (CI set)."""

import importlib.util

import pytest

from llmcourse.runtime import REPO_ROOT


def load_browser():
    spec = importlib.util.spec_from_file_location("browser", REPO_ROOT / "scripts" / "browser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("ci, status", [(None, 0), ("true", 1), ("1", 1)])
def test_missing_chromium_skips_outside_ci_and_fails_under_ci(tmp_path, monkeypatch, capsys, ci, status):
    browser = load_browser()
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(SystemExit) as exit_info:
        browser.exit_if_no_chromium()
    assert exit_info.value.code == status
    out, err = capsys.readouterr()
    if status:
        assert f"error: Chromium is not installed at {tmp_path / 'no-chromium'}" in err
        assert "CI is set, so the browser checks must run" in err
    else:
        assert f"skipped: Chromium is not installed at {tmp_path / 'no-chromium'}" in out
