"""Settings from defaults < distshot.toml (or --config) < environment < command line."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .contracts import EngineConfig
from .errors import ConfigError, DistshotError
from .options import DEFAULT_OPTIONS, CaptureOptions, parse_options
from .proxy import Proxy

#: The values of the pin_cpu setting (see distshot.actors.affinity).
PIN_CHOICES = ("auto", "on", "off")
DEFAULT_CONFIG_FILE = "distshot.toml"
ENV_PREFIX = "DISTSHOT_"
#: Queue names are PREFIX.ENGINE and PREFIX.reply.BATCH (``queue_prefix``).
DEFAULT_QUEUE_PREFIX = "distshot"
_PREFIX_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,60}$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any, name: str = "duration") -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``12h`` or ``7d`` (or a number of seconds)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value)) if isinstance(value, str) else None
        if match is None:
            raise ConfigError(f"{name} must be a duration like 90s, 30m, 12h or 7d, not {value!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{name} must be a duration above zero, not {value!r}")
    return seconds


def default_concurrency() -> int:
    """Two jobs per core: one renders while the other waits on the network or the encoder."""
    return max(1, 2 * (os.cpu_count() or 1))


@dataclass(frozen=True)
class Settings:
    engine: str = "playwright"
    storage: str | None = None
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    concurrency: int = field(default_factory=default_concurrency)
    allow_private: bool = False
    #: Networks admitted even when private addresses are refused (CIDR strings).
    allow_networks: tuple[str, ...] = ()
    browser_path: str = "/usr/bin/chromium"
    driver_path: str = "/usr/bin/chromedriver"
    recycle_after: int = 500
    #: Relaunch the browser when its process tree's resident memory passes this (MiB; 0: never).
    recycle_memory_mb: int = 2048
    #: Reuse a cleaned browser context between jobs; false gives every job a fresh one.
    reuse_contexts: bool = True
    max_attempts: int = 3
    #: Pin each worker process's threads to a core of its own: "auto" (when the engine
    #: starts no processes that would inherit the pin), "on" or "off".
    pin_cpu: str = "auto"
    #: Queue names are PREFIX.ENGINE and PREFIX.reply.BATCH.
    queue_prefix: str = DEFAULT_QUEUE_PREFIX
    window: int = 200
    #: Where a worker serves its Prometheus metrics: HOST:PORT, or "off". Loopback by
    #: default: metrics tell an outsider what a fleet captures and how fast.
    metrics: str = "127.0.0.1:9191"
    #: Put each image's perceptual hash in its record (``phash``; about 2% of a shot's CPU).
    phash: bool = True
    wait_timeout: float = 600.0
    #: Seconds a stored image answers a request with the same URL and options (off: None).
    cache_ttl: float | None = None
    #: Seconds a presigned link (s3) stays valid; folded into the storage URL.
    link_ttl: float | None = None
    #: Links are this base URL plus the object's key instead; folded into the storage URL.
    public_base_url: str | None = None
    #: The worker's upstream proxy for jobs whose request names none (``proxy`` option):
    #: trusted configuration, so the address policy does not judge the proxy itself (only
    #: the pages behind it). Its password is never shown.
    proxy: str | None = field(default=None, repr=False)
    #: A folder of secrets (cookie jars, storage states, user:password files) that requests
    #: name as ``@secrets/NAME``: read on the worker, so they never pass through the broker.
    secrets_dir: str | None = None
    #: A filter list (Adblock Plus syntax) for block_ads / block_trackers instead of the
    #: EasyList / EasyPrivacy ``make filter-lists`` installed: a newer copy, or your own.
    ad_filters: str | None = None
    tracker_filters: str | None = None
    capture: CaptureOptions = field(default_factory=CaptureOptions)
    #: Each engine's own settings: the ``[engines.NAME]`` tables of distshot.toml.
    engines: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def engine_config(self) -> EngineConfig:
        """What the engine factory receives from these settings (with the chosen engine's
        own table)."""
        return EngineConfig(
            browser_path=self.browser_path,
            driver_path=self.driver_path,
            recycle_after=self.recycle_after,
            recycle_memory_mb=self.recycle_memory_mb,
            reuse_contexts=self.reuse_contexts,
            concurrency=self.concurrency,
            ad_filters=self.ad_filters,
            tracker_filters=self.tracker_filters,
            settings=dict(self.engines.get(self.engine, {})),
            proxy=self.proxy,
            secrets_dir=self.secrets_dir,
        )

    def storage_url(self, default: str | None = None) -> str | None:
        """The storage URL (``storage`` or ``default``) with ``link_ttl`` and
        ``public_base_url`` folded into its query: the URL is what travels to the workers,
        so everything a worker needs to build links travels inside it."""
        url = self.storage or default
        if url is None:
            return None
        return with_storage_options(
            url, link_ttl=self.link_ttl, public_base_url=self.public_base_url
        )


#: Whole-number settings where 0 means "off".
_ZERO_ALLOWED = frozenset({"recycle_memory_mb"})


def with_storage_options(url: str, **options: Any) -> str:
    """``url`` with the given (non-None) options set in its query string, replacing the
    URL's own values. A plain folder path becomes a ``file://`` URL first."""
    chosen = {k: v for k, v in options.items() if v is not None}
    if not chosen:
        return url
    parts = urlsplit(url)
    if len(parts.scheme) <= 1:  # a plain path ('shots', '/abs/dir', 'C:/x')
        parts = urlsplit(Path(url).expanduser().resolve().as_uri())
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in chosen]
    for key, value in chosen.items():
        text = str(value)
        if isinstance(value, float):
            text = str(int(value)) if value.is_integer() else repr(value)
        query.append((key, text))
    return urlunsplit(parts._replace(query=urlencode(query)))


def storage_options(url: str, known: tuple[str, ...], storage: str) -> dict[str, str]:
    """The options in a storage URL's query string (what ``with_storage_options`` wrote):
    one the ``storage`` does not know is a ConfigError naming those it does, and a
    ``public_base_url`` is checked like the setting (an empty one means none)."""
    options = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"{storage} storage does not know {', '.join(unknown)} in {url!r}; "
            f"it knows: {', '.join(known)}"
        )
    if "public_base_url" in options:
        base = options.pop("public_base_url")
        if base:
            options["public_base_url"] = _base_url(base)
    return options


_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name not in ("capture", "engines")}


def _coerce(name: str, value: Any) -> Any:
    if name == "allow_networks":
        return _networks(value)
    if name in ("cache_ttl", "link_ttl"):
        return parse_duration(value, name)
    if name == "public_base_url":
        return _base_url(value)
    if name == "pin_cpu":
        return _pin_choice(value)
    if name == "proxy":
        try:
            return Proxy.parse(str(value)).url
        except ValueError as exc:
            raise ConfigError(f"proxy setting: {exc}") from None
    if name in ("ad_filters", "tracker_filters"):
        return _readable_file(name, value)
    if name == "metrics":
        text = str(value).strip()
        parse_listen(text, name)
        return text.lower() if text.lower() == "off" else text
    kind = type(getattr(Settings(), name))
    if name in ("storage", "secrets_dir"):
        kind = str
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if kind is int:
            whole = int(value)
            if whole < (0 if name in _ZERO_ALLOWED else 1):
                raise ValueError(value)
            return whole
        if kind is float:
            number = float(value)
            if number <= 0:
                raise ValueError(value)
            return number
        text = str(value).strip()
        if not text or (name == "queue_prefix" and not _PREFIX_RE.match(text)):
            raise ValueError(value)
        return text
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a {kind.__name__} above zero, not {value!r}") from None


def _readable_file(name: str, value: Any) -> str:
    """A path that must name a readable file now: a worker that would fail its first
    blocking job instead says so at start."""
    path = Path(str(value).strip()).expanduser()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ConfigError(f"{name}: {value!r} is not a readable file")
    return str(path.resolve())


def _base_url(value: Any) -> str:
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"public_base_url must be an http(s) URL, not {value!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"public_base_url must not have a query or fragment: {value!r}")
    return text


def parse_listen(value: str, name: str = "metrics") -> tuple[str, int] | None:
    """``(host, port)`` from ``HOST:PORT`` or ``[IPV6]:PORT``; None for ``off``."""
    text = value.strip()
    if text.lower() == "off":
        return None
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
        if host:
            ipaddress.ip_address(host)
    except ValueError:
        port = -1
    if not sep or not host or not 0 < port < 65536:
        raise ConfigError(f"{name} must be HOST:PORT (an IP address) or off, not {value!r}")
    return host, port


def _pin_choice(value: Any) -> str:
    if isinstance(value, bool):  # pin_cpu = true / false in distshot.toml
        return "on" if value else "off"
    text = str(value).strip().lower()
    if text not in PIN_CHOICES:
        raise ConfigError(f"pin_cpu must be one of {', '.join(PIN_CHOICES)}, not {value!r}")
    return text


def _networks(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(f"allow_networks must be a list of networks, not {value!r}")
    networks = tuple(str(item).strip() for item in items if str(item).strip())
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                f"allow_networks: {network!r} is not a network like 10.1.0.0/16"
            ) from None
    return networks


def load_settings(
    config_file: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    capture_overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the layers; unknown keys and bad values are ``ConfigError`` naming the source."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    capture_raw: dict[str, Any] = {}
    engine_tables: dict[str, dict[str, Any]] = {}

    path = Path(config_file) if config_file else Path(DEFAULT_CONFIG_FILE)
    if config_file and not path.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for key, value in data.items():
            if key == "capture" and isinstance(value, dict):
                capture_raw.update(value)
            elif key == "engines" and isinstance(value, dict):
                engine_tables = _engine_tables(path, value)
            elif key in _FIELDS:
                values[key] = _coerce(key, value)
            else:
                known = ", ".join(sorted([*_FIELDS, "[capture]", "[engines.NAME]"]))
                raise ConfigError(f"{path}: unknown setting {key!r}; known: {known}")

    for name in _FIELDS:
        env_value = env.get(ENV_PREFIX + name.upper())
        if env_value is not None and env_value != "":
            values[name] = _coerce(name, env_value)

    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value)

    capture_raw.update({k: v for k, v in (capture_overrides or {}).items() if v is not None})
    try:
        capture = parse_options(capture_raw, DEFAULT_OPTIONS)
    except DistshotError as exc:
        raise ConfigError(exc.message) from None
    return Settings(**values, capture=capture, engines=engine_tables)


def _engine_tables(path: Path, value: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``[engines.NAME]`` tables: each engine's own settings, handed to its factory as
    ``EngineConfig.settings`` (the engine checks them; distshot does not know them)."""
    tables = {}
    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: engines.{name} must be a table ([engines.{name}])")
        tables[name] = dict(table)
    return tables
