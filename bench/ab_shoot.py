"""Benchmark: `distshot shoot` of two source trees side by side (A = a git revision, B = the
working tree), for the per-shot cost of a change.

This machine's speed drifts by ±30% over minutes, so a figure taken now cannot be compared
with one taken an hour ago. Here both sides run in the same session, interleaved in ABBA
order (round 1 A then B, round 2 B then A, ...), on the same corpus as bench/throughput.py
(bench/corpus.py: Debian's python3.11-doc served on 127.0.0.1), with the same options:
1280x800 PNG, ``--concurrency 2``, the egress guard on (the corpus admitted with
DISTSHOT_ALLOW_NETWORKS=127.0.0.0/8; ``--allow-private`` turns the guard off instead).

The sides. A is ``--base REV`` (default HEAD) of this repository, checked out with
``git worktree add --detach`` into a temporary folder and removed at the end (also on Ctrl-C
or SIGTERM). B is this working tree, uncommitted changes included (other people may edit it
during a run: the script warns if B's distshot/ files changed between B's rounds). Both run
with the same interpreter (this one) as ``python -m distshot.cli shoot``, in a scratch folder
(no distshot.toml, nothing importable there), with PYTHONPATH = the side's source root plus
the side's copy of examples/distshot-engine-example: the venv installs that example engine
plugin editable from B's tree, every distshot process loads it through its entry point, and
B's copy may not import with A's distshot. PYTHONPATH comes before the venv's editable
finders. At start the script runs `distshot engines` (every engine and plugin loaded) for
each side and stops unless ``distshot.__file__`` and every distshot module and plugin it
imported are files of that side's tree. Each side then shoots the 3 synthetic pages once,
untimed (bytecode compiled, Chromium's files in the page cache; a side that cannot shoot
stops the benchmark before the rounds).

Figures per run (one `shoot` process, start to end):
  CPU ms/shot  user + sys CPU time of the whole process tree / shots: Python, Playwright's
               node driver, Chromium's browser, zygotes, renderers, GPU and utility
               processes; start-up and shutdown included (so with few pages the fixed cost of
               launching Python and Chromium weighs more per shot)
  shots/s      (images - 1) / (last image written - first image written), from the files'
               modification times, as throughput.py: leaves out start-up and shutdown
  wall         the `shoot` process's life in seconds

How CPU is measured: resource.getrusage(RUSAGE_CHILDREN) before starting `shoot` and after
reaping it and its orphans. The kernel adds a process's CPU, and that of the descendants it
reaped, to its parent's RUSAGE_CHILDREN when the parent reaps it. That alone is not the whole
tree: Chromium's two zygotes (the parents of the renderers and of the GPU process) outlive the
browser process by a moment, are re-parented to init and reaped there, so their CPU and their
renderers' never reaches `shoot` (nor do Chromium's two crashpad handlers, which detach at
start). Measured here (6 pages, both sides): plain getrusage gave 0.54-0.56x the CPU sampled
from /proc. So this script makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER): the
orphans are re-parented to it, and after `shoot` exits it waits for them (SIGKILL after 30 s)
and reaps them; they were 4 per run (2 zygotes, 2 crashpad handlers) and 48% of the tree's
CPU. ``--check-cpu`` cross-checks: it also samples utime + stime of every process of the tree
from /proc/PID/stat every 0.2 s (the largest value seen per process, summed; a lower bound,
as each process's last < 0.2 s and processes living < 0.2 s are missed) and shows the
orphans' share; getrusage with the orphans reaped gave 1.04-1.05x the sampled sum on both sides.
No other child of this script ends during a run (the corpus server runs to the end).

Checks: a run counts only if its folder holds exactly one 1280x800 PNG per URL and a manifest
whose every line is ok (throughput.py's ``verify``); a failed run is marked and left out of
the medians and of the paired ratio. ``--options`` must keep the output 1280x800 PNG (it
goes into a .jsonl input, one object per URL, so every shot gets it on both sides).

The table gives every round's figures and the medians per side, then B/A: the ratio of the
medians, and the median of the per-round ratios (A and B of a round ran back to back, so the
paired ratio drifts less).

    .venv/bin/python bench/corpus.py --install                # once: the corpus pages
    .venv/bin/python bench/ab_shoot.py                        # HEAD vs working tree, 60 pages
    .venv/bin/python bench/ab_shoot.py --pages 6 --rounds 1   # a quick check
    .venv/bin/python bench/ab_shoot.py --base HEAD~3 --rounds 6
    .venv/bin/python bench/ab_shoot.py --options '{"color_scheme": "dark"}'
    .venv/bin/python bench/ab_shoot.py --pages 6 --rounds 1 --check-cpu   # getrusage vs /proc
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from corpus import DEFAULT_PAGES, Corpus, write_urls
from machine import describe, load
from throughput import BROWSER, Run, Setup, leftovers, steady_rate, verify

from distshot.engines.chromium import kill_process_tree

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
#: Engine plugins the venv installs from this tree, as folders of a side's tree.
PLUGIN_DIRS = ("examples/distshot-engine-example",)


@dataclass
class Side:
    """One source tree: where it is, what it is, and its runs."""

    name: str
    root: Path
    label: str
    runs: list[Measure] = field(default_factory=list)


@dataclass
class Measure:
    """One `shoot` run's figures; ``problems`` empty if it counts."""

    round: int
    position: int  # 1: ran first in its round, 2: second
    shots: int
    cpu: Cpu
    wall: float
    rate: float
    load: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def cpu_ms(self) -> float:
        return (self.cpu.user + self.cpu.sys) * 1000 / self.shots

    @property
    def user_ms(self) -> float:
        return self.cpu.user * 1000 / self.shots

    @property
    def sys_ms(self) -> float:
        return self.cpu.sys * 1000 / self.shots

    @property
    def sampled_ms(self) -> float | None:
        return None if self.cpu.sampled is None else self.cpu.sampled * 1000 / self.shots

    @property
    def orphaned_share(self) -> float | None:
        total = self.cpu.user + self.cpu.sys
        return self.cpu.orphaned / total if total else None


# -- git -----------------------------------------------------------------------------------


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", "--no-optional-locks", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def working_tree_label() -> str:
    """``git describe --dirty`` (by hand, read-only: describe --dirty refreshes the index)
    and the short commit of this working tree."""
    described = git("describe", "--always", "--tags")
    changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "distshot").splitlines()
    dirty = "-dirty" if changed else ""
    extra = f": {len(changed)} files changed" if changed else ""
    if untracked:
        extra += f", {len(untracked)} untracked under distshot/"
    return f"working tree {described}{dirty} (HEAD {git('rev-parse', '--short', 'HEAD')}{extra})"


def source_fingerprint(root: Path) -> str:
    """Names, sizes and mtimes of the package's files: tells whether B changed mid-run (other
    people edit this tree while the benchmark runs)."""
    digest = hashlib.sha1()
    for path in sorted((root / "distshot").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            stat = path.stat()
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@contextlib.contextmanager
def worktree(rev: str, parent: Path) -> Iterator[Path]:
    path = parent / f"a-{rev[:12]}"
    git("worktree", "add", "--detach", str(path), rev)
    try:
        yield path
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "remove", "--force", str(path))
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "prune")


# -- running one side ----------------------------------------------------------------------


def side_env(side: Side, env: dict[str, str]) -> dict[str, str]:
    """``env`` with PYTHONPATH = the side's source root and its copy of the example engine
    plugin: the venv installs that plugin (editable, from this tree) with an entry point that
    every distshot process loads, and B's copy does not import with an older distshot."""
    paths = [side.root, *(side.root / p for p in PLUGIN_DIRS if (side.root / p).is_dir())]
    return {**env, "PYTHONPATH": os.pathsep.join(map(str, paths))}


#: Runs `distshot engines` (which loads every engine and plugin), then lists the files of
#: the distshot modules it imported.
_IMPORTS = """
import json, runpy, sys
sys.argv = ["distshot", "engines"]
try:
    runpy.run_module("distshot.cli", run_name="__main__")
except SystemExit as exc:
    if exc.code:
        raise
print(json.dumps({name: getattr(module, "__file__", None) for name, module in sys.modules.items()
                  if name.split(".")[0].startswith("distshot")}))
"""


def check_imports(side: Side, env: dict[str, str], cwd: Path) -> str:
    """Where ``import distshot`` resolves for this side; exits if it, or any distshot module
    or plugin `distshot engines` imports, is not from the side's tree."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS], env=env, cwd=cwd, capture_output=True, text=True
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["?"]
        raise SystemExit(f"side {side.name}: `distshot engines` failed: {lines[-1]}")
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    expected = side.root / "distshot" / "__init__.py"
    found = modules.get("distshot") or "nothing"
    if Path(found).resolve() != expected.resolve():
        raise SystemExit(f"side {side.name}: import distshot gives {found}, not {expected}")
    root = side.root.resolve()
    strays = [
        f"{name} ({file})"
        for name, file in sorted(modules.items())
        if file and not Path(file).resolve().is_relative_to(root)
    ]
    if strays:
        raise SystemExit(f"side {side.name}: modules from outside {root}: {', '.join(strays)}")
    return found


class TreeSampler(threading.Thread):
    """utime + stime of every process under ``root`` from /proc, every ``interval``
    seconds; the largest value per process (pid, start time), summed at the end."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.ticks: dict[tuple[int, int], int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval)

    def sample(self) -> None:
        stats: dict[int, tuple[int, int, int]] = {}  # pid: (ppid, ticks, start)
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stream:
                    fields = stream.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            pid, ppid = int(entry.name), int(fields[1])
            stats[pid] = (ppid, int(fields[11]) + int(fields[12]), int(fields[19]))
            children.setdefault(ppid, []).append(pid)
        tree, todo = set(), [self.root]
        while todo:
            pid = todo.pop()
            if pid in stats and pid not in tree:
                tree.add(pid)
                todo.extend(children.get(pid, ()))
        for pid, (_, ticks, start) in stats.items():
            key = (pid, start)
            if pid in tree or key in self.ticks:  # known ones too, if orphaned since
                self.ticks[key] = max(self.ticks.get(key, 0), ticks)

    def stop(self) -> float:
        self.done.set()
        self.join()
        return sum(self.ticks.values()) / CLOCK_TICKS


@dataclass
class Cpu:
    """CPU seconds of one run's process tree."""

    user: float = 0.0
    sys: float = 0.0
    orphaned: float = 0.0  # of user + sys: processes reaped by this script as subreaper
    orphans: int = 0
    sampled: float | None = None  # summed from /proc (--check-cpu)


def become_subreaper() -> None:
    """Orphaned descendants (Chromium's zygotes, which outlive the browser) are re-parented
    to this process instead of init, so that reaping them brings their CPU to
    RUSAGE_CHILDREN."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def children() -> set[int]:
    """This process's children, zombies included."""
    me, found = os.getpid(), set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1]
                if int(stat.split()[1]) == me:
                    found.add(int(entry.name))
    return found


def reap_orphans(keep: set[int], grace: float = 30) -> int:
    """Wait for and reap the children this process gained as subreaper (all but ``keep``);
    SIGKILL those still alive after ``grace`` seconds. How many were reaped."""
    deadline, reaped = time.monotonic() + grace, 0
    while orphans := children() - keep:
        for pid in orphans:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    reaped += 1
        if time.monotonic() > deadline:
            for pid in orphans:
                kill_process_tree(pid)
        time.sleep(0.05)
    return reaped


def shoot(side: Side, setup: Setup, urls_file: Path, out: Path, check_cpu: bool) -> tuple[Run, Cpu]:
    """One `distshot shoot` run and the CPU of its whole process tree: the `shoot` process
    and its reaped descendants from RUSAGE_CHILDREN, then the orphans it left, reaped here."""
    command = [
        sys.executable,
        "-m",
        "distshot.cli",
        "shoot",
        str(urls_file),
        "-o",
        str(out),
        *("--width", str(setup.width), "--height", str(setup.height), "--format", "png"),
        *("--concurrency", str(setup.concurrency)),
    ]
    keep = children()  # the corpus server
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=side_env(side, setup.env),
        cwd=setup.work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C reaches this script only; it stops the tree
    )
    sampler = TreeSampler(process.pid) if check_cpu else None
    if sampler is not None:
        sampler.start()
    try:
        _, stderr = process.communicate(timeout=1800)
    except BaseException:  # Ctrl-C, timeout: no process of the run may outlive it
        kill_process_tree(process.pid)
        process.kill()
        process.communicate()
        reap_orphans(keep, grace=0)
        raise
    finally:
        sampled = sampler.stop() if sampler is not None else None
    wall = time.perf_counter() - started
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    orphans = reap_orphans(keep)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = Cpu(
        user=after.ru_utime - before.ru_utime,
        sys=after.ru_stime - before.ru_stime,
        orphaned=(after.ru_utime + after.ru_stime) - (reaped.ru_utime + reaped.ru_stime),
        orphans=orphans,
        sampled=sampled,
    )
    errors = []
    if process.returncode != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        errors.append(f"exit {process.returncode}: {(lines or [''])[-1][:300]}")
    return Run(wall, errors=errors), cpu


def write_inputs(work: Path, name: str, urls: list[str], options: dict[str, object] | None) -> Path:
    if options is None:
        return write_urls(work / f"{name}.txt", urls)
    path = work / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"url": url, **options}) + "\n" for url in urls))
    return path


# -- the report ----------------------------------------------------------------------------


def failure(problems: list[str]) -> str:
    """What went wrong, the manifest's reason (the most telling) first."""
    text = "; ".join(sorted(problems, key=lambda p: not p.startswith("manifest")))
    return "FAILED: " + text.replace("|", "/")[:240]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def side_table(side: Side, check_cpu: bool) -> list[str]:
    extra = " orphans' CPU | sampled ms/shot | CPU / sampled |" if check_cpu else ""
    lines = [
        f"\n**{side.name}**: {side.label}\n",
        f"| round | order | CPU ms/shot | user | sys |{extra} shots/s | wall s | load at start "
        "| check |",
        "|---|---|---|---|---|" + ("---|---|---|" if check_cpu else "") + "---|---|---|---|",
    ]
    for m in side.runs:
        cells = [str(m.round), "1st" if m.position == 1 else "2nd"]
        cells += [num(m.cpu_ms), num(m.user_ms), num(m.sys_ms)]
        if check_cpu:
            share = None if m.orphaned_share is None else m.orphaned_share * 100
            ratio = m.cpu_ms / m.sampled_ms if m.sampled_ms else None
            cells += [num(share, 0) + "%", num(m.sampled_ms), num(ratio, 2)]
        cells += [num(m.rate, 2), num(m.wall), m.load, "ok" if m.ok else failure(m.problems)]
        lines.append("| " + " | ".join(cells) + " |")
    ok = [m for m in side.runs if m.ok]
    cells = ["median", ""]
    cells += [num(median([m.cpu_ms for m in ok])), num(median([m.user_ms for m in ok]))]
    cells += [num(median([m.sys_ms for m in ok]))]
    if check_cpu:
        shares = [m.orphaned_share * 100 for m in ok if m.orphaned_share is not None]
        sampled = [m.sampled_ms for m in ok if m.sampled_ms]
        ratios = [m.cpu_ms / m.sampled_ms for m in ok if m.sampled_ms]
        cells += [num(median(shares), 0) + "%", num(median(sampled)), num(median(ratios), 2)]
    cells += [num(median([m.rate for m in ok]), 2), num(median([m.wall for m in ok])), ""]
    cells.append(f"{len(ok)}/{len(side.runs)} ok")
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def comparison(a: Side, b: Side) -> list[str]:
    lines = [
        "\n| figure | A median | B median | B/A of medians | B/A paired (median of rounds) |",
        "|---|---|---|---|---|",
    ]
    for label, attribute, digits in (
        ("CPU ms/shot (user+sys)", "cpu_ms", 1),
        ("user CPU ms/shot", "user_ms", 1),
        ("sys CPU ms/shot", "sys_ms", 1),
        ("shots/s", "rate", 2),
        ("wall s", "wall", 1),
    ):
        in_a = {m.round: getattr(m, attribute) for m in a.runs if m.ok}
        in_b = {m.round: getattr(m, attribute) for m in b.runs if m.ok}
        ma, mb = median(list(in_a.values())), median(list(in_b.values()))
        ratio = mb / ma if ma and mb else None
        pairs = [in_b[r] / in_a[r] for r in in_a if r in in_b and in_a[r]]
        lines.append(
            f"| {label} | {num(ma, digits)} | {num(mb, digits)} | {num(ratio, 3)} | "
            f"{num(median(pairs), 3)} ({len(pairs)} rounds) |"
        )
    return lines


# -- the run -------------------------------------------------------------------------------


def parse_options(text: str | None) -> dict[str, object] | None:
    if text is None:
        return None
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--options is not JSON: {exc}") from None
    if not isinstance(options, dict) or "url" in options:
        raise SystemExit("--options must be a JSON object of capture options (no 'url')")
    return options


def _terminate(signum: int, frame: object) -> None:
    print(f"\nstopped by signal {signum}: cleaning up", file=sys.stderr)
    raise SystemExit(128 + signum)  # unwinds: the run's tree is killed, the worktree removed


def resolve_base(rev: str) -> tuple[str, str]:
    """The commit a --base names, and a label for the tables (exits with the reason if it
    names none)."""
    try:
        commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"--base {rev}: {exc.stderr.strip()}") from None
    subject = git("log", "-1", "--format=%s", commit)
    return commit, f"{rev} = {commit[:10]} ({subject[:70]}{'...' if len(subject) > 70 else ''})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="HEAD", help="git revision of side A [HEAD]")
    parser.add_argument("--pages", type=int, default=DEFAULT_PAGES, help="corpus pages [60]")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of one A and one B [4]")
    parser.add_argument("--concurrency", type=int, default=2, help="jobs in flight [2]")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument(
        "--options", metavar="JSON", help="extra capture options for both sides, a JSON object"
    )
    parser.add_argument(
        "--allow-private", action="store_true", help="distshot without its egress guard"
    )
    parser.add_argument(
        "--check-cpu", action="store_true", help="also sample the tree's CPU from /proc"
    )
    parser.add_argument("--keep", type=Path, help="keep the images under this folder")
    args = parser.parse_args()
    options = parse_options(args.options)
    signal.signal(signal.SIGTERM, _terminate)
    become_subreaper()

    base, a_label = resolve_base(args.base)

    print("\n".join(describe(BROWSER)))
    print(f"- interpreter {sys.executable} for both sides")
    with contextlib.ExitStack() as stack:
        stack.callback(reap_orphans, set(), 5)  # last: whatever of ours is still alive
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="distshot-ab-")))
        runs_dir = work / "runs"
        (runs_dir / "tmp").mkdir(parents=True)
        a = Side("A", stack.enter_context(worktree(base, work)), a_label)
        b = Side("B", ROOT, working_tree_label())
        corpus = stack.enter_context(Corpus())
        urls = corpus.urls(args.pages)
        policy = {"DISTSHOT_ALLOW_PRIVATE": "1"} if args.allow_private else {}
        policy = policy or {"DISTSHOT_ALLOW_NETWORKS": "127.0.0.0/8"}
        setup = Setup(
            urls=urls,
            urls_file=write_inputs(runs_dir, "urls", urls, options),
            warmup_file=write_inputs(runs_dir, "warmup", corpus.synthetic_urls(), options),
            work=runs_dir,
            concurrency=args.concurrency,
            width=args.width,
            height=args.height,
            threads=0,
            # TMPDIR: what Playwright and Chromium leave (a killed run) goes with the folder
            env={**os.environ, **policy, "TMPDIR": str(runs_dir / "tmp")},
        )
        for side in (a, b):
            found = check_imports(side, side_env(side, setup.env), runs_dir)
            print(f"- {side.name}: {side.label}; import distshot -> {found}")
        print(
            f"\n{len(urls)} shots per run ({args.pages} corpus pages), {args.width}x{args.height}"
            f" PNG, {args.concurrency} in flight, {args.rounds} rounds ABBA; corpus "
            f"{corpus.base}; distshot {'without' if args.allow_private else 'with'} its egress "
            f"guard; options {json.dumps(options) if options else 'none'}\n",
            flush=True,
        )
        for side in (a, b):
            out = runs_dir / f"warmup-{side.name}"
            run, cpu = shoot(side, setup, setup.warmup_file, out, check_cpu=False)
            warmup = dataclasses.replace(setup, urls=corpus.synthetic_urls())
            _, problems = verify(out, warmup, run)
            if problems:
                raise SystemExit(f"side {side.name}: the warm-up {failure(problems)}")
            print(
                f"  warm-up {side.name}: 3 synthetic shots, "
                f"{cpu.user + cpu.sys:.1f} s CPU, {run.wall:.1f} s",
                flush=True,
            )
            shutil.rmtree(out, ignore_errors=True)

        fingerprint = source_fingerprint(ROOT)
        changed: list[int] = []
        for round_number in range(1, args.rounds + 1):
            order = (a, b) if round_number % 2 else (b, a)
            for position, side in enumerate(order, start=1):
                out = runs_dir / f"out-{side.name}-{round_number}"
                out.mkdir()
                if side is b and source_fingerprint(ROOT) != fingerprint:
                    changed.append(round_number)
                    fingerprint = source_fingerprint(ROOT)
                started_load = load().split(",")[0]
                try:
                    run, cpu = shoot(side, setup, setup.urls_file, out, args.check_cpu)
                except subprocess.TimeoutExpired as exc:
                    run, cpu = Run(exc.timeout, errors=["timed out"]), Cpu()
                images, problems = verify(out, setup, run)
                if not (out / "manifest.jsonl").exists():
                    problems.append("no manifest")
                measure = Measure(
                    round=round_number,
                    position=position,
                    shots=len(urls),
                    cpu=cpu,
                    wall=run.wall,
                    rate=steady_rate(images) if not problems else 0.0,
                    load=started_load,
                    problems=problems,
                )
                side.runs.append(measure)
                status = "ok" if measure.ok else failure(problems)
                print(
                    f"  round {round_number} {side.name}: {measure.cpu_ms:7.1f} CPU ms/shot, "
                    f"{measure.rate:5.2f} shots/s, {run.wall:5.1f} s wall; "
                    f"{cpu.orphans} orphans reaped, {cpu.orphaned:.2f} s of the CPU"
                    + (f"; sampled {measure.sampled_ms:.1f} ms/shot" if cpu.sampled else "")
                    + f"  [load {load()}] {status}",
                    flush=True,
                )
                if args.keep:
                    shutil.copytree(out, args.keep / out.name, dirs_exist_ok=True)
                shutil.rmtree(out, ignore_errors=True)

        print("\n".join(side_table(a, args.check_cpu)))
        print("\n".join(side_table(b, args.check_cpu)))
        print("\n".join(comparison(a, b)))
        if changed:
            print(
                f"\nwarning: B's distshot/ files changed during the benchmark (before round "
                f"{', '.join(map(str, changed))}): B's rounds did not all run the same code",
            )
        server = corpus.process.pid if corpus.process else 0
        left = leftovers({server})
        if left:
            print(f"\nwarning: processes left behind: {left}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("\ninterrupted: the worktree is removed and no process of the runs is left")
