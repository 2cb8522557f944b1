"""The ``distshot`` command. The only module that turns errors into messages and exit codes.

Exit status: 0 every request ok; 1 one or more failed or rejected; 2 usage or configuration
error (one line on stderr, no traceback); 130 interrupted (Ctrl-C or SIGTERM). ``diff``: 0
the two batches show the same pages, 1 anything changed, is new, gone or failed.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import click

from . import __version__
from .core.config import Settings, load_settings
from .core.errors import ConfigError, DistshotError
from .core.inputs import RequestReader
from .core.manifest import ManifestWriter
from .core.options import SPECS, Choice, Flag, Int, Number, OptionSpec
from .core.secretvalues import is_secret_ref
from .dispatch.dispatcher import Counts, summary_line

F = TypeVar("F", bound=Callable[..., Any])
EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"distshot: error: {message}", err=True)
    sys.exit(code)


def _handle_errors(func: F) -> F:
    """Every error becomes one actionable line; DISTSHOT_DEBUG=1 shows the traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DistshotError as exc:
            _fail(exc.message)
        except click.ClickException as exc:  # raised in a command's body, after parsing
            _fail(exc.format_message())
        except KeyboardInterrupt:
            click.echo("\ndistshot: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except OSError as exc:
            if os.environ.get("DISTSHOT_DEBUG"):
                raise
            _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        except Exception as exc:
            if os.environ.get("DISTSHOT_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (set DISTSHOT_DEBUG=1 for details)")

    return wrapper  # type: ignore[return-value]


def _terminate_on_sigterm() -> None:
    """SIGTERM takes the same orderly path as Ctrl-C: stop jobs, close browsers."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _flag_for(spec: OptionSpec) -> Callable[[F], F]:
    """The click option for one capture option, from its declaration."""
    help_text = spec.help + (f" [{spec.default_text}]" if spec.default_text else "")
    kind = spec.kind
    if isinstance(kind, Flag):
        flag = spec.cli_flag
        return click.option(f"{flag}/--no-{flag[2:]}", spec.name, default=None, help=help_text)
    kwargs: dict[str, Any] = {"help": help_text, "default": None}
    if isinstance(kind, Choice):
        names = {c.lower(): c for c in kind.choices}
        extra = [alias for alias, _ in kind.aliases if alias.lower() not in names]
        kwargs["type"] = click.Choice([*kind.choices, *extra], case_sensitive=False)
    elif isinstance(kind, Int):
        kwargs["type"] = int
    elif isinstance(kind, Number):
        kwargs["type"] = float
    if kind.multiple:
        kwargs.update(multiple=True, default=(), help=f"{help_text} Repeatable.")
    if kind.from_file:
        kwargs.update(callback=_read_at_file, metavar="CODE|@FILE")
    if kind.reads_file:
        kwargs.update(callback=_read_file, metavar="FILE|@secrets/NAME")
    return click.option(spec.cli_flag, spec.name, **kwargs)


def _read_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A FILE's contents (a cookie jar, a storage state); ``@secrets/NAME`` stays a name for
    the worker to resolve. The error names the file, never a line of it."""
    if value is None or is_secret_ref(value):
        return value
    path = Path(value).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.__class__.__name__}") from None


def _read_at_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``@path`` is the file's contents (a script or a stylesheet)."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}") from None


def capture_options(func: F) -> F:
    """Capture option flags, one per declared option; they become every request's defaults."""
    for spec in reversed(list(SPECS.values())):
        func = _flag_for(spec)(func)
    func = click.option(
        "--default-scheme",
        type=click.Choice(["https", "http"]),
        default="https",
        show_default=True,
        help="Scheme for input lines that are a bare host name (example.com).",
    )(func)
    return click.option(
        "--allow-private",
        is_flag=True,
        default=None,
        help="Allow loopback and private addresses.",
    )(func)


def link_options(func: F) -> F:
    """Flags folded into the storage URL, which is what travels to the workers."""
    func = click.option(
        "--link-ttl",
        metavar="DURATION",
        help="How long presigned s3 links last, e.g. 12h [7d, the most S3 allows].",
    )(func)
    func = click.option(
        "--public-base-url",
        metavar="URL",
        help="Links are this base plus the object key, not presigned URLs.",
    )(func)
    return func


def cache_option(func: F) -> F:
    return click.option(
        "--cache-ttl",
        metavar="DURATION",
        help="Answer from storage when the same URL and options were stored within "
        "DURATION (90s, 30m, 12h, 7d) [off].",
    )(func)


def _check_storage(url: str) -> None:
    """Open the storage once and check it: a missing bucket or folder, bad credentials or
    an unreachable endpoint is one line and exit status 2 now, not one failure per URL."""
    from .plugins.manager import get_registry

    storage = get_registry().create_storage(url)
    try:
        storage.check()
    finally:
        storage.close()


def _capture_overrides(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The capture options given on the command line (None or empty: not given)."""
    overrides = {}
    for name, spec in SPECS.items():
        value = kwargs.pop(name)
        if spec.kind.multiple:
            value = list(value) or None
        overrides[name] = value
    return overrides


def new_batch_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class ProgressLine:
    """A one-line progress bar on stderr: redrawn in place on a terminal, every few
    seconds otherwise (logs and CI), then replaced by the summary."""

    def __init__(self, total_hint: int | None = None, interval: float = 5.0) -> None:
        self.tty = sys.stderr.isatty()
        self.total = total_hint
        self.interval = 0.1 if self.tty else interval
        self._last = 0.0

    def __call__(self, counts: Counts) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        text = self.render(counts)
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def render(self, counts: Counts) -> str:
        done = counts.done
        if self.total:
            width = 24
            filled = int(width * min(done, self.total) / self.total)
            bar = "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{self.total}"
        else:
            bar = f"{done} done"
        return (
            f"{bar}  ok {counts.ok}  failed {counts.failed}  rejected {counts.rejected}"
            f"  in flight {counts.in_flight}"
        )

    def finish(self, summary: str) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[2K")
        sys.stderr.write(summary + "\n")
        sys.stderr.flush()


def _count_lines(path: str) -> int | None:
    """Input size for the progress bar; streamed, and skipped for stdin."""
    if path == "-":
        return None
    with open(path, "rb") as stream:
        return sum(1 for line in stream if line.strip() and not line.lstrip().startswith(b"#"))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="distshot")
def main() -> None:
    """Screenshots of many URLs, on one laptop or a fleet."""
    logging.basicConfig(
        level=os.environ.get("DISTSHOT_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Dramatiq logs every retry, and every job interrupted by Ctrl-C as an unhandled
    # exception; the manifest and the summary tell the user what happened instead.
    logging.getLogger("dramatiq").setLevel(
        os.environ.get("DISTSHOT_DRAMATIQ_LOG_LEVEL", "CRITICAL").upper()
    )
    # pika logs each failed connection attempt with a traceback; the CLI says it in one line.
    logging.getLogger("pika").setLevel(
        os.environ.get("DISTSHOT_PIKA_LOG_LEVEL", "CRITICAL").upper()
    )


@main.command()
@click.argument("urls", type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "-o",
    "--output",
    "output_dir",
    default="shots",
    show_default=True,
    help="Folder for images and the manifest.",
)
@click.option("--engine", help="Engine name (see `distshot engines`) [playwright].")
@click.option("--concurrency", type=int, help="Jobs in flight [2 per core].")
@click.option(
    "--storage", help="Storage URL instead of the output folder (file:///dir, s3://bucket/prefix)."
)
@click.option("--manifest", "manifest_path", help="Manifest path [OUTPUT/manifest.jsonl].")
@click.option(
    "--input-format",
    type=click.Choice(["txt", "csv", "jsonl"]),
    help="Override detection by extension.",
)
@click.option("--config", "config_file", help="Settings file [./distshot.toml].")
@cache_option
@link_options
@capture_options
@_handle_errors
def shoot(
    urls: str,
    output_dir: str,
    engine: str | None,
    concurrency: int | None,
    storage: str | None,
    manifest_path: str | None,
    input_format: str | None,
    config_file: str | None,
    cache_ttl: str | None,
    link_ttl: str | None,
    public_base_url: str | None,
    **kwargs: Any,
) -> None:
    """Capture every URL in URLS (.txt, .csv, .jsonl or - for stdin) in this process."""
    from .dispatch.embedded import EmbeddedSettings, run_embedded
    from .plugins.manager import get_registry

    settings = _batch_settings(
        urls,
        config_file,
        kwargs,
        engine=engine,
        concurrency=concurrency,
        storage=storage,
        cache_ttl=cache_ttl,
        link_ttl=link_ttl,
        public_base_url=public_base_url,
    )
    registry = get_registry()
    registry.engine_entry(settings.engine)
    storage_url = settings.storage_url(output_dir)
    assert storage_url is not None
    _check_storage(storage_url)  # before the manifest: a run that cannot start leaves none

    batch = new_batch_id()
    manifest_file = Path(manifest_path or Path(output_dir) / "manifest.jsonl")
    manifest_file.parent.mkdir(parents=True, exist_ok=True)
    manifest_file.unlink(missing_ok=True)  # a shoot run describes itself only
    reader = _reader(batch, settings, storage_url, kwargs.pop("default_scheme"))
    progress = ProgressLine(_count_lines(urls))
    _terminate_on_sigterm()
    try:
        with ManifestWriter(manifest_file) as manifest:
            counts = run_embedded(
                reader.read_path(urls, input_format),
                batch=batch,
                manifest=manifest,
                settings=EmbeddedSettings(
                    engine=settings.engine,
                    storage=storage_url,
                    concurrency=settings.concurrency,
                    max_attempts=settings.max_attempts,
                    engine_config=settings.engine_config(),
                    hash_images=settings.phash,
                ),
                on_progress=progress,
            )
    except ConfigError:
        # The engine could not start: the run never began, so it leaves no manifest.
        if manifest_file.exists() and manifest_file.stat().st_size == 0:
            manifest_file.unlink()
        raise
    progress.finish(summary_line(counts, str(manifest_file)))
    sys.exit(EXIT_OK if counts.all_ok else EXIT_FAILURES)


def _batch_settings(
    urls: str, config_file: str | None, kwargs: dict[str, Any], **overrides: Any
) -> Settings:
    """The settings of a batch command (shoot, dispatch): its own flags (``overrides``),
    ``--allow-private`` and the capture options (taken out of ``kwargs``), over the
    environment and the config file; and URLS must exist (``-`` is stdin)."""
    overrides["allow_private"] = kwargs.pop("allow_private")
    settings = load_settings(
        config_file, overrides=overrides, capture_overrides=_capture_overrides(kwargs)
    )
    if urls != "-" and not Path(urls).is_file():
        raise click.BadParameter(f"no such file: {urls}", param_hint="URLS")
    return settings


def _reader(
    batch: str, settings: Settings, storage_url: str | None, default_scheme: str
) -> RequestReader:
    return RequestReader(
        batch,
        settings.capture,
        storage=storage_url,
        allow_private=settings.allow_private,
        allow_networks=settings.allow_networks,
        cache_ttl=settings.cache_ttl,
        default_scheme=default_scheme,
    )


@main.command()
@click.argument("urls", type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "--broker", "broker_url", help="amqp://user:pass@host:5672/vhost [DISTSHOT_BROKER_URL]."
)
@click.option(
    "--storage", help="Storage URL the workers write to (file:///shared/dir, s3://bucket/prefix)."
)
@click.option("--batch", help="Batch id (letters, digits, - and _) [a new one].")
@click.option(
    "--resume",
    "resume_batch",
    help="Resume batch ID after a crash: collect its replies, send the rest.",
)
@click.option("--manifest", "manifest_path", help="Manifest path [BATCH.jsonl].")
@click.option("--window", type=int, help="Requests in flight at most [200].")
@click.option(
    "--wait-timeout",
    type=float,
    help="Give up on unanswered requests after S seconds without any reply [600].",
)
@click.option("--engine", help="Default engine for requests that name none [playwright].")
@click.option(
    "--input-format",
    type=click.Choice(["txt", "csv", "jsonl"]),
    help="Override detection by extension.",
)
@click.option("--config", "config_file", help="Settings file [./distshot.toml].")
@cache_option
@link_options
@capture_options
@_handle_errors
def dispatch(
    urls: str,
    broker_url: str | None,
    storage: str | None,
    batch: str | None,
    resume_batch: str | None,
    manifest_path: str | None,
    window: int | None,
    wait_timeout: float | None,
    engine: str | None,
    input_format: str | None,
    config_file: str | None,
    cache_ttl: str | None,
    link_ttl: str | None,
    public_base_url: str | None,
    **kwargs: Any,
) -> None:
    """Send every URL in URLS to the workers through RabbitMQ and record their replies."""
    from .dispatch.distributed import DispatchJob, run_dispatch

    settings = _batch_settings(
        urls,
        config_file,
        kwargs,
        broker_url=broker_url,
        storage=storage,
        window=window,
        wait_timeout=wait_timeout,
        engine=engine,
        cache_ttl=cache_ttl,
        link_ttl=link_ttl,
        public_base_url=public_base_url,
    )
    if batch and resume_batch:
        raise click.UsageError("--batch and --resume are exclusive: --resume names the batch")
    batch_id = resume_batch or batch or new_batch_id()
    manifest_file = Path(manifest_path or f"{batch_id}.jsonl")
    storage_url = settings.storage_url()
    if storage_url is not None:
        _check_storage(storage_url)
    elif link_ttl or public_base_url:
        # They travel inside the storage URL; without one they would be silently ignored.
        raise click.UsageError("--link-ttl and --public-base-url need --storage")
    reader = _reader(batch_id, settings, storage_url, kwargs.pop("default_scheme"))
    progress = ProgressLine(_count_lines(urls))
    _terminate_on_sigterm()
    counts = run_dispatch(
        DispatchJob(
            items=reader.read_path(urls, input_format),
            batch=batch_id,
            manifest=manifest_file,
            resume=resume_batch is not None,
            settings=settings,
        ),
        on_progress=progress,
    )
    progress.finish(summary_line(counts, str(manifest_file)))
    sys.exit(EXIT_OK if counts.all_ok else EXIT_FAILURES)


@main.command()
@click.option(
    "--broker", "broker_url", help="amqp://user:pass@host:5672/vhost [DISTSHOT_BROKER_URL]."
)
@click.option("--engine", help="The engine this worker runs; it consumes queue distshot.ENGINE.")
@click.option("--storage", help="Default storage for requests that name none.")
@click.option(
    "--processes",
    type=int,
    default=1,
    show_default=True,
    help="Worker processes (one browser each).",
)
@click.option("--threads", type=int, help="Jobs in flight per process [2 per core].")
@click.option(
    "--metrics",
    help="Serve Prometheus metrics on HOST:PORT, or off [127.0.0.1:9191].",
)
@click.option("--config", "config_file", help="Settings file [./distshot.toml].")
@link_options
@_handle_errors
def worker(
    broker_url: str | None,
    engine: str | None,
    storage: str | None,
    processes: int,
    threads: int | None,
    metrics: str | None,
    config_file: str | None,
    link_ttl: str | None,
    public_base_url: str | None,
) -> None:
    """Run capture workers: Dramatiq processes consuming this engine's queue."""
    from .actors.capture import queue_for
    from .plugins.manager import get_registry

    settings = load_settings(
        config_file,
        overrides={
            "broker_url": broker_url,
            "engine": engine,
            "storage": storage,
            "concurrency": threads,
            "metrics": metrics,
            "link_ttl": link_ttl,
            "public_base_url": public_base_url,
        },
    )
    get_registry().engine_entry(settings.engine)
    if processes < 1:
        raise click.BadParameter("must be at least 1", param_hint="--processes")
    storage_url = settings.storage_url()
    if storage_url is not None:
        _check_storage(storage_url)
    from .engines.preflight import check_engine_starts

    check_engine_starts(settings.engine, settings.engine_config())
    env = dict(os.environ)
    env.update(
        {
            "DISTSHOT_BROKER_URL": settings.broker_url,
            "DISTSHOT_ENGINE": settings.engine,
            "DISTSHOT_CONCURRENCY": str(settings.concurrency),
            "DISTSHOT_QUEUE_PREFIX": settings.queue_prefix,
        }
    )
    if storage_url is not None:
        env["DISTSHOT_STORAGE"] = storage_url
    if config_file:
        env["DISTSHOT_CONFIG"] = str(Path(config_file).resolve())
    env.update(_worker_metrics_env(settings.metrics))
    command = [
        sys.executable,
        "-m",
        "dramatiq",
        "distshot.actors.rabbitmq:configure_from_environment",
        "--processes",
        str(processes),
        "--threads",
        str(settings.concurrency),
        "--queues",
        queue_for(settings.engine, settings.queue_prefix),
    ]
    sys.stdout.flush()
    # Become Dramatiq's own CLI: signals (SIGTERM for a graceful stop) reach it directly.
    os.execvpe(sys.executable, command, env)


def _worker_metrics_env(metrics: str) -> dict[str, str]:
    """Take the metrics port now (see ``listen_socket``) and say how in the environment.
    The default port taken (a second worker on this machine) is a warning: the worker runs
    without metrics. A port the user chose is theirs to fix: an error."""
    from .actors.metrics import ENV_DIR, ENV_FD, fresh_metrics_dir, listen_socket
    from .core.config import Settings, parse_listen

    listen = parse_listen(metrics)
    if listen is None:
        return {"DISTSHOT_METRICS": "off"}
    try:
        sock = listen_socket(listen)
    except OSError as exc:
        where = f"{listen[0]}:{listen[1]}"
        if metrics != Settings().metrics:
            raise click.BadParameter(
                f"cannot listen on {where}: {exc.strerror or exc}", param_hint="--metrics"
            ) from None
        click.echo(
            f"warning: metrics port {where} is taken ({exc.strerror or exc}): this worker "
            "serves no metrics; give it its own with --metrics HOST:PORT",
            err=True,
        )
        return {"DISTSHOT_METRICS": "off"}
    folder = fresh_metrics_dir(listen[1])
    # detach: the descriptor must outlive this function's socket object, through exec.
    return {"DISTSHOT_METRICS": metrics, ENV_FD: str(sock.detach()), ENV_DIR: str(folder)}


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--backend",
    type=click.Choice(["embedded", "rabbitmq"]),
    default="embedded",
    show_default=True,
    help="embedded: browsers in this process; rabbitmq: requests go to the workers' queues.",
)
@click.option(
    "--broker", "broker_url", help="amqp://... for --backend rabbitmq [DISTSHOT_BROKER_URL]."
)
@click.option(
    "--storage", help="Where images go (a folder, file:///dir, s3://bucket/prefix) [shots]."
)
@click.option("--engine", help="Engine of requests that name none [playwright].")
@click.option(
    "--concurrency", type=int, help="Captures at once (rabbitmq: sent to the fleet at once)."
)
@click.option(
    "--max-queue",
    type=int,
    default=100,
    show_default=True,
    help="Requests that may wait; beyond: 429.",
)
@click.option(
    "--max-queue-wait",
    default="auto",
    show_default=True,
    metavar="SECONDS|auto|off",
    help="A request whose client waits for the answer gets 429 when it is predicted to wait "
    "longer for a browser (auto: one capture's time, a quarter of one for a second after "
    "any 429; 0: only when a browser is free).",
)
@click.option(
    "--max-memory",
    type=int,
    metavar="MIB",
    help="429 while the service and its browsers use more [off].",
)
@click.option(
    "--capture-nice",
    type=click.IntRange(0, 19),
    default=5,
    show_default=True,
    help="embedded: the capture process and its browsers run this much nicer than the API, "
    "so that answers and 429s keep their CPU when the browsers take all of it (0: same).",
)
@click.option(
    "--state-dir",
    default=".distshot-serve",
    show_default=True,
    help="Shots, batches and webhook deliveries kept across restarts.",
)
@click.option("--api-keys", "keys_file", help="File of hashed API keys (distshot keys add).")
@click.option("--allow-private", is_flag=True, help="Capture private and loopback addresses.")
@click.option(
    "--allow-network", "allow_networks", multiple=True, metavar="CIDR", help="Admit this network."
)
@click.option(
    "--drain-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds SIGTERM waits for accepted work.",
)
@click.option("--instance", help="This instance's name (rabbitmq: its reply queue) [serve].")
@click.option(
    "--webhook-schedule",
    envvar="DISTSHOT_WEBHOOK_SCHEDULE",
    metavar="S,S,...",
    help="Seconds between webhook attempts [5,30,120,300,600,900,1800,1800: over 1 h].",
)
@click.option("--config", "config_file", help="Settings file [./distshot.toml].")
@cache_option
@_handle_errors
def serve(
    host: str,
    port: int,
    backend: str,
    broker_url: str | None,
    storage: str | None,
    engine: str | None,
    concurrency: int | None,
    max_queue: int,
    max_queue_wait: str,
    max_memory: int | None,
    capture_nice: int,
    state_dir: str,
    keys_file: str | None,
    allow_private: bool,
    allow_networks: tuple[str, ...],
    drain_timeout: float,
    instance: str | None,
    webhook_schedule: str | None,
    config_file: str | None,
    cache_ttl: str | None,
) -> None:
    """Serve the HTTP API: POST /v1/shots, GET /v1/screenshot, batches, webhooks, metrics."""
    from .server.run import serve as run_service
    from .server.service import ServeSettings

    settings = load_settings(
        config_file,
        overrides={
            "broker_url": broker_url,
            "engine": engine,
            "storage": storage,
            "concurrency": concurrency,
            "allow_private": allow_private or None,
            "allow_networks": list(allow_networks) or None,
            "cache_ttl": cache_ttl,
        },
    )
    for name, value in (("--port", port), ("--max-queue", max_queue), ("--max-memory", max_memory)):
        if value is not None and value < (0 if name == "--port" else 1):
            raise click.BadParameter("must be at least 1", param_hint=name)
    storage_url = settings.storage_url("shots")
    assert storage_url is not None
    serve_settings = ServeSettings(
        host=host,
        port=port,
        backend=backend,
        broker_url=settings.broker_url,
        storage=storage_url,
        engine=settings.engine,
        concurrency=settings.concurrency,
        max_queue=max_queue,
        max_queue_wait=_queue_wait(max_queue_wait),
        memory_limit=max_memory * 1024 * 1024 if max_memory else None,
        capture_nice=capture_nice,
        state_dir=Path(state_dir),
        keys_file=Path(keys_file) if keys_file else None,
        allow_private=settings.allow_private,
        allow_networks=settings.allow_networks,
        cache_ttl=settings.cache_ttl,
        drain_timeout=drain_timeout,
        queue_prefix=settings.queue_prefix,
        instance=instance or "serve",
        webhook_schedule=_schedule(webhook_schedule),
    )
    run_service(serve_settings, settings)


def _queue_wait(text: str) -> float | None:
    """Seconds, None for auto (one smoothed capture time), inf for off."""
    word = text.strip().lower()
    if word == "auto":
        return None
    if word == "off":
        return math.inf
    try:
        seconds = float(word)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or math.isinf(seconds):
        raise click.BadParameter(
            "must be seconds (0 or more), auto or off", param_hint="--max-queue-wait"
        )
    return seconds


def _schedule(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        schedule = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(
            "must be seconds separated by commas", param_hint="--webhook-schedule"
        ) from None
    if not schedule or any(s < 0 for s in schedule):
        raise click.BadParameter(
            "must be seconds separated by commas", param_hint="--webhook-schedule"
        )
    return schedule


@main.command()
@click.argument("manifests", nargs=-1, required=True, metavar="MANIFEST...")
@click.option(
    "-o", "--output", "output_dir", default="report", show_default=True, help="Report folder."
)
@click.option(
    "--threshold",
    type=click.IntRange(0, 64),
    default=10,
    show_default=True,
    help="Look-alike groups: pHash bits (of 64) that may differ.",
)
@click.option("--workers", type=click.IntRange(1, 64), help="Threads for images [1 per core].")
@click.option("--title", help="The page's title [distshot report].")
@_handle_errors
def report(
    manifests: tuple[str, ...],
    output_dir: str,
    threshold: int,
    workers: int | None,
    title: str | None,
) -> None:
    """Build a gallery of MANIFEST... (paths or s3:// URLs): thumbnails, search, look-alike
    groups. Open DIR/index.html in a browser; the folder needs no server."""
    from .report.build import build_report

    summary = build_report(
        manifests, Path(output_dir), threshold=threshold, workers=workers, title=title
    )
    click.echo(summary.line())


@main.command()
@click.argument("old")
@click.argument("new")
@click.option(
    "-o", "--output", "output_dir", default="diff", show_default=True, help="Report folder."
)
@click.option(
    "--threshold",
    default="0.1%",
    show_default=True,
    help="Share of pixels that may differ in an unchanged shot (0.1% or 0.001).",
)
@click.option(
    "--distance",
    type=click.IntRange(0, 64),
    default=0,
    show_default=True,
    help="pHash bits (of 64) that may differ in an unchanged shot.",
)
@click.option("--workers", type=click.IntRange(1, 64), help="Threads for images [1 per core].")
@click.option("--title", help="The page's title [distshot diff].")
@_handle_errors
def diff(
    old: str,
    new: str,
    output_dir: str,
    threshold: str,
    distance: int,
    workers: int | None,
    title: str | None,
) -> None:
    """Compare the shots of two manifests OLD and NEW (paths or s3:// URLs), URL by URL.

    Writes DIR/diff.jsonl and a page (DIR/index.html). Exit status: 0 nothing changed;
    1 something changed, is new, is gone or failed; 2 usage error."""
    from .report.diff import diff_batches, parse_ratio

    summary = diff_batches(
        old,
        new,
        Path(output_dir),
        threshold=parse_ratio(threshold),
        distance=distance,
        workers=workers,
        title=title,
    )
    click.echo(summary.line())
    sys.exit(EXIT_FAILURES if summary.differs else EXIT_OK)


@main.group()
def keys() -> None:
    """API keys of `distshot serve`: make one, sign a URL with one."""


@keys.command("add")
@click.argument("keys_file", type=click.Path(dir_okay=False))
@click.argument("key_id")
@click.option("--concurrency", type=int, help="Captures of this key at once [the service's].")
@click.option("--max-queue", type=int, help="Requests of this key that may wait [the service's].")
@_handle_errors
def keys_add(keys_file: str, key_id: str, concurrency: int | None, max_queue: int | None) -> None:
    """Make a key KEY_ID, keep its hash in KEYS_FILE, print the key (shown once)."""
    from .server.keys import add_key

    token, key = add_key(Path(keys_file), key_id, concurrency=concurrency, max_queue=max_queue)
    click.echo(token)
    click.echo(
        f"key {key.id} added to {keys_file}; its webhook secret: {key.webhook_secret}", err=True
    )


@keys.command("sign")
@click.argument("url")
@click.option(
    "--base", default="http://127.0.0.1:8000", show_default=True, help="The service's address."
)
@click.option("--key-id", required=True)
@click.option(
    "--key", "key", envvar="DISTSHOT_API_KEY", required=True, help="The key [DISTSHOT_API_KEY]."
)
@click.option(
    "--expires",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="How long the link works.",
)
@click.option("--option", "pairs", multiple=True, metavar="NAME=VALUE", help="A capture option.")
@_handle_errors
def keys_sign(
    url: str, base: str, key_id: str, key: str, expires: str, pairs: tuple[str, ...]
) -> None:
    """Print a signed GET /v1/screenshot link for URL, usable in <img src> without a key."""
    from .core.config import parse_duration
    from .server.signing import SCREENSHOT_PATH, sign_query

    params = [("url", url)]
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--option")
        params.append((name, value))
    until = int(time.time() + parse_duration(expires, "--expires"))
    query = sign_query(params, key_id=key_id, key=key, expires=until)
    click.echo(f"{base.rstrip('/')}{SCREENSHOT_PATH}?{query}")


@keys.command("gallery")
@click.argument("batch_id")
@click.option(
    "--base", default="http://127.0.0.1:8000", show_default=True, help="The service's address."
)
@click.option("--key-id", required=True)
@click.option(
    "--key", "key", envvar="DISTSHOT_API_KEY", required=True, help="The key [DISTSHOT_API_KEY]."
)
@click.option(
    "--expires",
    default="1d",
    show_default=True,
    metavar="DURATION",
    help="How long the link works.",
)
@_handle_errors
def keys_gallery(batch_id: str, base: str, key_id: str, key: str, expires: str) -> None:
    """Print a signed link to BATCH_ID's live gallery, to open in a browser without a key."""
    from .core.config import parse_duration
    from .server.signing import sign_query

    path = f"/batches/{quote(batch_id, safe='')}/"
    until = int(time.time() + parse_duration(expires, "--expires"))
    query = sign_query([], key_id=key_id, key=key, expires=until, path=path)
    click.echo(f"{base.rstrip('/')}{path}?{query}")


@main.command()
@_handle_errors
def engines() -> None:
    """List installed engines and what each one supports."""
    from .plugins.manager import get_registry

    registry = get_registry()
    for entry in sorted(registry.engines.values(), key=lambda e: e.name):
        caps = entry.capabilities
        click.echo(f"{entry.name:<12} {caps.describe()}  [{entry.plugin}]")
        if caps.description:
            click.echo(f"{'':<12} {caps.description}")


@main.command()
@click.option("--markdown", is_flag=True, help="The README's table (Markdown).")
@_handle_errors
def options(markdown: bool) -> None:
    """List every capture option: flag, default, accepted values, help."""
    from .core.options import options_table, specs_by_group

    if markdown:
        click.echo(options_table(), nl=False)
        return
    groups = specs_by_group()
    # Columns as wide as the longest name and flag, plus a space.
    name_width = 1 + max(len(spec.name) for _, specs in groups for spec in specs)
    flag_width = 1 + max(len(spec.cli_flag) for _, specs in groups for spec in specs)
    for group, specs in groups:
        click.echo(f"{group}:")
        for spec in specs:
            default = f" [{spec.default_text}]" if spec.default_text else ""
            click.echo(
                f"  {spec.name:<{name_width}}{spec.cli_flag:<{flag_width}}"
                f"{spec.kind.accepts}{default}"
            )
            click.echo(f"  {'':<{name_width + flag_width}}{spec.help}")
        click.echo()


@main.command()
@click.argument("search", required=False)
@_handle_errors
def devices(search: str | None) -> None:
    """List device presets for --device (optionally those whose name contains SEARCH)."""
    from .core.devices import DEVICES

    for device in DEVICES.values():
        if search and search.casefold() not in device.name.casefold():
            continue
        kind = "mobile" if device.mobile else "desktop"
        touch = ", touch" if device.touch else ""
        click.echo(
            f"{device.name:<34}{device.width}x{device.height} @{device.scale:g}x  {kind}{touch}"
        )


@main.command()
@_handle_errors
def storages() -> None:
    """List installed storages (URL schemes)."""
    from .plugins.manager import get_registry

    for entry in sorted(get_registry().storages.values(), key=lambda e: e.scheme):
        click.echo(f"{entry.scheme:<12} [{entry.plugin}]")


if __name__ == "__main__":  # pragma: no cover
    main()
