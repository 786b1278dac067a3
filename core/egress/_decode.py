"""Bounded, incremental content decoding (the decompression-bomb guard).

gzip and deflate bodies are decoded piece by piece with `zlib.decompressobj`
and `max_length`, so no call ever produces more than the bytes left under the
response cap (plus one, to notice the overflow): a 10 GB gzip bomb costs the
core at most the cap in memory and stops there with EGRESS_TOO_LARGE. Other
codings are passed through undecoded, counted against the same cap, with
their Content-Encoding header kept so the plugin knows.
"""

from __future__ import annotations

import zlib

from vivified.core.egress._errors import too_large, upstream_failed

DECODED = frozenset({"gzip", "x-gzip", "deflate"})


class BodyDecoder:
    """Turns raw body bytes into the body a plugin gets, within `limit` bytes."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        self.coding = content_encoding.strip().lower()
        self.decoding = self.coding in DECODED
        self._limit = limit
        # Compressed input is bounded too: a stream of empty gzip members
        # decodes to nothing but must not run forever within the size cap.
        self.raw_limit = limit * 2 + 65536 if self.decoding else limit
        self._produced = 0
        self._raw = 0
        self._pending = b""
        self._z: zlib._Decompress | None = None

    @property
    def produced(self) -> int:
        return self._produced

    def _count(self, piece: bytes) -> bytes:
        self._produced += len(piece)
        if self._produced > self._limit:
            raise too_large(f"the response body exceeds {self._limit} bytes")
        return piece

    def _start(self, data: bytes) -> zlib._Decompress:
        if self.coding == "deflate":
            # RFC 9110 deflate is zlib-wrapped, but many servers send raw deflate.
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        self._raw += len(data)
        if self._raw > self.raw_limit:
            raise too_large(f"the response body exceeds {self._limit} bytes")
        if not self.decoding:
            return self._count(data)
        data = self._pending + data
        self._pending = b""
        if self._z is None:
            if self.coding == "deflate" and len(data) < 2:
                self._pending = data
                return b""
            self._z = self._start(data)
        out = bytearray()
        try:
            while data:
                out += self._count(self._z.decompress(data, self._limit - self._produced + 1))
                data = self._z.unconsumed_tail
                if self._z.eof:
                    rest = self._z.unused_data
                    if self.coding == "deflate" or not rest.startswith(b"\x1f\x8b"):
                        break  # trailing bytes after the stream are ignored, as browsers do
                    self._z, data = self._start(rest), rest  # the next gzip member
        except zlib.error:
            raise upstream_failed("the upstream sent a corrupt compressed body", "bad_encoding") from None
        return bytes(out)

    def finish(self) -> bytes:
        if self._pending:  # one byte is never a complete deflate stream
            raise upstream_failed("the upstream sent a corrupt compressed body", "bad_encoding")
        if self._z is None or self._z.eof:
            return b""
        try:
            return self._count(self._z.flush())
        except zlib.error:
            raise upstream_failed("the upstream sent a corrupt compressed body", "bad_encoding") from None
