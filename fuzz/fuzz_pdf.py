"""Fuzz target for the PDF text extraction a Cohere channel needs (``uniapi_core.vendors.cohere``
``_pdf_text``, docs/vendor-rules.md "Cohere PDF text"): hostile bytes given to pypdf, inside the
gateway's bounds.

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_pdf.py -max_total_time=60 -timeout=10 /tmp/pdf-corpus fuzz/corpus/pdf

``check(data)`` is the whole oracle; ``tests/core/test_fuzz_corpora.py`` replays
``fuzz/corpus/pdf/`` through it without atheris. The input is the PDF's bytes. It asserts:

* the only refusal is ``ClientError`` with status 400 (``invalid_request``: pypdf could not
  read it; ``unsupported_content``: no text layer, or a password) or 413
  (``document_too_large``: a bound passed), whose message names the part and has no newline
  (it is quoted in a JSON error, never a traceback);
* a success is non-blank text of at most ``MAX_PDF_CHARS`` characters plus the page joins;
* the result is deterministic: the same bytes give the same text, or the same error.

A slow input is a finding too: libFuzzer's ``-timeout`` stands for the event loop the
extraction runs on, which the bounds keep to about a second per request. Coverage
instrumentation makes pypdf about ten times slower, hence 10 s (``missing-root-scan.pdf``,
~0.35 s plain, takes over 3 s instrumented).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # run as a script: make the repository importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._oracle import fuzz  # noqa: E402
from uniapi_core.errors import ClientError  # noqa: E402
from uniapi_core.vendors.cohere import MAX_PDF_CHARS, MAX_PDF_PAGES, _pdf_text  # noqa: E402

WHERE = "messages[0].content[1]"
CODES = {400: {"invalid_request", "unsupported_content"}, 413: {"document_too_large"}}


def _outcome(data: bytes) -> tuple[str, str]:
    try:
        text = _pdf_text(data, WHERE)
    except ClientError as exc:
        assert exc.code in CODES.get(exc.status, ()), (exc.status, exc.code, exc.message)
        assert exc.message.startswith(WHERE + ": "), exc.message
        assert "\n" not in exc.message and "Traceback" not in exc.message, exc.message
        return "error", f"{exc.status} {exc.code} {exc.message}"
    assert isinstance(text, str) and text.strip(), repr(text[:100])
    assert len(text) <= MAX_PDF_CHARS + 2 * MAX_PDF_PAGES, len(text)
    return "text", text


def check(data: bytes) -> None:
    first = _outcome(data)
    assert _outcome(data) == first, "the same bytes gave another result"


if __name__ == "__main__":
    import logging

    from uniapi_core.startup import QUIET_LOGGERS

    for name in QUIET_LOGGERS:  # as the command line does: pypdf's warnings are not findings
        logging.getLogger(name).setLevel(logging.CRITICAL)
    fuzz(check)
