"""The storage conformance suite: what every storage plug-in must do, as pytest tests.

A plug-in proves itself with a test module like::

    import pytest
    from distshot.testing.storage_suite import StorageConformance

    class TestMyStorage(StorageConformance):
        @pytest.fixture
        def storage_factory(self):
            return lambda: MyStorage("my://usable-destination")

        @pytest.fixture
        def unusable_storage(self):
            return MyStorage("my://destination-that-does-not-exist")

``storage_factory`` makes a storage on a usable destination (each call may return a new
object on the same destination); ``unusable_storage`` is one whose ``check`` must fail.
Links must be openable from the test process (``file://`` or ``http(s)://``): the suite
fetches them and compares the bytes. Set ``supports_cache = False`` for a storage without
``remember``/``lookup``: the suite then only checks that it never claims a hit. Expiry is
tested without waiting: the suite passes ``lookup`` a ``now`` an hour ahead. Set
``supports_read = False`` for a storage without ``read`` (the report cannot show its
images): the suite then checks that ``read`` says so with a StorageError.
"""

from __future__ import annotations

import hashlib
import inspect
import mimetypes
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from ..core.contracts import Storage
from ..core.errors import StorageError
from ..core.models import CacheEntry, StoredObject

StorageFactory = Callable[[], Storage]


def fetch(link: str, timeout: float = 30) -> tuple[bytes, str]:
    """The bytes behind a link and their content type (for ``file://``, by extension)."""
    with urllib.request.urlopen(link, timeout=timeout) as response:
        data = response.read()
        content_type = response.headers.get("Content-Type", "")
    if urlsplit(link).scheme == "file":
        content_type = mimetypes.guess_type(urlsplit(link).path)[0] or ""
    return data, content_type


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_name(ext: str = "png") -> str:
    """A name as the service makes them: ``batch/slug-hash.ext``."""
    return f"b{uuid.uuid4().hex[:8]}/page-{uuid.uuid4().hex[:16]}.{ext}"


def new_cache_key() -> str:
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


METADATA = {"source-url": "https://example.test/", "captured-at": "2026-01-01T00:00:00+00:00"}


class StorageConformance:
    """Tests every storage must pass. Subclass it; see the module docstring."""

    supports_cache: bool = True
    #: Above common multipart thresholds (S3 clients switch at 8 MiB).
    large_object_bytes: int = 24 * 1024 * 1024

    @pytest.fixture
    def storage(self, storage_factory: StorageFactory) -> Iterator[Storage]:
        storage = storage_factory()
        storage.check()
        yield storage
        storage.close()

    def put(
        self, storage: Storage, name: str, data: bytes, ctype: str = "image/png"
    ) -> StoredObject:
        return storage.put(name, data, ctype, METADATA)

    # -- put -----------------------------------------------------------------------

    def test_put_gives_a_location_and_a_link_that_serves_the_same_bytes(
        self, storage: Storage
    ) -> None:
        data = os.urandom(50_000)
        stored = self.put(storage, new_name(), data)
        assert stored.location and stored.link
        body, _ = fetch(stored.link)
        assert sha256(body) == sha256(data)

    @pytest.mark.parametrize(("ext", "ctype"), [("png", "image/png"), ("jpg", "image/jpeg")])
    def test_the_link_serves_the_content_type_given_to_put(
        self, storage: Storage, ext: str, ctype: str
    ) -> None:
        stored = self.put(storage, new_name(ext), b"not really an image", ctype)
        assert stored.link is not None
        assert fetch(stored.link)[1] == ctype

    def test_names_are_deterministic(self, storage: Storage) -> None:
        name, other = new_name(), new_name()
        first = self.put(storage, name, b"one")
        again = self.put(storage, name, b"two")
        elsewhere = self.put(storage, other, b"one")
        assert first.location == again.location
        assert elsewhere.location != first.location
        assert name.split("/")[-1] in first.location
        assert again.link is not None and fetch(again.link)[0] == b"two"

    def test_a_replaced_object_is_never_seen_half_written(self, storage: Storage) -> None:
        # Given an object, when a large one replaces it under the same name while a reader
        # keeps fetching it, then the reader sees the old bytes or the new, never a mix.
        name = new_name()
        old, new = os.urandom(1_000_000), os.urandom(self.large_object_bytes // 2)
        link = self.put(storage, name, old).link
        assert link is not None
        done = threading.Event()
        errors: list[BaseException] = []

        def replace() -> None:
            try:
                self.put(storage, name, new)
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        writer = threading.Thread(target=replace)
        writer.start()
        seen = set()
        while not done.is_set():
            seen.add(sha256(fetch(link)[0]))
        writer.join()
        assert not errors, errors
        assert seen <= {sha256(old), sha256(new)}
        assert sha256(fetch(link)[0]) == sha256(new)

    def test_a_large_object_round_trips(self, storage: Storage) -> None:
        data = os.urandom(self.large_object_bytes)
        stored = self.put(storage, new_name(), data)
        assert stored.link is not None
        assert sha256(fetch(stored.link)[0]) == sha256(data)

    # -- read (optional: the report and diff open images through it) -----------------

    #: Set to False for a storage without ``read``: the suite then checks that it says so
    #: with a StorageError (the report lists such records without thumbnails).
    supports_read: bool = True

    def test_read_returns_the_bytes_put_under_the_location(
        self, storage: Storage, storage_factory: StorageFactory
    ) -> None:
        data = os.urandom(40_000)
        stored = self.put(storage, new_name(), data)
        if not self.supports_read:
            with pytest.raises(StorageError):
                storage.read(stored.location)
            return
        assert sha256(storage.read(stored.location)) == sha256(data)
        # Another storage object on the same destination reads it too: the report makes
        # its own storage from the location, not the one that stored the image.
        other = storage_factory()
        try:
            assert sha256(other.read(stored.location)) == sha256(data)
        finally:
            other.close()

    def test_read_of_a_missing_object_raises_storage_error(self, storage: Storage) -> None:
        stored = self.put(storage, new_name(), b"here")
        missing = stored.location.replace(stored.location.rsplit("/", 1)[1], "gone-0000.png")
        with pytest.raises(StorageError) as info:
            storage.read(missing)
        assert info.value.message and "\n" not in info.value.message

    # -- check and failures --------------------------------------------------------

    def test_check_fails_clearly_on_an_unusable_destination(
        self, unusable_storage: Storage
    ) -> None:
        with pytest.raises(StorageError) as info:
            unusable_storage.check()
        message = info.value.message
        assert message and "\n" not in message
        unusable_storage.close()

    def test_put_to_an_unusable_destination_raises_storage_error(
        self, unusable_storage: Storage
    ) -> None:
        # Never a library's own exception: that is what kills workers.
        with pytest.raises(StorageError):
            self.put(unusable_storage, new_name(), b"data")
        unusable_storage.close()

    # -- the capture cache -----------------------------------------------------------

    def remember(self, storage: Storage, data: bytes) -> tuple[str, CacheEntry]:
        name = new_name()
        stored = self.put(storage, name, data)
        entry = CacheEntry(
            name=name,
            format="png",
            bytes=len(data),
            sha256=sha256(data),
            width=10,
            height=20,
            engine="null",
            final_url="https://example.test/",
            http_status=200,
            title="Example",
            etag=stored.version,
        )
        key = new_cache_key()
        storage.remember(key, entry)
        return key, entry

    def test_lookup_of_an_unknown_key_misses(self, storage: Storage) -> None:
        assert storage.lookup(new_cache_key(), new_name(), 3600) is None

    def test_lookup_answers_under_the_new_name_with_the_remembered_image(
        self, storage: Storage
    ) -> None:
        data = os.urandom(30_000)
        key, entry = self.remember(storage, data)
        target = new_name()
        hit = storage.lookup(key, target, 3600)
        if not self.supports_cache:
            assert hit is None
            return
        assert hit is not None
        assert hit.entry == entry
        assert 0 <= hit.age < 3600
        assert target.split("/")[-1] in hit.stored.location
        assert hit.stored.link is not None
        assert sha256(fetch(hit.stored.link)[0]) == entry.sha256
        # The same name as the remembered one is a hit without a copy.
        same = storage.lookup(key, entry.name, 3600)
        assert same is not None and same.entry.sha256 == entry.sha256

    def test_lookup_misses_entries_older_than_max_age_and_a_hit_does_not_renew_them(
        self, storage: Storage
    ) -> None:
        # Time travel instead of waiting: ``now`` is the moment the age is judged at.
        if "now" not in inspect.signature(storage.lookup).parameters:
            pytest.fail(
                f"{type(storage).__name__}.lookup must accept now: float | None = None "
                "(see Storage.lookup)"
            )
        key, _ = self.remember(storage, os.urandom(1000))
        # Given an entry remembered just now, seen an hour later (the margins allow for a
        # storage that counts whole seconds, or whose clock is a server's a little off ours)
        later = time.time() + 3600
        hit = storage.lookup(key, new_name(), 7200, now=later)
        assert (hit is not None) is self.supports_cache
        # Then it is too old for a TTL of half an hour
        assert storage.lookup(key, new_name(), 1800, now=later) is None
        if hit is None:
            return
        assert 3000 < hit.age < 4200
        # A hit does not make it younger: reused at the same moment, it is no younger
        # (a storage that rewrote its record on a hit would report a smaller age here).
        again = storage.lookup(key, new_name(), 7200, now=later)
        assert again is not None and again.age >= hit.age
        # And in the storage's own present, it is as young as it really is.
        assert storage.lookup(key, new_name(), 1800) is not None

    def test_an_entry_whose_image_is_gone_misses(self, storage: Storage) -> None:
        entry = CacheEntry(name=new_name(), format="png", bytes=3, sha256=sha256(b"abc"))
        key = new_cache_key()
        storage.remember(key, entry)  # remembered, but never put
        assert storage.lookup(key, new_name(), 3600) is None
