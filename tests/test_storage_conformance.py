"""Both built-in storages pass the conformance suite that plug-in authors run."""

from __future__ import annotations

from pathlib import Path

import pytest
from s3server import MotoServer

from distshot.core.contracts import Storage
from distshot.storage.local import LocalStorage
from distshot.storage.s3 import S3Storage
from distshot.testing.storage_suite import StorageConformance, StorageFactory


class TestLocalStorage(StorageConformance):
    @pytest.fixture
    def storage_factory(self, tmp_path: Path) -> StorageFactory:
        return lambda: LocalStorage(f"file://{tmp_path}/shots")

    @pytest.fixture
    def unusable_storage(self, tmp_path: Path) -> Storage:
        (tmp_path / "a-file").write_text("in the way of a folder")
        return LocalStorage(str(tmp_path / "a-file" / "shots"))


class TestS3Storage(StorageConformance):
    @pytest.fixture
    def storage_factory(self, s3: MotoServer) -> StorageFactory:
        bucket = s3.new_bucket()
        return lambda: S3Storage(f"s3://{bucket}/conformance")

    @pytest.fixture
    def unusable_storage(self, s3: MotoServer) -> Storage:
        return S3Storage("s3://no-such-bucket-here/prefix")
