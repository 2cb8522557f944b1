"""Benchmark: a batch with wedged pages in it, on every engine, before and after a change
(issue 23).

A wedged page is one whose script never yields (distshot/testing/pages/jsloop.html,
``while(true){}``): its renderer spins until the job's timeout, and what happens then (how
fast the engine gives up, whether the browser survives, how often the job is retried, whether
the pages after it get a working browser at once) decides how long the whole batch takes.

The batch: 20 ordinary pages of distshot/testing/pages (simple, solid, flow, controls,
transparent, media, each URL made unique by a query string) with 2 wedged ones among them, at
lines 5 and 14 (``--wedged N``: N of them, spread out), served on 127.0.0.1 by
``distshot.testing.server.start_server()`` in this process. Each run is one
``python -m distshot.cli shoot URLS -o OUT --engine E --concurrency 2 --timeout T
--allow-private`` (T = ``--timeout``, 8 s), 1280x800 PNG.

The sides, as bench/ab_shoot.py (whose helpers this script uses): "before" is ``--base REV``
(default HEAD) checked out with ``git worktree add --detach`` into a scratch folder under
/tmp/wedgebench (removed at the end); "after" is this working tree, uncommitted changes
included. Both run with this interpreter, PYTHONPATH = the side's source root plus its copy of
examples/distshot-engine-example (the cdp engine), from a scratch folder; at start
`distshot engines` runs for each side and the script stops unless every distshot module and
plugin it imports is a file of that side's tree. Then each side shoots 2 ordinary pages per
engine, untimed (a warm-up; a side that cannot shoot with an engine stops the benchmark).

Per engine, before and after run back to back, their order alternating from one engine (and
one round) to the next. ``--load N`` runs N busy processes (``python -c "while True: pass"``)
during the runs, for a loaded machine.

Figures per run: wall seconds of the whole `shoot` process (start-up and shutdown included);
ordinary pages ok / total and how many of them needed more than one attempt; for each wedged
page its status, attempts, error type and message; the largest total_ms of the wedged records
(one attempt's time, from the manifest).

Every process a run starts carries a marker in its environment; after each run the script
reaps the orphans it gained as a child subreaper (Chromium's zygotes) and SIGKILLs anything
still carrying the marker, and at the end reports what it had to kill (nothing is expected).

    .venv/bin/python bench/wedged.py                             # HEAD vs working tree
    .venv/bin/python bench/wedged.py --load 2                    # with 2 busy processes
    .venv/bin/python bench/wedged.py --engines playwright cdp --rounds 2 --timeout 5
    .venv/bin/python bench/wedged.py --base HEAD~1 --wedged 4 --keep /tmp/wedgebench/keep
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ab_shoot import (
    ROOT,
    Side,
    _terminate,
    become_subreaper,
    check_imports,
    children,
    reap_orphans,
    resolve_base,
    side_env,
    source_fingerprint,
    working_tree_label,
    worktree,
)
from machine import describe, load
from throughput import BROWSER, leftovers

from distshot.engines.chromium import kill_process_tree
from distshot.testing.server import start_server, stop_server

SCRATCH = Path("/tmp/wedgebench")
ENGINES = ("playwright", "pyppeteer", "selenium", "cdp")
#: Pages of distshot/testing/pages that load at once and need no option.
ORDINARY = (
    "simple.html",
    "solid.html",
    "flow.html",
    "controls.html",
    "transparent.html",
    "media.html",
)
WEDGED = "jsloop.html"
MARKER = "DISTSHOT_WEDGEBENCH"


@dataclass
class Result:
    """One `shoot` run of one side with one engine."""

    engine: str
    side: str
    round: int
    wall: float
    load: str
    exit: int | None
    ordinary_ok: int = 0
    ordinary_total: int = 0
    ordinary_retried: int = 0
    wedged: list[dict[str, object]] = field(default_factory=list)  # manifest records
    notes: list[str] = field(default_factory=list)

    @property
    def wedged_max_ms(self) -> float | None:
        values = [r["timings"].get("total_ms") for r in self.wedged if r.get("timings")]
        values = [v for v in values if v is not None]
        return max(values) if values else None


# -- the batch -----------------------------------------------------------------------------


def wedged_lines(ordinary: int, wedged: int) -> list[int]:
    """The (1-based) lines of the wedged pages: 5 and 14 for 2 of them among 20, else spread
    out from line 5 on."""
    total = ordinary + wedged
    start = max(1, min(5, total - wedged + 1))
    step = max(1, (total - start + 1) // max(wedged, 1))
    return [start + i * step for i in range(wedged)]


def batch(base: str, ordinary: int, wedged: int) -> list[str]:
    lines = set(wedged_lines(ordinary, wedged))
    urls, n_ordinary, n_wedged = [], 0, 0
    for line in range(1, ordinary + wedged + 1):
        if line in lines and n_wedged < wedged:
            n_wedged += 1
            urls.append(f"{base}/{WEDGED}?wedged={n_wedged}")
        else:
            n_ordinary += 1
            page = ORDINARY[(n_ordinary - 1) % len(ORDINARY)]
            urls.append(f"{base}/{page}?n={n_ordinary}")
    return urls


# -- processes -----------------------------------------------------------------------------


def marked(token: str) -> list[int]:
    """Processes (of any parent) whose environment carries this run's marker."""
    needle = f"{MARKER}={token}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                environ = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
                if needle in environ:
                    found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100]
    return "?"


def kill_marked(token: str, keep: set[int]) -> list[str]:
    """SIGKILL whatever still carries the marker (none expected); what was killed."""
    killed = []
    for pid in marked(token):
        if pid in keep:
            continue
        killed.append(f"{pid} {command_line(pid)}")
        kill_process_tree(pid)
    return killed


def start_load(count: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", "while True: pass"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(count)
    ]


def stop_load(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


def pgrep(name: str) -> set[int]:
    done = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
    return {int(pid) for pid in done.stdout.split()}


# -- one run -------------------------------------------------------------------------------


@dataclass
class Setup:
    urls: list[str]
    urls_file: Path
    warmup_file: Path
    wedged_urls: set[str]
    work: Path
    timeout: float
    env: dict[str, str]
    token: str
    keep_pids: set[int]  # the load processes: not a run's
    killed: list[str] = field(default_factory=list)


def shoot(side: Side, engine: str, setup: Setup, urls_file: Path, out: Path) -> tuple[float, int]:
    """Run one `shoot`; its wall seconds and exit status. Nothing it started outlives it."""
    command = [
        *(sys.executable, "-m", "distshot.cli", "shoot", str(urls_file), "-o", str(out)),
        *("--engine", engine, "--concurrency", "2", "--timeout", f"{setup.timeout:g}"),
        "--allow-private",
    ]
    keep = children()  # the load processes
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=side_env(side, setup.env),
        cwd=setup.work,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C reaches this script only; it stops the tree
    )
    try:
        _, stderr = process.communicate(timeout=900)
    except BaseException:  # Ctrl-C, timeout: no process of the run may outlive it
        kill_process_tree(process.pid)
        process.kill()
        process.communicate()
        reap_orphans(keep, grace=0)
        setup.killed += kill_marked(setup.token, setup.keep_pids)
        raise
    wall = time.perf_counter() - started
    reap_orphans(keep)  # Chromium's zygotes and crashpad handlers, re-parented to us
    setup.killed += kill_marked(setup.token, setup.keep_pids)
    (out / "stderr.txt").write_text(stderr)
    return wall, process.returncode


def read_manifest(out: Path) -> list[dict[str, object]]:
    path = out / "manifest.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measure(side: Side, engine: str, setup: Setup, round_number: int, out: Path) -> Result:
    started_load = load().split(",")[0]
    try:
        wall, code = shoot(side, engine, setup, setup.urls_file, out)
    except subprocess.TimeoutExpired as exc:
        wall, code = float(exc.timeout), None
    result = Result(engine, side.name, round_number, wall, started_load, code)
    records = read_manifest(out)
    if code is None:
        result.notes.append("timed out")
    if len(records) != len(setup.urls):
        result.notes.append(f"{len(records)} manifest records for {len(setup.urls)} URLs")
    for record in records:
        if record["url"] in setup.wedged_urls:
            result.wedged.append(record)
            continue
        result.ordinary_total += 1
        if record["status"] == "ok":
            result.ordinary_ok += 1
        else:
            error = record.get("error") or {}
            result.notes.append(
                f"line {record['line']} {record['status']}: {error.get('type')}: "
                f"{error.get('message')}"
            )
        if int(record.get("attempts") or 0) > 1:
            result.ordinary_retried += 1
            result.notes.append(f"line {record['line']} took {record['attempts']} attempts")
    result.wedged.sort(key=lambda r: str(r["line"]).zfill(9))
    return result


def warm_up(side: Side, engine: str, setup: Setup) -> None:
    """Shoot 2 ordinary pages, untimed; tried twice (this machine is often loaded) before the
    benchmark stops."""
    problem = ""
    for attempt in (1, 2):
        out = setup.work / f"warmup-{engine}-{side.name}-{attempt}"
        wall, code = shoot(side, engine, setup, setup.warmup_file, out)
        records = read_manifest(out)
        if code == 0 and len(records) == 2 and all(r["status"] == "ok" for r in records):
            print(f"  warm-up {engine} {side.name}: 2 pages, {wall:.1f} s", flush=True)
            shutil.rmtree(out, ignore_errors=True)
            return
        bad = [r for r in records if r["status"] != "ok"]
        lines = [line for line in (out / "stderr.txt").read_text().splitlines() if line.strip()]
        problem = f"{bad[0]['error']}" if bad else (lines or ["?"])[-1]
        print(f"  warm-up {engine} {side.name} failed (exit {code}): {problem}", flush=True)
    raise SystemExit(f"{side.name} cannot shoot with {engine}: {problem}")


# -- the report ----------------------------------------------------------------------------


def short(text: object, base: str) -> str:
    return str(text).replace(base, "").replace("|", "/")


def wedged_cell(result: Result, base: str) -> str:
    if not result.wedged:
        return "no record"
    parts = []
    for record in result.wedged:
        error = record.get("error") or {}
        what = f"{error.get('type')}: {short(error.get('message'), base)}" if error else "-"
        parts.append(
            f"line {record['line']}: {record['status']}, {record['attempts']} attempts, {what}"
        )
    return "<br>".join(parts)


def table(results: list[Result], base: str) -> list[str]:
    lines = [
        "| engine | side | round | wall s | ordinary ok | ordinary >1 attempt | wedged pages "
        "(status, attempts, error) | wedged max total_ms | exit | load at start | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        wedged_ms = "-" if r.wedged_max_ms is None else f"{r.wedged_max_ms:.0f}"
        notes = "; ".join(short(n, base) for n in r.notes) or "-"
        lines.append(
            f"| {r.engine} | {r.side} | {r.round} | {r.wall:.1f} | "
            f"{r.ordinary_ok}/{r.ordinary_total} | {r.ordinary_retried} | "
            f"{wedged_cell(r, base)} | {wedged_ms} | {r.exit} | {r.load} | {notes[:400]} |"
        )
    return lines


def summary(results: list[Result], engines: list[str]) -> list[str]:
    lines = [
        "\n| engine | before wall s | after wall s | after / before |",
        "|---|---|---|---|",
    ]
    for engine in engines:
        walls = {}
        for side in ("before", "after"):
            values = sorted(r.wall for r in results if r.engine == engine and r.side == side)
            walls[side] = values[len(values) // 2] if values else None
        before, after = walls["before"], walls["after"]
        ratio = f"{after / before:.2f}" if before and after else "-"
        lines.append(
            f"| {engine} | {'-' if before is None else f'{before:.1f}'} | "
            f"{'-' if after is None else f'{after:.1f}'} | {ratio} |"
        )
    return lines


# -- the run -------------------------------------------------------------------------------


def _versions() -> str:
    names = ("playwright", "pyppeteer", "selenium", "distshot")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="HEAD", help="git revision of 'before' [HEAD]")
    parser.add_argument(
        "--engines", nargs="+", default=list(ENGINES), help=f"[{' '.join(ENGINES)}]"
    )
    parser.add_argument("--rounds", type=int, default=1, help="before + after per engine [1]")
    parser.add_argument("--ordinary", type=int, default=20, help="ordinary pages [20]")
    parser.add_argument("--wedged", type=int, default=2, help="wedged pages among them [2]")
    parser.add_argument("--timeout", type=float, default=8, help="shoot --timeout, seconds [8]")
    parser.add_argument("--load", type=int, default=0, help="busy processes during the runs [0]")
    parser.add_argument("--keep", type=Path, help="keep each run's manifest and stderr here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    become_subreaper()

    base_rev, before_label = resolve_base(args.base)

    print("\n".join(describe(BROWSER)[:5]))
    print(f"- {_versions()}; interpreter {sys.executable} for both sides")
    chromium_at_start = pgrep("chromium") | pgrep("chromedriver")
    print(f"- Chromium/chromedriver processes already running (not ours): {len(chromium_at_start)}")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        stack.callback(reap_orphans, set(), 5)  # last: whatever of ours is still alive
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=SCRATCH, prefix="run-")))
        runs = work / "runs"
        runs.mkdir()
        # TMPDIR for the runs: what the drivers and Chromium leave goes with it. Short: the
        # selenium engine nests chromedriver's profile (and Chromium's SingletonSocket, a Unix
        # socket of at most 107 bytes) two folders below it, and with a TMPDIR of 37
        # characters Chromium does not start ("session not created: Chrome instance exited").
        tmp = Path(tempfile.mkdtemp(dir=SCRATCH, prefix="t"))
        stack.callback(shutil.rmtree, tmp, True)
        before = Side("before", stack.enter_context(worktree(base_rev, work)), before_label)
        after = Side("after", ROOT, working_tree_label())
        server = start_server()
        stack.callback(stop_server, server)
        urls = batch(server.base, args.ordinary, args.wedged)
        wedged_urls = {u for u in urls if f"/{WEDGED}?" in u}
        urls_file = runs / "urls.txt"
        urls_file.write_text("".join(u + "\n" for u in urls))
        warmup_file = runs / "warmup.txt"
        warmup_file.write_text(
            f"{server.base}/simple.html?warm=1\n{server.base}/solid.html?warm=2\n"
        )
        load_processes = start_load(args.load)
        stack.callback(stop_load, load_processes)
        setup = Setup(
            urls=urls,
            urls_file=urls_file,
            warmup_file=warmup_file,
            wedged_urls=wedged_urls,
            work=runs,
            timeout=args.timeout,
            env={**os.environ, "TMPDIR": str(tmp), MARKER: token},
            token=token,
            keep_pids={p.pid for p in load_processes},
        )
        for side in (before, after):
            found = check_imports(side, side_env(side, setup.env), runs)
            print(f"- {side.name}: {side.label}; import distshot -> {found}")
        lines = ", ".join(map(str, wedged_lines(args.ordinary, args.wedged)))
        print(
            f"\n{len(urls)} URLs per run: {args.ordinary} ordinary, {args.wedged} wedged "
            f"({WEDGED}) at lines {lines}; served at {server.base}; shoot --concurrency 2 "
            f"--timeout {args.timeout:g} --allow-private; {args.rounds} round(s); "
            f"--load {args.load} ({args.load} busy processes); load average now {load()}\n",
            flush=True,
        )
        for engine in args.engines:
            for side in (before, after):
                warm_up(side, engine, setup)

        fingerprint = source_fingerprint(ROOT)
        changed: list[str] = []
        for round_number in range(1, args.rounds + 1):
            for index, engine in enumerate(args.engines):
                order = (before, after) if (index + round_number) % 2 else (after, before)
                for side in order:
                    if side is after and source_fingerprint(ROOT) != fingerprint:
                        changed.append(f"round {round_number} {engine}")
                        fingerprint = source_fingerprint(ROOT)
                    out = runs / f"out-{engine}-{side.name}-{round_number}"
                    out.mkdir()
                    result = measure(side, engine, setup, round_number, out)
                    results.append(result)
                    ms = result.wedged_max_ms
                    print(
                        f"  round {round_number} {engine:<10} {side.name:<6} {result.wall:6.1f} s"
                        f", ordinary {result.ordinary_ok}/{result.ordinary_total} ok "
                        f"({result.ordinary_retried} retried), wedged "
                        + ", ".join(
                            f"{r['status']}x{r['attempts']} "
                            f"{(r.get('error') or {}).get('type', '-')}"
                            for r in result.wedged
                        )
                        + f", max {'-' if ms is None else f'{ms:.0f}'} ms; exit {result.exit}"
                        + f"  [load {load()}]",
                        flush=True,
                    )
                    if args.keep:
                        target = args.keep / out.name
                        target.mkdir(parents=True, exist_ok=True)
                        for name in ("manifest.jsonl", "stderr.txt"):
                            if (out / name).exists():
                                shutil.copy2(out / name, target / name)
                    shutil.rmtree(out, ignore_errors=True)

        print(f"\n**before**: {before.label}\n**after**: {after.label}\n")
        print("\n".join(table(results, server.base)))
        print("\n".join(summary(results, args.engines)))
        if changed:
            print(
                "\nwarning: the working tree's distshot/ changed during the benchmark (before "
                f"the after run of {', '.join(changed)}): its runs did not all run the same code"
            )
        stop_load(load_processes)
        left = leftovers(set())
        if left:
            print(f"\nwarning: processes left behind: {left}", file=sys.stderr)
    ours = marked(token)
    new = (pgrep("chromium") | pgrep("chromedriver")) - chromium_at_start
    print(
        f"\nclean-up: {len(setup.killed)} process(es) of ours had to be killed after their run"
        + (f" ({'; '.join(setup.killed)[:600]})" if setup.killed else "")
        + f"; carrying the marker now: {len(ours)}; Chromium/chromedriver processes that were "
        f"not there at start: {len(new)} (the machine's other jobs may start some)"
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("\ninterrupted: the worktree is removed and no process of the runs is left")
