"""Run the examples in README.md and in docs/ (every page, subdirectories included) as
tests, so a broken example fails CI.

Every fenced block that starts with ```python is a whole program: it runs in a
fresh interpreter (so ``multiprocessing`` with ``spawn`` works as in a user's
script), in a temporary directory, and must exit with status 0 within 60 s.
A block fenced as ```python no-run is shown but not run (fragments); the site's
build (docs/hooks.py) renders it as an ordinary Python block.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

_BLOCK = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.S | re.M)


def pytest_collect_file(parent: pytest.Collector, file_path):  # type: ignore[no-untyped-def]
    root = parent.config.rootpath
    if file_path.suffix == ".md" and ((root / "docs") in file_path.parents or file_path == root / "README.md"):
        return MarkdownFile.from_parent(parent, path=file_path)
    return None


class MarkdownFile(pytest.File):
    def collect(self):  # type: ignore[no-untyped-def]
        text = self.path.read_text()
        for number, match in enumerate(_BLOCK.finditer(text), 1):
            if "no-run" in match.group(1):
                continue
            line = text.count("\n", 0, match.start()) + 1
            yield ExampleItem.from_parent(self, name=f"example{number}-line{line}", code=match.group(2))


class ExampleItem(pytest.Item):
    def __init__(self, *, code: str, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.code = code

    def runtest(self) -> None:
        tmp = self.config._tmp_path_factory.mktemp("doc")  # type: ignore[attr-defined]
        script = tmp / "example.py"
        script.write_text(self.code)
        result = subprocess.run(
            [sys.executable, str(script)], cwd=tmp, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if result.returncode != 0:
            raise ExampleFailed(result)

    def repr_failure(self, excinfo):  # type: ignore[no-untyped-def]
        if isinstance(excinfo.value, ExampleFailed):
            r = excinfo.value.result
            return f"example exited with {r.returncode}\n--- stdout ---\n{r.stdout}\n--- stderr ---\n{r.stderr}"
        return super().repr_failure(excinfo)

    def reportinfo(self):  # type: ignore[no-untyped-def]
        return self.path, 0, f"[doc example] {self.name}"


class ExampleFailed(Exception):
    def __init__(self, result: subprocess.CompletedProcess) -> None:
        super().__init__(result.returncode)
        self.result = result
