"""shot-scraper in its own venv, driving Debian's Chromium: the reference for bench/throughput.py.

shot-scraper bundles its own Playwright, which looks for the browser build it was released
with under PLAYWRIGHT_BROWSERS_PATH and may not download one here. So this venv gets a
folder of links laid out as that Playwright expects (``chromium-REV/chrome-linux64/chrome``
and the headless shell next to it, names from its browsers.json), all pointing at
/usr/bin/chromium. A probe run with an empty shot list finds any other name it asks for.
As root, Chromium needs ``--no-sandbox``: shot-scraper passes ``--browser-arg`` through.

    .venv/bin/python bench/shot_scraper_env.py            # install (idempotent) and probe
    .venv/bin/python bench/shot_scraper_env.py --check    # only say whether it is usable
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("SHOT_SCRAPER_VENV", HERE / ".venv-shot-scraper"))
BROWSERS = VENV / "browsers-debian"
PACKAGE = "shot-scraper"
_MISSING = re.compile(r"Executable doesn't exist at (\S+)")
#: browsers.json name -> the executable's path inside its folder (Playwright 1.5x/1.6x, linux).
_LAYOUT = {
    "chromium": ("chromium", "chrome-linux64/chrome"),
    "chromium-headless-shell": (
        "chromium_headless_shell",
        "chrome-headless-shell-linux64/chrome-headless-shell",
    ),
}


def executable() -> Path:
    return VENV / "bin" / "shot-scraper"


def version() -> str:
    python = VENV / "bin" / "python"
    if not python.exists():
        return "not installed"
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('shot-scraper'))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "not installed"


def install() -> None:
    """Create the venv and install shot-scraper (its own Playwright comes with it)."""
    if executable().exists():
        return
    print(f"installing {PACKAGE} into {VENV}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, PACKAGE], check=True)


def _link(path: Path, browser: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(browser)


def link_browsers(browser: str = "/usr/bin/chromium") -> None:
    """Lay out the links its Playwright expects, from that Playwright's browsers.json."""
    found = list(VENV.glob("lib/python*/site-packages/playwright/driver/package/browsers.json"))
    if not found:
        raise SystemExit(f"no Playwright inside {VENV}: run bench/shot_scraper_env.py")
    for entry in json.loads(found[0].read_text())["browsers"]:
        if entry["name"] in _LAYOUT:
            folder, inner = _LAYOUT[entry["name"]]
            _link(BROWSERS / f"{folder}-{entry['revision']}" / inner, browser)


def environment() -> dict[str, str]:
    return {**os.environ, "PLAYWRIGHT_BROWSERS_PATH": str(BROWSERS)}


def command(config: Path, browser_args: list[str]) -> list[str]:
    """``shot-scraper multi CONFIG`` with Chromium flags passed through."""
    return [
        str(executable()),
        "multi",
        str(config),
        "--silent",
        *(f"--browser-arg={arg}" for arg in browser_args),
    ]


def probe(browser_args: list[str], browser: str = "/usr/bin/chromium") -> str | None:
    """Launch once with no shots; link any executable path Playwright still asks for.
    Returns None when it works, else the error."""
    with tempfile.TemporaryDirectory(prefix="bench-shot-scraper-") as folder:
        config = Path(folder) / "empty.yml"
        config.write_text("[]\n")
        error = ""
        for _ in range(3):
            run = subprocess.run(
                command(config, browser_args),
                env=environment(),
                capture_output=True,
                text=True,
                timeout=180,
            )
            if run.returncode == 0:
                return None
            error = run.stderr.strip()
            missing = _MISSING.search(error)
            if missing is None:
                break
            _link(Path(missing.group(1)), browser)
        lines = [line for line in error.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {run.returncode}"


def available(browser_args: list[str]) -> str | None:
    """None when shot-scraper is installed and launches Debian's Chromium, else why not."""
    if not executable().exists():
        return f"not installed ({VENV}); run bench/shot_scraper_env.py"
    link_browsers()
    return probe(browser_args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not install, only check")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from distshot.engines.chromium import chromium_flags

    if not args.check:
        install()
    problem = available(chromium_flags())
    if problem:
        raise SystemExit(f"shot-scraper is not usable: {problem}")
    print(f"shot-scraper {version()} ready in {VENV} (browsers: {BROWSERS})")


if __name__ == "__main__":
    main()
