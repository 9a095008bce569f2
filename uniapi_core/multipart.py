"""``multipart/form-data`` bodies (``/v1/audio/transcriptions``): parse, check, rebuild.

Theory of operation
-------------------
A thin wrapper around ``multipart.PushMultipartParser`` (the ``multipart`` package: a sans-IO
push parser, strict about truncation). ``FormParser`` is fed the body in any number of chunks
(``feed``) and ``close`` returns the ``Form``: its parts in order, each with its headers as
received (names Title-Cased by the parser), its ``name``/``filename``/``content_type`` and its
bytes. Any split of the same body gives the same ``Form``. The library's verdict on some
malformed bodies depends on where its chunks begin (a preamble ending in a bare LF, a bare LF
inside a header line: refused or accepted by the cut), so the parser never hands it the
client's chunks: it hands it the body in ``FEED`` bytes at a time from the start, and the rest
at ``close``. The library sees the same chunks whatever the cut, and a part's size is known at
most ``FEED`` bytes late.

Every refusal is a ``ClientError``:

- a ``Content-Type`` that is not ``multipart/form-data`` or has no ``boundary`` → 400
  ``invalid_multipart``;
- a body that is not valid multipart, or ends before its closing delimiter (truncated) → 400
  ``invalid_multipart``;
- more than ``max_parts`` parts (1000) → 400 ``too_many_parts``;
- a part with more than ``max_part_bytes`` bytes (26 MiB: the 25 MB OpenAI accepts, plus
  room) → 413 ``part_too_large``, counted as the body is handed to the library (before the
  part is complete, at most ``FEED`` bytes after its limit was passed).

``Form.with_field(name, value)`` replaces one text field (the ``model`` a provider knows under
another name) and ``Form.encode()`` writes the form again with the same boundary, so the
request's ``Content-Type`` still holds; the gateway rebuilds only then and otherwise forwards the
client's bytes untouched.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import multipart as _mp

from .errors import ClientError

__all__ = ["MAX_PARTS", "MAX_PART_BYTES", "FEED", "Part", "Form", "FormParser", "boundary_of",
           "parse_form"]

MAX_PARTS = 1000
MAX_PART_BYTES = 26 << 20
#: the library is handed the body in pieces of this size, from its start (module docstring)
FEED = 64 << 10


@attrs.frozen
class Part:
    """One part of a form."""

    name: str
    headers: tuple[tuple[str, str], ...]
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@attrs.frozen
class Form:
    """A parsed ``multipart/form-data`` body: its boundary and its parts, in order."""

    boundary: str
    parts: tuple[Part, ...]

    def get(self, name: str) -> Part | None:
        """The first part called ``name``."""
        return next((p for p in self.parts if p.name == name), None)

    def with_field(self, name: str, value: str) -> "Form":
        """The same form with the first ``name`` part's value replaced (headers kept)."""
        done = False
        parts = []
        for p in self.parts:
            if p.name == name and not done:
                p = attrs.evolve(p, data=value.encode("utf-8"))
                done = True
            parts.append(p)
        if not done:
            parts.append(Part(name, (("Content-Disposition",
                                      f'form-data; name="{_mp.header_quote(name)}"'),),
                              value.encode("utf-8")))
        return attrs.evolve(self, parts=tuple(parts))

    def encode(self) -> bytes:
        """The body again, with the same boundary."""
        return b"".join(self._chunks())

    def _chunks(self) -> Iterator[bytes]:
        delimiter = b"--" + self.boundary.encode("latin-1")
        for p in self.parts:
            yield delimiter + b"\r\n"
            for k, v in p.headers:
                yield f"{k}: {v}\r\n".encode("utf-8")
            yield b"\r\n"
            yield p.data
            yield b"\r\n"
        yield delimiter + b"--\r\n"


def boundary_of(content_type: str | None) -> str:
    """The boundary of a ``multipart/form-data`` content type; ``ClientError`` 400 if none."""
    kind, options = _mp.parse_options_header(content_type or "")
    if kind.lower() != "multipart/form-data":
        raise ClientError("the body must be multipart/form-data", code="invalid_multipart")
    boundary = options.get("boundary", "")
    if not boundary or len(boundary) > 200 or any(c in boundary for c in "\r\n"):
        raise ClientError("the multipart/form-data Content-Type has no usable boundary",
                          code="invalid_multipart")
    return boundary


class FormParser:
    """Incremental: ``feed`` the body in any chunks, then ``close`` for the ``Form``."""

    def __init__(self, boundary: str, *, max_parts: int = MAX_PARTS,
                 max_part_bytes: int = MAX_PART_BYTES) -> None:
        self.boundary = boundary
        self._max_parts = max_parts
        self._max_bytes = max_part_bytes
        try:
            self._parser = _mp.PushMultipartParser(boundary)
        except _mp.MultipartError:
            raise ClientError("the multipart/form-data boundary is not usable",
                              code="invalid_multipart") from None
        self._parts: list[Part] = []
        self._segment: _mp.MultipartSegment | None = None
        self._data: list[bytes] = []
        self._size = 0
        self._held = bytearray()  # what came since the last FEED-sized piece went

    def feed(self, chunk: bytes) -> None:
        held = self._held
        held += chunk
        if len(held) >= FEED:
            whole = len(held) - len(held) % FEED
            pieces = bytes(held[:whole])
            del held[:whole]
            for at in range(0, whole, FEED):
                self._run(pieces[at:at + FEED])

    def close(self) -> Form:
        if self._held:
            rest = bytes(self._held)
            self._held.clear()
            self._run(rest)
        self._run(b"")
        return Form(self.boundary, tuple(self._parts))

    def _run(self, chunk: bytes) -> None:
        try:
            for event in self._parser.parse(chunk):
                if isinstance(event, _mp.MultipartSegment):
                    if len(self._parts) >= self._max_parts:
                        raise ClientError(f"the form has more than {self._max_parts} parts",
                                          code="too_many_parts")
                    self._segment, self._data, self._size = event, [], 0
                elif event is None:
                    seg = self._segment
                    assert seg is not None
                    self._parts.append(Part(seg.name or "", tuple(seg.headerlist),
                                            b"".join(self._data), seg.filename,
                                            seg.content_type))
                    self._segment, self._data = None, []
                else:
                    self._size += len(event)
                    if self._size > self._max_bytes:
                        raise ClientError(
                            f"a form part is larger than {self._max_bytes} bytes",
                            status=413, code="part_too_large")
                    self._data.append(bytes(event))
        except _mp.MultipartError as exc:
            text = str(exc)
            if "end of multipart stream" in text:
                text = "the multipart body is truncated (no closing boundary)"
            raise ClientError(f"invalid multipart/form-data body: {text}",
                              code="invalid_multipart") from None


def parse_form(content_type: str | None, body: bytes, *, max_parts: int = MAX_PARTS,
               max_part_bytes: int = MAX_PART_BYTES) -> Form:
    """Parse a whole body (see the module docstring for the refusals)."""
    parser = FormParser(boundary_of(content_type), max_parts=max_parts,
                        max_part_bytes=max_part_bytes)
    parser.feed(body)
    return parser.close()
