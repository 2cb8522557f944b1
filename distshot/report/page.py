"""The report's page: one set of static files (``assets/``) for every report, every diff
and the service's live gallery; only the data beside it differs."""

from __future__ import annotations

import html
import shutil
from importlib import resources
from pathlib import Path

#: The page's files, shipped with the package.
ASSETS = resources.files("distshot.report") / "assets"


def write_page(out: Path, *, title: str) -> None:
    """Write ``index.html`` (with ``title``) and ``assets/`` into the report folder."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "assets").mkdir(exist_ok=True)
    for item in ASSETS.iterdir():
        if item.name == "index.html" or not item.is_file():
            continue
        with resources.as_file(item) as path:
            shutil.copyfile(path, out / "assets" / item.name)
    shell = (ASSETS / "index.html").read_text(encoding="utf-8")
    (out / "index.html").write_text(
        shell.replace("{{title}}", html.escape(title)), encoding="utf-8"
    )
