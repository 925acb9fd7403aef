"""The documentation site (mkdocs.yml): it builds with ``mkdocs build --strict``, so a
broken link, anchor, image or API reference, or a page left out of the nav, fails CI;
the API reference covers every public name; every page's examples are collected.

The examples themselves are run by the collector in the top-level conftest.py.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ipckit
import ipckit.testing

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing() -> list[str]:
    missing = []
    for module in NEEDED:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(module)
    return missing


needs_mkdocs = pytest.mark.skipif(
    bool(_missing()),
    reason=f"the site needs the 'docs' extra (pip install '.[docs]'); missing: {', '.join(_missing())}",
)


def _build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(root / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=root, capture_output=True, text=True, timeout=100,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = _build(ROOT, out)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def _article(page: Path) -> str:
    text = page.read_text()
    return text[text.index("<article"):text.index("</article>")]


@needs_mkdocs
def test_site_builds_strict(site: Path) -> None:
    for page in ("index.html", "which/index.html", "reference/contract/index.html",
                 "reference/api/index.html", "programs/index.html", "pipe/index.html"):
        assert (site / page).is_file(), page


@needs_mkdocs
def test_api_reference_has_every_public_name(site: Path) -> None:
    api = (site / "reference" / "api" / "index.html").read_text()
    anchors = set(re.findall(r'id="([^"]+)"', api))
    wanted = [f"ipckit.{name}" for name in ipckit.__all__]
    wanted += [f"ipckit.testing.{name}" for name in ipckit.testing.__all__]
    aio = importlib.import_module("ipckit.aio")
    wanted += [f"ipckit.aio.{name}" for name in aio.__all__]
    missing = [name for name in wanted if name not in anchors]
    assert not missing, f"not in docs/reference/api.md: {missing}"


def _fences(markdown: str) -> int:
    count, inside = 0, False
    for line in markdown.splitlines():
        if line.startswith("```"):
            count += not inside
            inside = not inside
    return count


@needs_mkdocs
def test_every_code_block_renders_as_code(site: Path) -> None:
    # A fence Markdown does not recognise (```python no-run, were it not for
    # docs/hooks.py) renders as a paragraph with literal backticks instead of a block.
    checked = 0
    for page in (ROOT / "docs").rglob("*.md"):
        relative = page.relative_to(ROOT / "docs")
        if relative == Path("README.md") or relative == Path("reference/api.md"):
            continue  # not in the site; the API page's blocks come from mkdocstrings
        html = site / (relative.parent if relative.stem == "index" else relative.with_suffix("")) / "index.html"
        article = _article(html)
        assert "```" not in re.sub(r"<code>.*?</code>", "", article, flags=re.S), f"unrendered fence in {relative}"
        assert article.count('<div class="highlight">') == _fences(page.read_text()), relative
        checked += 1
    assert checked >= 15


@needs_mkdocs
def test_strict_build_fails_on_broken_links(tmp_path: Path) -> None:
    # The guard itself: a copy of the site with one of each kind of mistake must fail,
    # naming each of them.
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "src").symlink_to(ROOT / "src")
    with open(copy / "docs" / "index.md", "a") as f:
        f.write("\n[a](missing.md) [b](pipe.md#no-such-heading) ![c](bench/missing.png) [d][ipckit.NoSuchName]\n")
    (copy / "docs" / "orphan.md").write_text("# Not in the nav\n")
    result = _build(copy, tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for mistake in ("missing.md", "#no-such-heading", "bench/missing.png", "ipckit.NoSuchName", "orphan.md"):
        assert mistake in output, f"{mistake!r} not reported:\n{output}"


def test_examples_in_docs_subdirectories_are_collected() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "docs/programs", "docs/index.md"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    items = [line for line in result.stdout.splitlines() if "::example" in line]
    pages = {line.split("::")[0] for line in items}
    assert {"docs/programs/tcp.md", "docs/programs/signals.md", "docs/index.md"} <= pages, result.stdout
    python_blocks = sum(
        len(re.findall(r"^```python[ \t]*$", p.read_text(), re.M))
        for p in [ROOT / "docs" / "index.md", *(ROOT / "docs" / "programs").glob("*.md")]
    )
    assert len(items) == python_blocks
