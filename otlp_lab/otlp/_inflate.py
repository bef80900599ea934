"""Output-bounded, whole-stream gzip and zstd decompression.

Every gzip member (RFC 1952 allows several, one after another) and every zstd frame
(RFC 8878; skippable frames are skipped) is decoded, and anything else after them is
refused, as is a stream cut short before its trailer or checksum. Output comes out in
pieces of at most about 256 KiB however the input is built: gzip through zlib's
``max_length``, zstd one block at a time (a block never holds more than 128 KiB). So a
size limit holds *during* expansion, and a compression bomb costs at most the limit.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator
from typing import IO

from otlp_lab.errors import BodyTooLargeError, DecodeError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_IN_CHUNK = 1 << 16  # compressed bytes read at a time
_OUT_CHUNK = 1 << 18  # most bytes of output per step
_ZSTD_BLOCK_MAX = 1 << 17  # RFC 8878: a block's content never exceeds 128 KiB


class _Input:
    """A byte source read exactly ``n`` bytes at a time (fewer only at the end)."""

    __slots__ = ("_read", "_buf", "_pos")

    def __init__(self, read: Callable[[int], bytes], head: bytes = b"") -> None:
        self._read = read
        self._buf = head
        self._pos = 0

    def take(self, n: int) -> bytes:
        end = self._pos + n
        while len(self._buf) < end:
            more = self._read(max(_IN_CHUNK, end - len(self._buf)))
            if not more:
                break
            self._buf = self._buf[self._pos :] + more
            end -= self._pos
            self._pos = 0
        out = self._buf[self._pos : end]
        self._pos = min(end, len(self._buf))
        return out

    def some(self) -> bytes:
        """Whatever is buffered, or the next chunk from the source (empty at the end)."""
        if self._pos < len(self._buf):
            out = self._buf[self._pos :]
        else:
            out = self._read(_IN_CHUNK)
        self._buf, self._pos = b"", 0
        return out

    def push_back(self, data: bytes) -> None:
        self._buf = data + self._buf[self._pos :]
        self._pos = 0


def _only_zeros(src: _Input, first: bytes) -> bool:
    """Whether the rest of the input is zero bytes (padding that gzip tools accept)."""
    chunk = first
    while chunk:
        if chunk.strip(b"\0"):
            return False
        chunk = src.some()
    return True


def _gunzip(src: _Input) -> Iterator[bytes]:
    member = 0
    while True:
        head = src.take(2)
        if not head:
            return
        if head != GZIP_MAGIC:
            if member and _only_zeros(src, head):
                return
            where = f"after gzip member {member}" if member else "at the start"
            raise DecodeError(
                f"gzip data is corrupt: {len(head)}+ bytes that are not gzip {where} (trailing garbage)"
            )
        member += 1
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = head
        while not d.eof:
            if not data:
                out = d.decompress(b"", _OUT_CHUNK)  # output still held back by the last step
                if out:
                    yield out
                    continue
                data = src.some()
                if not data:
                    raise DecodeError(
                        f"gzip data is truncated (member {member} ends before its trailer): the file looks cut short"
                    )
            try:
                out = d.decompress(data, _OUT_CHUNK)
            except zlib.error as exc:  # includes a CRC or length mismatch in the trailer
                raise DecodeError(f"gzip data is corrupt in member {member} ({exc})") from None
            data = d.unconsumed_tail
            if out:
                yield out
        src.push_back(d.unused_data + data)


def _unzstd(src: _Input) -> Iterator[bytes]:
    import zstandard

    frames = 0
    while True:
        magic = src.take(4)
        if not magic:
            return
        n = int.from_bytes(magic.ljust(4, b"\0"), "little")
        if len(magic) == 4 and 0x184D2A50 <= n <= 0x184D2A5F:  # a skippable frame
            size = src.take(4)
            if len(size) < 4 or len(src.take(int.from_bytes(size, "little"))) < int.from_bytes(
                size, "little"
            ):
                raise DecodeError("zstd data is truncated (a skippable frame is cut short)")
            continue
        if magic != ZSTD_MAGIC:
            where = f"after zstd frame {frames}" if frames else "at the start"
            raise DecodeError(
                f"zstd data is corrupt: bytes that are not a zstd frame {where} (trailing garbage)"
            )
        frames += 1
        fhd = src.take(1)
        if not fhd:
            raise DecodeError(f"zstd data is truncated (frame {frames} has no header)")
        flags = fhd[0]
        single = bool(flags & 0x20)
        checksum = bool(flags & 0x04)
        fcs = (0 if not single else 1, 2, 4, 8)[flags >> 6]
        rest_len = (0 if single else 1) + (0, 1, 2, 4)[flags & 3] + fcs
        rest = src.take(rest_len)
        if len(rest) < rest_len:
            raise DecodeError(f"zstd data is truncated (frame {frames} header is cut short)")
        d = zstandard.ZstdDecompressor().decompressobj()
        try:
            d.decompress(magic + fhd + rest)
            while True:
                bh = src.take(3)
                if len(bh) < 3:
                    raise DecodeError(f"zstd data is truncated (frame {frames} ends before its last block)")
                v = int.from_bytes(bh, "little")
                last, btype, bsize = v & 1, (v >> 1) & 3, v >> 3
                if btype == 3 or bsize > _ZSTD_BLOCK_MAX:
                    raise DecodeError(f"zstd data is corrupt (frame {frames} has an invalid block header)")
                want = 1 if btype == 1 else bsize
                content = src.take(want)
                if len(content) < want:
                    raise DecodeError(f"zstd data is truncated (frame {frames} has a block cut short)")
                out = d.decompress(bh + content)
                if out:
                    yield out
                if last:
                    break
            if checksum:
                ck = src.take(4)
                if len(ck) < 4:
                    raise DecodeError(
                        f"zstd data is truncated (frame {frames} is missing its checksum): the file looks cut short"
                    )
                d.decompress(ck)
        except zstandard.ZstdError as exc:  # includes a checksum mismatch
            raise DecodeError(f"zstd data is corrupt in frame {frames} ({exc})") from None
        if not d.eof:
            raise DecodeError(f"zstd data is corrupt (frame {frames} does not end where its blocks say)")


class InflatingReader(io.RawIOBase):
    """A readable stream of the decompressed content of a gzip or zstd stream.

    ``limit`` bounds the total output: reading past it raises :class:`BodyTooLargeError`
    having produced at most ``limit`` bytes plus one step.
    """

    def __init__(self, raw: IO[bytes], codec: str, *, limit: int | None = None, head: bytes = b"") -> None:
        src = _Input(raw.read, head)
        self._chunks = _gunzip(src) if codec == "gzip" else _unzstd(src)
        self._codec = codec
        self._pending = memoryview(b"")
        self._limit = limit
        self.produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self.produced += len(chunk)
            if self._limit is not None and self.produced > self._limit:
                raise BodyTooLargeError(
                    f"decompressed {self._codec} data exceeds the {self._limit:,}-byte limit"
                )
            self._pending = memoryview(chunk)
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def codec_of(head: bytes) -> str | None:
    """``"gzip"``, ``"zstd"`` or None from a stream's first bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def open_decompressed(raw: IO[bytes], *, limit: int | None = None) -> io.BufferedReader:
    """``raw`` as a peekable stream, decompressed if its first bytes say gzip or zstd."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, 1 << 20)  # type: ignore[arg-type]
    codec = codec_of(buffered.peek(4)[:4])
    if codec is None:
        return buffered
    return io.BufferedReader(InflatingReader(buffered, codec, limit=limit), 1 << 20)


def decompress_bytes(data: bytes, *, limit: int | None = None) -> bytes:
    """gzip/zstd/raw ``data`` decompressed, refusing more than ``limit`` bytes of output.

    Every gzip member and zstd frame is decoded; trailing garbage, a stream cut short and a
    failing checksum are refused. Decompression stops as soon as the output passes
    ``limit`` (a compression bomb costs at most ``limit`` bytes).

    Raises
    ------
    BodyTooLargeError
        The output would exceed ``limit``.
    DecodeError
        The compressed stream is truncated, corrupt or followed by other bytes.
    """
    codec = codec_of(data[:4])
    if codec is None:
        return data
    reader = InflatingReader(io.BytesIO(data), codec, limit=limit or None)
    out = bytearray()
    buf = bytearray(_OUT_CHUNK)
    while n := reader.readinto(buf):
        out += buf[:n]
    return bytes(out)
