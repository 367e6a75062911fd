"""Setup: the Makefile works for a user who is not root, and the package installs without warnings."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _fake_bin(folder: Path, uid: int) -> dict:
    """A PATH with no chromium and no apt-get, where `id -u` says ``uid``."""
    folder.mkdir()
    (folder / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (folder / "id").chmod(0o755)
    return {**os.environ, "PATH": str(folder)}


@pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")
def test_make_browser_without_root_explains_and_succeeds(tmp_path):
    out = subprocess.run([shutil.which("make"), "-s", "-C", str(ROOT), "browser"], capture_output=True, text=True,
                         env=_fake_bin(tmp_path / "bin", uid=1000), timeout=60)
    assert out.returncode == 0, out.stderr
    assert "needs root" in out.stdout and "browser tests (tests/test_browser.py) will be skipped" in out.stdout


def test_package_builds_without_setuptools_warnings_and_ships_the_widget(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "rag", src / "rag", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("from setuptools import build_meta as b; "
            f"print(b.build_editable({str(tmp_path / 'editable')!r})); print(b.build_wheel({str(tmp_path)!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "absent from the `packages` configuration" not in out.stdout + out.stderr
    wheel = tmp_path / out.stdout.strip().splitlines()[-1]
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"rag/serve/static/{p.name}" for p in (ROOT / "rag" / "serve" / "static").iterdir()} <= set(names)
