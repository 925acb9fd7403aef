"""MkDocs hook for the ipckit site (mkdocs.yml: ``hooks:``; not a page, excluded from the site).

The example collector (the top-level conftest.py) runs every fenced block opened
with ```python and skips those opened with ```python no-run. Markdown fences allow
no words after the language, so without this hook a no-run block would render as
a paragraph of backticks; here it becomes a plain ```python block.
"""

from __future__ import annotations

import re
from typing import Any

_NO_RUN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})python[ \t]+no-run[ \t]*$", re.M)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return _NO_RUN.sub(r"\g<indent>\g<fence>python", markdown)
