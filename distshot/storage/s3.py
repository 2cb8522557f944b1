"""S3 storage (``s3://bucket/prefix``) on any S3-compatible API, through boto3.

Credentials, region and endpoint come from boto3's own chain (``AWS_ACCESS_KEY_ID`` or
``AWS_PROFILE`` or an instance role; ``AWS_REGION``; ``AWS_ENDPOINT_URL`` for MinIO, R2,
Ceph). What a worker needs beyond that travels in the URL's query, since the URL is what
a request carries: ``link_ttl`` (seconds a presigned link lasts, 7 days by default) and
``public_base_url`` (links are that base plus the key instead of presigned URLs).

Keys are ``prefix/batch/slug-hash.ext``. Objects are private (no ACL is ever sent), typed
(Content-Type) and carry the source URL, capture time and engine as metadata. Images
above ``MULTIPART_THRESHOLD`` go up as a multipart upload. Every call has bounded
timeouts and bounded retries; an outage or throttling ends as a transient StorageError
naming the bucket, a refusal (no such bucket, access denied) as a permanent one.

boto3 is imported only when an s3 storage is created: ``pip install 'distshot[s3]'``.
"""

from __future__ import annotations

import email.utils
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from .. import __version__
from ..core.config import parse_duration, storage_options
from ..core.contracts import Storage
from ..core.errors import ConfigError, StorageError
from ..core.models import CacheEntry, CacheHit, StoredObject
from ..plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client

#: SigV4 presigned URLs cannot last longer than this (7 days); it is also the default.
MAX_LINK_TTL = 7 * 86400
OPTIONS = ("link_ttl", "public_base_url")
CACHE_FOLDER = ".cache"

#: Bounds that keep any call from hanging: a connection within CONNECT_TIMEOUT, each read
#: of a response within READ_TIMEOUT, and ATTEMPTS tries per call (botocore's "standard"
#: retry mode: exponential backoff with jitter on throttling, 5xx and connection errors).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
ATTEMPTS = 3
#: Images from this size up are uploaded in parts of MULTIPART_CHUNK, several at once.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024
MULTIPART_CONCURRENCY = 4

_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
_CACHE_KEY_RE = re.compile(r"^[0-9a-f]{16,128}$")

#: Error codes that mean "not now" (S3 asks to slow down, or is failing): retry later.
_UNAVAILABLE = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
    }
)
#: Error codes that no retry can fix, with what they mean to the person reading the line.
_REFUSALS = {
    "NoSuchBucket": "the bucket does not exist",
    "AccessDenied": "access denied (check the bucket policy and the credentials' permissions)",
    "AllAccessDisabled": "all access to the bucket is disabled",
    "InvalidAccessKeyId": "the access key is not known to this S3 endpoint",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "InvalidToken": "the session token is invalid",
    "ExpiredToken": "the session token has expired",
    "InvalidBucketName": "the bucket name is invalid",
    "PermanentRedirect": "the bucket is in another region (set AWS_REGION)",
    "AuthorizationHeaderMalformed": "the bucket is in another region (set AWS_REGION)",
    "403": "access denied (check the credentials and their permissions)",
}


@dataclass(frozen=True)
class S3Location:
    """What an ``s3://bucket/prefix?link_ttl=...&public_base_url=...`` URL says."""

    bucket: str
    prefix: str = ""
    link_ttl: int = MAX_LINK_TTL
    public_base_url: str | None = None

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3":
            raise ConfigError(f"an s3 storage URL starts with s3://, not {url!r}")
        bucket = parts.netloc
        if not _BUCKET_RE.match(bucket):
            raise ConfigError(f"{url!r} does not name a valid S3 bucket (s3://bucket/prefix)")
        segments = [s for s in unquote(parts.path).split("/") if s]
        if any(s in (".", "..") for s in segments):
            raise ConfigError(f"the S3 prefix in {url!r} must not contain . or .. segments")
        options = storage_options(url, OPTIONS, "s3")
        link_ttl = MAX_LINK_TTL
        if "link_ttl" in options:
            link_ttl = round(parse_duration(options["link_ttl"], "link_ttl"))
            if not 1 <= link_ttl <= MAX_LINK_TTL:
                raise ConfigError(
                    "link_ttl must be between 1s and 7d: S3 presigned links last 7 days at "
                    "most (use public_base_url for lasting links)"
                )
        return cls(bucket, "/".join(segments), link_ttl, options.get("public_base_url"))

    def key(self, name: str) -> str:
        """The object key of ``name`` (``batch/slug-hash.png``) under the prefix."""
        name = "/".join(s for s in name.split("/") if s)
        if not name or any(s in (".", "..") for s in name.split("/")):
            raise StorageError(f"refusing object name {name!r} in S3 bucket {self.bucket!r}")
        return f"{self.prefix}/{name}" if self.prefix else name


class S3Storage(Storage):
    scheme = "s3"

    def __init__(self, url: str) -> None:
        self.location = S3Location.parse(url)
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config
        except ImportError:
            raise ConfigError("s3 storage needs boto3: pip install 'distshot[s3]'") from None
        self.client: S3Client = boto3.session.Session().client(
            "s3",
            config=Config(
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
                # Worker threads plus the parts of concurrent multipart uploads.
                max_pool_connections=32,
                signature_version="s3v4",
                user_agent_extra=f"distshot/{__version__}",
            ),
        )
        self.transfer_config: TransferConfig = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNK,
            max_concurrency=MULTIPART_CONCURRENCY,
        )

    @property
    def bucket(self) -> str:
        return self.location.bucket

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    def check(self) -> None:
        """List at most one key under the prefix: proves the bucket exists, the endpoint
        answers and the credentials are accepted (needs s3:ListBucket, which a policy can
        restrict to the prefix; HeadBucket could not be, and says less on failure)."""
        prefix = f"{self.location.prefix}/" if self.location.prefix else ""
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        except Exception as exc:
            raise self._error(exc, "list it") from None

    def put(
        self, name: str, data: bytes, content_type: str, metadata: dict[str, str]
    ) -> StoredObject:
        key = self.location.key(name)
        extra: dict[str, Any] = {
            "ContentType": content_type,
            "Metadata": {k: _header_safe(v) for k, v in metadata.items()},
        }
        try:
            if len(data) < MULTIPART_THRESHOLD:
                etag = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)[
                    "ETag"
                ]
            else:
                # Managed transfer: parts in parallel, each part retried on its own, and
                # the upload aborted on failure. The object appears only when complete.
                self.client.upload_fileobj(
                    io.BytesIO(data),
                    self.bucket,
                    key,
                    ExtraArgs=extra,
                    Config=self.transfer_config,
                )
                etag = self.client.head_object(Bucket=self.bucket, Key=key)["ETag"]
        except Exception as exc:
            raise self._error(exc, f"store {key}") from None
        return self._stored(key, etag)

    def read(self, location: str) -> bytes:
        # Locations are ``s3://bucket/key`` with the key as is (not URL-quoted): split by
        # hand, since urlsplit would cut a key at "?" or "#".
        scheme, _, rest = location.partition("://")
        bucket, _, key = rest.partition("/")
        if scheme.lower() != "s3" or bucket != self.bucket or not key:
            raise StorageError(
                f"{location!r} is not an object of S3 bucket {self.bucket!r}", transient=False
            )
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise StorageError(
                    f"S3 bucket {self.bucket!r} has no object {key!r}", transient=False
                ) from None
            raise self._error(exc, f"read {key}") from None

    # -- the capture cache ------------------------------------------------------------

    def remember(self, cache_key: str, entry: CacheEntry) -> None:
        key = self._index_key(cache_key)
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=entry.to_json(), ContentType="application/json"
            )
        except Exception as exc:
            raise self._error(exc, f"store {key}") from None

    def lookup(
        self, cache_key: str, name: str, max_age: float, now: float | None = None
    ) -> CacheHit | None:
        index_key, target = self._index_key(cache_key), self.location.key(name)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=index_key)
            body = response["Body"].read()
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._error(exc, f"read {index_key}") from None
        # The index's LastModified is when the entry was remembered (a hit never rewrites
        # it). Measured against the server's Date, both times are the server's, so clock
        # skew between machines does not matter; a caller's ``now`` is the caller's choice.
        if now is None:
            headers = response["ResponseMetadata"].get("HTTPHeaders", {})
            present = _http_date(headers.get("date")) or datetime.now(UTC)
        else:
            present = datetime.fromtimestamp(now, UTC)
        age = max(0.0, (present - response["LastModified"]).total_seconds())
        entry = CacheEntry.from_json(body)
        if age > max_age or entry is None:
            return None
        source = self.location.key(entry.name)
        # The entry's ETag guards against an object replaced since it was remembered.
        guard: dict[str, Any] = {"IfMatch": entry.etag} if entry.etag else {}
        try:
            if source == target:
                etag = self.client.head_object(Bucket=self.bucket, Key=target, **guard)["ETag"]
            else:
                copy_guard: dict[str, Any] = {"CopySourceIfMatch": entry.etag} if entry.etag else {}
                copied = self.client.copy_object(
                    Bucket=self.bucket,
                    Key=target,
                    CopySource={"Bucket": self.bucket, "Key": source},
                    MetadataDirective="COPY",
                    **copy_guard,
                )
                etag = copied["CopyObjectResult"].get("ETag", "")
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404", "PreconditionFailed", "412"):
                return None  # deleted (a lifecycle rule) or replaced since: a miss
            raise self._error(exc, f"copy {source} to {target}") from None
        return CacheHit(self._stored(target, etag), entry, age)

    def close(self) -> None:
        self.client.close()

    # -- helpers ----------------------------------------------------------------------

    def _index_key(self, cache_key: str) -> str:
        if not _CACHE_KEY_RE.match(cache_key):
            raise StorageError(f"refusing cache key {cache_key!r}: not a hex digest")
        return self.location.key(f"{CACHE_FOLDER}/{cache_key}.json")

    def _stored(self, key: str, etag: str | None) -> StoredObject:
        location = f"s3://{self.bucket}/{key}"
        if self.location.public_base_url is not None:
            link = self.location.public_base_url.rstrip("/") + "/" + quote(key)
        else:
            try:
                link = self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": key},
                    ExpiresIn=self.location.link_ttl,
                )
            except Exception as exc:  # credentials that vanished or could not refresh
                raise self._error(exc, f"sign a link to {key}") from None
        return StoredObject(location=location, link=link, version=etag)

    def _error(self, exc: Exception, doing: str) -> StorageError:
        """One line that names the bucket, says what failed, and whether to retry."""
        from botocore.exceptions import (
            ClientError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        where = f"S3 bucket {self.bucket!r} at {self.endpoint}"
        if isinstance(exc, ClientError):
            code = _code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _UNAVAILABLE or status >= 500 or status == 429:
                return StorageError(
                    f"{where} is unavailable ({code or status}) after {ATTEMPTS} tries to {doing}"
                )
            reason = _REFUSALS.get(code) or exc.response.get("Error", {}).get("Message") or code
            if code == "404":
                reason = "the bucket does not exist"
            return StorageError(f"{where}: {reason} ({code}), trying to {doing}", transient=False)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageError(
                f"{where}: no usable AWS credentials (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or use an instance role)",
                transient=False,
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return StorageError(f"{where} is unreachable after {ATTEMPTS} tries to {doing}: {exc}")
        if isinstance(exc, StorageError):
            return exc
        # Anything else from boto (a truncated response, a checksum mismatch) is worth a
        # retry; never let a library exception escape and take the worker down.
        return StorageError(f"{where}: {type(exc).__name__}: {exc}, trying to {doing}")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _header_safe(value: str) -> str:
    """Metadata travels as HTTP headers: printable ASCII only, the rest percent-encoded."""
    return "".join(ch if 32 <= ord(ch) < 127 else quote(ch, safe="") for ch in value)


@hookimpl
def distshot_storages(register):  # type: ignore[no-untyped-def]
    register("s3", S3Storage)
