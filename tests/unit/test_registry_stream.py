"""VerifyingStream: what reaches an upload when a blob is intact, corrupt or truncated."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from kuikcore.registry import DigestMismatch
from kuikcore.registry.client import VerifyingStream

DATA = [b"a" * 1000, b"b" * 1000, b"c" * 10]
DIGEST = "sha256:" + hashlib.sha256(b"".join(DATA)).hexdigest()


async def chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def drain(stream: VerifyingStream, into: list[bytes] | None = None) -> list[bytes]:
    out = [] if into is None else into
    async for chunk in stream:
        out.append(chunk)
    return out


async def test_intact_blob_passes_through_and_counts_bytes() -> None:
    counted: list[int] = []
    stream = VerifyingStream(chunks(DATA), DIGEST, 2010, counted.append)
    assert await drain(stream) == DATA
    assert sum(counted) == 2010
    assert stream.error is None


@pytest.mark.parametrize(
    ("parts", "size"),
    [
        ([b"a" * 1000, b"X" * 1000, b"c" * 10], 2010),  # corrupt
        (DATA[:2], 2010),  # truncated
        (DATA, 2011),  # wrong size announced
    ],
)
async def test_bad_blob_never_delivers_its_last_chunk(parts: list[bytes], size: int) -> None:
    delivered: list[bytes] = []
    stream = VerifyingStream(chunks(parts), DIGEST, size)
    with pytest.raises(DigestMismatch, match="received"):
        await drain(stream, delivered)
    assert delivered == parts[:-1]
    assert stream.error is not None


async def test_big_chunks_hashed_in_a_thread_keep_their_order() -> None:
    parts = [bytes([i]) * 200_000 for i in range(5)]  # above the threaded-hash threshold
    digest = "sha256:" + hashlib.sha256(b"".join(parts)).hexdigest()
    assert await drain(VerifyingStream(chunks(parts), digest, 1_000_000)) == parts
    swapped = [parts[1], parts[0], *parts[2:]]
    delivered: list[bytes] = []
    with pytest.raises(DigestMismatch):
        await drain(VerifyingStream(chunks(swapped), digest, 1_000_000), delivered)
    assert delivered == swapped[:-1]


async def test_other_algorithms_are_refused() -> None:
    stream = VerifyingStream(chunks(DATA), "sha512:" + "0" * 128, None)
    with pytest.raises(DigestMismatch, match="unsupported digest algorithm"):
        await drain(stream)
