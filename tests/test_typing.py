"""The package ships py.typed, so its annotations must hold: mypy checks src/ipckit."""

import pathlib
import subprocess
import sys

import pytest

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "ipckit"


def test_mypy_accepts_the_package(tmp_path):
    pytest.importorskip("mypy")
    if not SRC.is_dir():
        pytest.skip("needs a source checkout")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", str(SRC), "--ignore-missing-imports", "--no-error-summary",
         "--cache-dir", str(tmp_path / "mypy-cache")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
