"""Fuzz target for the ``multipart/form-data`` parser (``uniapi_core.multipart``).

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_multipart.py -max_total_time=60 fuzz/corpus/multipart

``check(data)`` is the whole oracle; ``tests/core/test_fuzz_corpora.py`` replays
``fuzz/corpus/multipart/`` through it without atheris. The input is a body; when it starts with
``--`` its first line names the boundary, else the boundary is ``b0und``. It asserts:

* only ``ClientError`` (400 ``invalid_multipart``/``too_many_parts``, 413 ``part_too_large``)
  escapes ``parse_form``, with small limits (8 parts, 64 bytes per part) so they are reached;
* feeding ``FormParser`` the body whole, one byte at a time, in fixed strides and at cut points
  read from the data gives the same ``Form`` or the same refusal;
* a parsed form re-encoded with ``Form.encode()`` parses to the same form, and
  ``with_field("model", …)`` changes the first such field only.
"""

from __future__ import annotations

import sys
from typing import Any

if __name__ == "__main__":  # run as a script: make the repository importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._oracle import _splits, fuzz  # noqa: E402
from uniapi_core.errors import ClientError  # noqa: E402
from uniapi_core.multipart import Form, FormParser, boundary_of, parse_form  # noqa: E402

LIMITS = {"max_parts": 8, "max_part_bytes": 64}
CODES = {(400, "invalid_multipart"), (400, "too_many_parts"), (413, "part_too_large")}


def content_type(data: bytes) -> str:
    if data.startswith(b"--"):
        line = data[2:].split(b"\r\n", 1)[0].split(b"\n", 1)[0]
        boundary = line.decode("latin-1")
        return f'multipart/form-data; boundary="{boundary}"'
    return "multipart/form-data; boundary=b0und"


def run(ctype: str, pieces: list[bytes]) -> tuple[str, Any]:
    """("form", Form) or ("refused", (status, code))."""
    try:
        parser = FormParser(boundary_of(ctype), **LIMITS)
        for piece in pieces:
            parser.feed(piece)
        return "form", parser.close()
    except ClientError as exc:
        assert (exc.status, exc.code) in CODES, (exc.status, exc.code, exc.message)
        return "refused", (exc.status, exc.code)


def _parts(form: Form) -> list[tuple[Any, ...]]:
    return [(p.name, p.filename, p.content_type, p.data) for p in form.parts]


def check(data: bytes) -> None:
    """The fuzz oracle: raise ``AssertionError`` (or anything unexpected) on a finding."""
    ctype = content_type(data)
    ref = run(ctype, [data[i:i + 1] for i in range(len(data))])
    for pieces in _splits(data):
        got = run(ctype, pieces)
        if ref[0] == "form" and got[0] == "form":
            assert _parts(got[1]) == _parts(ref[1]), (pieces, got, ref)
        else:
            assert got == ref or got[1] == ref[1], (pieces, got, ref)
    try:
        whole = parse_form(ctype, data, **LIMITS)
    except ClientError as exc:
        assert ref[0] == "refused" and (exc.status, exc.code) == ref[1], (exc, ref)
        return
    assert ref[0] == "form" and _parts(whole) == _parts(ref[1])
    again = parse_form(ctype, whole.encode(), **LIMITS)
    assert _parts(again) == _parts(whole), "encode() round-trips"
    if any(p.name == "model" for p in whole.parts):
        first = next(i for i, p in enumerate(whole.parts) if p.name == "model")
        renamed = parse_form(ctype, whole.with_field("model", "x").encode(), **LIMITS)
        assert [b"x" if i == first else p.data for i, p in enumerate(whole.parts)] == \
            [p.data for p in renamed.parts]


if __name__ == "__main__":
    fuzz(check)
