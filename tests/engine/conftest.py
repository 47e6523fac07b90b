"""The engine tests need the local extra: without it they skip, or fail under CI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.utils.blobs import BlobServer, serving_blobs
from tests.utils.requires import need

need("torch", "the engine tests need the local extra")

__all__ = ["BlobServer"]


@pytest.fixture
def blob_server() -> Iterator[BlobServer]:
    with serving_blobs() as server:
        yield server
