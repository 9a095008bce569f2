"""``multipart/form-data`` bodies (``/v1/audio/transcriptions``): parse, check, rebuild.

Theory of operation
-------------------
A thin wrapper around ``multipart.PushMultipartParser`` (the ``multipart`` package: a sans-IO
push parser, strict about truncation). ``FormParser`` is fed the body in any number of chunks
(``feed``) and ``close`` returns the ``Form``: its parts in order, each with its headers as
received (names Title-Cased by the parser), its ``name``/``filename``/``content_type`` and its
bytes. Any split of the same body gives the same ``Form``: the library decides whether what
comes before the first delimiter is acceptable from what it still holds, which depends on how
the body was cut, so the parser holds that part (the preamble, at most ``MAX_PREAMBLE``
bytes) and hands it over whole, with the first delimiter and the two bytes after it.

Every refusal is a ``ClientError``:

- a ``Content-Type`` that is not ``multipart/form-data`` or has no ``boundary`` → 400
  ``invalid_multipart``;
- a body that is not valid multipart, or ends before its closing delimiter (truncated) → 400
  ``invalid_multipart``;
- no delimiter within the first ``MAX_PREAMBLE`` bytes (64 KiB) → 400 ``invalid_multipart``;
- more than ``max_parts`` parts (1000) → 400 ``too_many_parts``;
- a part with more than ``max_part_bytes`` bytes (26 MiB: the 25 MB OpenAI accepts, plus
  room) → 413 ``part_too_large``, counted as the bytes arrive (before the part is complete).

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

__all__ = ["MAX_PARTS", "MAX_PART_BYTES", "MAX_PREAMBLE", "Part", "Form", "FormParser", "boundary_of",
           "parse_form"]

MAX_PARTS = 1000
MAX_PART_BYTES = 26 << 20
#: bytes before the first delimiter a body may carry (clients send none)
MAX_PREAMBLE = 64 << 10


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
        #: the body until its first delimiter and two more bytes are in (None: handed over)
        self._preamble: bytearray | None = bytearray()
        self._first = b"--" + boundary.encode("latin-1", "replace")
        self._found = -1  # where the first delimiter starts in it, once seen

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if (held := self._preamble) is not None:
            held += chunk
            if self._found < 0:  # look only where a delimiter could now be whole
                self._found = held.find(self._first, max(0, len(held) - len(chunk)
                                                         - len(self._first) + 1))
            # a delimiter must start within MAX_PREAMBLE bytes, however the body is cut
            if self._found > MAX_PREAMBLE or (
                    self._found < 0 and len(held) >= MAX_PREAMBLE + len(self._first)):
                raise ClientError(f"invalid multipart/form-data body: no boundary in its "
                                  f"first {MAX_PREAMBLE} bytes", code="invalid_multipart")
            if self._found < 0 or len(held) < self._found + len(self._first) + 2:
                return
            chunk, self._preamble = bytes(held), None
        self._run(chunk)

    def close(self) -> Form:
        if self._preamble:  # the first delimiter never came whole
            chunk, self._preamble = bytes(self._preamble), None
            self._run(chunk)
        self._preamble = None
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
