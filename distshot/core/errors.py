"""One error tree for distshot. Callers catch by meaning, not by origin.

    DistshotError
    ├── ConfigError                 bad configuration or usage (exit status 2)
    │   ├── UnknownPlugin           no engine/storage by that name; lists what is installed
    │   └── DuplicatePlugin         two plugins registered the same name
    ├── PermanentError              retrying cannot help
    │   ├── InvalidRequest          malformed input line or message
    │   ├── InvalidUrl              not an http(s) URL
    │   ├── InvalidOption           an option value out of range or of the wrong type
    │   ├── UnsupportedOption       the chosen engine cannot honour an option
    │   ├── BlockedAddress          the host resolves to a refused address
    │   ├── DownloadRefused         the URL is a download, not a page
    │   ├── RedirectLoop            too many redirects
    │   ├── AuthenticationRequired  the server wants HTTP credentials the URL did not give
    │   ├── ElementNotFound         a selector (selector, click) matched nothing in time
    │   └── ScriptError             the request's javascript threw
    └── TransientError              may work on another attempt
        ├── NavigationTimeout       the page did not reach its wait condition in time
        ├── NetworkError            DNS failure, connection refused or reset
        ├── BrowserCrashed          the browser or its page process died
        ├── ProxyError              the upstream proxy refused, was unreachable or rejected the
        │                           credentials (names the proxy, never its password)
        ├── StorageError            the image could not be stored (names the bucket/folder);
        │                           a refusal (no such bucket, access denied) is not retried
        └── ReplyTimeout            no worker answered within the dispatcher's wait timeout

The manifest's ``error.type`` is the class name.
"""

from __future__ import annotations


class DistshotError(Exception):
    """Base of every error distshot raises on purpose."""

    #: Whether another attempt may succeed. Overridden by the two branches below.
    transient: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def type_name(self) -> str:
        return type(self).__name__


class ConfigError(DistshotError):
    """Bad configuration or command-line usage: the run cannot start."""


class UnknownPlugin(ConfigError):
    pass


class DuplicatePlugin(ConfigError):
    pass


class PermanentError(DistshotError):
    transient = False


class InvalidRequest(PermanentError):
    pass


class InvalidUrl(PermanentError):
    pass


class InvalidOption(PermanentError):
    pass


class UnsupportedOption(PermanentError):
    pass


class BlockedAddress(PermanentError):
    pass


class DownloadRefused(PermanentError):
    pass


class RedirectLoop(PermanentError):
    pass


class AuthenticationRequired(PermanentError):
    pass


class ElementNotFound(PermanentError):
    pass


class ScriptError(PermanentError):
    pass


class TransientError(DistshotError):
    transient = True


class NavigationTimeout(TransientError):
    @classmethod
    def for_url(cls, url: str, timeout: float) -> NavigationTimeout:
        """The one error for a URL that ran out of time: the same type and sentence on every
        engine, whichever layer noticed first (the engine's own deadline, or the capture
        service's backstop for an engine that could not stop in time)."""
        return cls(f"{url} did not finish within its {timeout:g}s timeout")


class NetworkError(TransientError):
    """Most network failures pass (a refused or reset connection, a timeout, an outage); a
    certificate or TLS set-up the site got wrong does not: the same type in the manifest,
    marked permanent, so that no retry is wasted on it."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class BrowserCrashed(TransientError):
    pass


class ProxyError(TransientError):
    """The upstream proxy (``proxy``) could not carry a connection: unreachable, refused it,
    or rejected the credentials. The message names the proxy without its password."""


class StorageError(TransientError):
    """An outage or throttling is transient; a refusal (no such bucket, access denied, bad
    credentials) is the same error type in the manifest but marked permanent: no retry can
    fix it, and retrying would only multiply the failed requests' cost."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class ReplyTimeout(TransientError):
    pass
