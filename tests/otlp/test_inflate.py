"""gzip and zstd: every member and frame decoded, trailers checked, output bounded during expansion."""

from __future__ import annotations

import gzip
import tracemalloc

import orjson
import pytest
import zstandard

from otlp_lab import Lab
from otlp_lab.errors import BodyTooLargeError, DecodeError
from otlp_lab.otlp import decompress_bytes

from ..conftest import make_trace_request
from .test_decode import _otlp_json

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _line(n: int) -> bytes:
    return orjson.dumps(_otlp_json(make_trace_request(n, seed=n))) + b"\n"


def zstd_rle_frame(byte: bytes, blocks: int, prefix: bytes = b"") -> bytes:
    """A zstd frame of ``prefix`` (one raw block) then ``blocks`` RLE blocks of 128 KiB of ``byte``:
    4 bytes of input per 128 KiB of output, so a 128 KiB file expands to 4 GiB."""
    out = [ZSTD_MAGIC, b"\x00", b"\x58"]  # no checksum, no content size; window 8 MiB
    if prefix:
        out.append(((len(prefix) << 3) | (0 << 1)).to_bytes(3, "little") + prefix)
    for i in range(blocks):
        last = 1 if i == blocks - 1 else 0
        out.append((((1 << 17) << 3) | (1 << 1) | last).to_bytes(3, "little") + byte)
    return b"".join(out)


def gzip_members(prefix: bytes, filler: bytes, members: int) -> bytes:
    one = gzip.compress(filler, 9)
    return (gzip.compress(prefix) if prefix else b"") + one * members


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_every_member_and_frame_is_loaded(tmp_path, codec):
    a, b = _line(3), _line(4)
    if codec == "gzip":
        data = gzip.compress(a) + gzip.compress(b)
    else:
        c = zstandard.ZstdCompressor(write_checksum=True)
        data = c.compress(a) + c.compress(b)
    assert decompress_bytes(data) == a + b
    path = tmp_path / f"two.jsonl.{codec}"
    path.write_bytes(data)
    lab = Lab()
    assert lab.load(path)["spans"] == 7  # both members, not only the first


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_trailing_garbage_is_refused(tmp_path, codec):
    body = _line(2)
    data = gzip.compress(body) if codec == "gzip" else zstandard.ZstdCompressor().compress(body)
    with pytest.raises(DecodeError, match="trailing garbage"):
        decompress_bytes(data + b"garbage!")
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(data + b"garbage!")
    lab = Lab()
    with pytest.raises(DecodeError, match="trailing garbage"):
        lab.load(path)
    assert lab.counts()["spans"] == 0


def test_gzip_zero_padding_is_accepted():
    body = _line(2)
    assert decompress_bytes(gzip.compress(body) + b"\0" * 512) == body  # as gzip(1) and Python's gzip do


def test_zstd_missing_checksum_is_refused(tmp_path):
    data = zstandard.ZstdCompressor(write_checksum=True).compress(_line(2))
    with pytest.raises(DecodeError, match="missing its checksum"):
        decompress_bytes(data[:-4])
    bad = bytearray(data)
    bad[-1] ^= 1
    with pytest.raises(DecodeError, match="checksum"):
        decompress_bytes(bytes(bad))
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(data[:-4])
    lab = Lab()
    with pytest.raises(DecodeError, match="missing its checksum"):
        lab.load(path)
    assert lab.counts()["spans"] == 0


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_truncated_stream_is_refused(codec):
    body = _line(5)
    data = gzip.compress(body) if codec == "gzip" else zstandard.ZstdCompressor().compress(body)
    for cut in (len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError, match="truncated"):
            decompress_bytes(data[:cut])


def _peak(fn) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    try:
        fn()
        err = None
    except Exception as exc:  # the test inspects it
        err = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return err, peak


def test_decompress_limit_holds_during_expansion():
    bomb = zstd_rle_frame(b"\0", 4096)  # 16 KiB that expand to 512 MiB
    err, peak = _peak(lambda: decompress_bytes(bomb, limit=1 << 20))
    assert isinstance(err, BodyTooLargeError)
    assert peak < 8 << 20, f"{peak:,} bytes allocated"
    gz = gzip_members(b"", b"\0" * (4 << 20), 64)  # 256 MiB of zeros in a few hundred KB
    err, peak = _peak(lambda: decompress_bytes(gz, limit=1 << 20))
    assert isinstance(err, BodyTooLargeError)
    assert peak < 16 << 20, f"{peak:,} bytes allocated"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("zeros.zst", zstd_rle_frame(b"\0", 32_768)),  # 128 KiB -> 4 GiB
        ("zeros.gz", gzip_members(b"", b"\0" * (4 << 20), 1024)),  # ~4 MiB -> 4 GiB
    ],
)
def test_bombs_fail_fast_in_bounded_memory(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    lab = Lab()
    err, peak = _peak(lambda: lab.load(path))
    assert isinstance(err, DecodeError)
    assert peak < 64 << 20, f"{peak:,} bytes allocated"
    assert lab.counts()["spans"] == 0


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_endless_json_document_fails_in_bounded_memory(tmp_path, codec):
    prefix = b'{"resourceSpans":['
    if codec == "gzip":
        data = gzip_members(prefix, b" " * (4 << 20), 64)  # 256 MiB of spaces
    else:
        data = zstd_rle_frame(b" ", 2048, prefix=prefix)
    path = tmp_path / f"open.json.{codec}"
    path.write_bytes(data)
    lab = Lab()
    err, peak = _peak(lambda: lab.load(path, max_request_bytes=8 << 20))
    assert isinstance(err, BodyTooLargeError), err
    assert "max_request_bytes" in str(err)
    assert peak < 64 << 20, f"{peak:,} bytes allocated"


def test_framed_length_checked_before_allocating(tmp_path):
    path = tmp_path / "big.pb"
    path.write_bytes((2**31 - 1).to_bytes(4, "big") + b"\x0a\x00" * 8)  # claims a 2 GiB message
    lab = Lab()
    err, peak = _peak(lambda: lab.load(path, max_request_bytes=1 << 20))
    assert isinstance(err, BodyTooLargeError)
    assert "message 1 at byte 0" in str(err)
    assert peak < 8 << 20
    err, peak = _peak(lambda: lab.load(path))  # under the default limit: a lie costs what is there
    assert isinstance(err, DecodeError)
    assert peak < 64 << 20
