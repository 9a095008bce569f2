"""The shared vendor toolkit (``uniapi_core/vendors/toolkit.py``) and decoder base
(``base.VendorDecoder``).

Each helper replaced per-vendor copies that had drifted. The ``_old_*`` functions below are
those copies, frozen as they were before the merge: every helper must give exactly what each
vendor's copy gave (ids, accepted inputs, error messages and codes), for the parameters that
vendor passes (TC-4, TC-5, REQ-4, docs/contracts.md "Error status mapping").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import re
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider
from uniapi_core.errors import ClientError, DecodeError
from uniapi_core.vendors import anthropic, bedrock, cloudflare, cohere, gemini, toolkit
from uniapi_core.vendors.anthropic import AnthropicStreamDecoder
from uniapi_core.vendors.base import (ChatContext, SSEVendorDecoder, StreamFailed, VendorDecoder,
                                      client_status_for)
from uniapi_core.vendors.bedrock import BedrockStreamDecoder
from uniapi_core.vendors.cloudflare import CloudflareStreamDecoder
from uniapi_core.vendors.cohere import CohereStreamDecoder
from uniapi_core.vendors.gemini import GeminiStreamDecoder
from uniapi_core.vendors.openai import OpenAIStreamDecoder
from uniapi_core.vendors.toolkit import (ALNUM, ALNUM_LOWER_FIRST, STATUS_TYPES,
                                         STATUS_TYPES_NO_409, as_dict, as_list, as_str, bad,
                                         b64decode_loose, call_id, clean_id, count, data_url,
                                         new_call_id, positive_int, retry_after, sniff,
                                         status_error, status_type, typed)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 8
GIF = b"GIF89a" + b"\x00" * 8
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 "


def ctx(response_id: str = "chatcmpl-abc", entropy: Any = None) -> ChatContext:
    return ChatContext(client_model="m", upstream_model="u", provider=Provider(provider="p"),
                       api_key=None, stream=False, include_usage=False,
                       response_id=response_id, created=0, entropy=entropy)


# -- the copies as they were (oracles) ---------------------------------------------------------

_OLD_ID_OK = re.compile(r"[A-Za-z0-9_-]{1,40}\Z")
_OLD_ID_BAD = re.compile(r"[^A-Za-z0-9_-]")
_OLD_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_OLD_LOWER = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _old_anthropic_call_id(c: ChatContext, vendor_id: Any, n: int) -> str:
    if isinstance(vendor_id, str) and 0 < len(vendor_id) <= 40 and \
            not _OLD_ID_BAD.search(vendor_id):
        return vendor_id
    if c.entropy is not None:
        return "call_" + "".join(c.entropy.choice(_OLD_LOWER) for _ in range(24))
    return "call_" + hashlib.sha256(f"{c.response_id}/{n}".encode()).hexdigest()[:24]


def _old_cohere_call_id(c: ChatContext, vendor_id: Any, n: int) -> str:  # = cloudflare's
    if isinstance(vendor_id, str) and _OLD_ID_OK.match(vendor_id):
        return vendor_id
    if c.entropy is not None:
        return "call_" + "".join(c.entropy.choice(_OLD_UPPER) for _ in range(24))
    return "call_" + hashlib.sha256(f"{c.response_id}/{n}".encode()).hexdigest()[:24]


def _old_gemini_call_id(c: ChatContext, vid: Any, n: int) -> str:
    if isinstance(vid, str) and _OLD_ID_OK.match(vid):
        return vid
    if c.entropy is not None:
        return "call_" + "".join(c.entropy.choice(_OLD_UPPER) for _ in range(24))
    return "call_" + hashlib.sha256(f"{c.response_id}:{n}".encode()).hexdigest()[:24]


def _old_anthropic_data_url(url: str, where: str) -> tuple[bytes, str]:
    head, comma, payload = url[5:].partition(",")
    if not comma:
        raise ClientError(f"{where}: malformed data URL", code="invalid_image")
    params = head.split(";")
    if params[-1].strip().lower() == "base64":
        text = re.sub(r"\s+", "", unquote_to_bytes(payload).decode("latin-1")).rstrip("=")
        text += "=" * (-len(text) % 4)
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ClientError(f"{where}: data URL payload is not valid base64",
                              code="invalid_image") from None
    else:
        raw = unquote_to_bytes(payload)
    return raw, params[0]


def _old_gemini_b64(text: str, where: str) -> bytes:
    raw = re.sub(r"\s+", "", text).replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(f"{where}: invalid base64 data", code="invalid_request") from None


def _old_gemini_sniff(data: bytes) -> str | None:
    for magic, media in ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
                         (b"GIF8", "image/gif")):
        if data.startswith(magic):
            return media
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def _old_gemini_data_url(url: str, where: str) -> tuple[str, bytes]:
    head, sep, payload = url[5:].partition(",")
    if not sep:
        raise ClientError(f"{where}: malformed data URL", code="invalid_request")
    params = [p.strip().lower() for p in head.split(";")]
    if "base64" in params[1:]:
        data = _old_gemini_b64(unquote_to_bytes(payload).decode("latin-1")
                               if "%" in payload else payload, where)
    else:
        data = unquote_to_bytes(payload)
    media = params[0]
    if not media or media == "application/octet-stream":
        media = _old_gemini_sniff(data) or ""
    if "/" not in media:
        raise ClientError(f"{where}: cannot tell the media type of the data URL",
                          code="invalid_request")
    return media, data


def _outcome(fn: Any, *args: Any) -> Any:
    """What a call gives: its value, or the ClientError's (message, code)."""
    try:
        return ("ok", fn(*args))
    except ClientError as exc:
        return ("error", exc.message, exc.code)


# -- request checks ----------------------------------------------------------------------------

def test_shape_helpers():
    assert as_str("x") == "x" and as_str(1) == "" and as_str(None) == ""
    d = {"a": 1}
    assert as_dict(d) is d and as_dict([]) == {} and as_dict(None) == {}
    fresh = as_dict(None)
    fresh["k"] = 1
    assert as_dict(None) == {}, "a fresh empty dict each time"
    items = [1]
    assert as_list(items) is items and as_list("ab") == [] and as_list({}) == []
    err = bad("nope")
    assert isinstance(err, ClientError) and err.status == 400 and err.code == "invalid_request"
    assert bad("nope", "invalid_value").code == "invalid_value"


@pytest.mark.parametrize("value,types,expect,expect_strict", [
    (1, (int,), True, True), (True, (int,), False, False), (1.5, (int, float), True, True),
    (False, (int, float), False, False), (True, (bool,), True, False),
    (1, (bool,), False, False), ("1", (int,), False, False), (None, (int,), False, False),
])
def test_typed_bools_only_when_asked(value, types, expect, expect_strict):
    assert typed(value, types) is expect  # Cohere's copy (Cloudflare never asks for bool)
    assert typed(value, types, bools=False) is expect_strict  # Gemini's copy


@given(st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False), st.none(),
                 st.text(max_size=3)))
def test_counts(v):
    old_int = v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0
    old_gem = v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0
    old_co = v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None
    assert positive_int(v) == old_int == old_gem
    assert count(v) == old_co


# -- ids (TC-4, TC-5) --------------------------------------------------------------------------

def test_digest_ids_are_pinned_per_vendor():
    """Without entropy the id is a digest; the separator drifted and stays drifted."""
    c = ctx("chatcmpl-abc")
    slash = "call_" + hashlib.sha256(b"chatcmpl-abc/3").hexdigest()[:24]
    colon = "call_" + hashlib.sha256(b"chatcmpl-abc:3").hexdigest()[:24]
    assert slash != colon
    assert new_call_id(c, 3) == slash  # Anthropic, Cohere, Cloudflare
    assert new_call_id(c, 3, sep=":") == colon  # Gemini
    assert call_id(c, None, 3) == slash and call_id(c, None, 3, sep=":") == colon
    assert re.fullmatch(r"call_[0-9a-f]{24}", slash)


def test_entropy_ids_keep_each_alphabet():
    a = call_id(ctx(entropy=random.Random(5)), None, 0)
    b = call_id(ctx(entropy=random.Random(5)), None, 0, alphabet=ALNUM_LOWER_FIRST)
    assert a != b and a.swapcase() != a
    assert sorted(ALNUM) == sorted(ALNUM_LOWER_FIRST)
    assert a == _old_cohere_call_id(ctx(entropy=random.Random(5)), None, 0)
    assert b == _old_anthropic_call_id(ctx(entropy=random.Random(5)), None, 0)
    assert re.fullmatch(r"call_[A-Za-z0-9]{24}", a) and re.fullmatch(r"call_[A-Za-z0-9]{24}", b)


_VENDOR_IDS = st.one_of(st.none(), st.integers(), st.text(max_size=50),
                        st.from_regex(r"[A-Za-z0-9_-]{1,45}", fullmatch=True))


@settings(max_examples=300)
@given(vid=_VENDOR_IDS, n=st.integers(0, 10_000), rid=st.text(max_size=20),
       seed=st.one_of(st.none(), st.integers(0, 2**32)))
def test_ids_match_every_vendor_copy(vid, n, rid, seed):
    def c() -> ChatContext:
        return ctx(rid, None if seed is None else random.Random(seed))

    assert call_id(c(), vid, n, alphabet=ALNUM_LOWER_FIRST) == _old_anthropic_call_id(c(), vid, n)
    assert call_id(c(), vid, n) == _old_cohere_call_id(c(), vid, n)
    assert call_id(c(), vid, n, sep=":") == _old_gemini_call_id(c(), vid, n)
    assert call_id(c(), vid, n) == call_id(c(), vid, n), "deterministic"


def test_valid_vendor_ids_are_kept():
    assert call_id(ctx(), "toolu_01A-b", 0) == "toolu_01A-b"
    assert call_id(ctx(), "x" * 40, 0) == "x" * 40
    assert call_id(ctx(), "x" * 41, 0).startswith("call_")
    assert call_id(ctx(), "a b", 0).startswith("call_")
    assert call_id(ctx(), "abc\n", 0).startswith("call_"), "\\Z, not $"


def _old_anthropic_ids(raw: list[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    used = {i for i in raw if not _OLD_ID_BAD.search(i) and 0 < len(i) <= 64}
    for i in raw:
        if i in ids:
            continue
        if i in used:
            ids[i] = i
            continue
        clean = _OLD_ID_BAD.sub("_", i)[:64] or "_"
        if clean in used:
            clean = clean[:55] + "_" + hashlib.sha256(i.encode()).hexdigest()[:8]
        used.add(clean)
        ids[i] = clean
    return ids


def _old_cohere_ids(raw: list[str]) -> dict[str, str]:
    used = {i for i in raw if _OLD_ID_OK.match(i)}
    ids: dict[str, str] = {}
    for vid in raw:
        if vid in ids:
            continue
        if vid in used:
            ids[vid] = vid
            continue
        clean = _OLD_ID_BAD.sub("_", vid)[:40] or "_"
        if clean in used:
            digest = hashlib.sha256(vid.encode("utf-8", "replace")).hexdigest()[:8]
            clean = clean[:31] + "_" + digest
        used.add(clean)
        ids[vid] = clean
    return ids


_HISTORY_IDS = st.lists(st.one_of(st.sampled_from(["a", "a.b", "a_b", "a/b", "", "_", "é"]),
                                  st.text(alphabet="ab_/.", max_size=70),
                                  st.text(max_size=8).filter(lambda s: s.isprintable())),
                        max_size=8)


@settings(max_examples=300)
@given(_HISTORY_IDS)
def test_history_ids_match_anthropic_and_cohere(raw):
    new_a: dict[str, str] = {}
    used = {i for i in raw if not toolkit.ID_BAD.search(i) and 0 < len(i) <= 64}
    for i in raw:
        if i not in new_a:
            new_a[i] = i if i in used else clean_id(i, used, limit=64)
    assert new_a == _old_anthropic_ids(raw)
    ids = cohere._Ids([{"tool_calls": [{"id": i} for i in raw]}])
    assert {i: ids(i) for i in raw} == _old_cohere_ids(raw)
    assert len(set(new_a.values())) == len(new_a), "injective (TC-5)"


def test_clean_id_hashes_on_clash_and_keeps_the_drifted_encoding():
    used = {"a_b"}
    out = clean_id("a.b", used, limit=64)
    assert out == "a_b_" + hashlib.sha256(b"a.b").hexdigest()[:8] and out in used
    with pytest.raises(UnicodeEncodeError):  # Anthropic's strict encoding, as before
        clean_id("\ud800", {"_"}, limit=64)
    assert clean_id("\ud800", {"_"}, limit=40, errors="replace").startswith("__")  # Cohere's


# -- media (REQ-4) ------------------------------------------------------------------------------

@pytest.mark.parametrize("data,media", [(PNG, "image/png"), (JPEG, "image/jpeg"),
                                        (GIF, "image/gif"), (WEBP, "image/webp"),
                                        (b"RIFF\x00\x00\x00\x00WAVE", None), (b"", None),
                                        (b"%PDF-1.7", None)])
def test_sniff(data, media):
    assert sniff(data) == media == _old_gemini_sniff(data)


@given(st.binary(max_size=64), st.sampled_from(["image/png", "", "application/octet-stream",
                                               "audio/wav", " IMAGE/JPEG "]))
def test_data_url_round_trips(data, mime):
    encoded = base64.b64encode(data).decode()
    for url in (f"data:{mime};base64,{encoded}",
                f"data:{mime};base64,{encoded.rstrip('=')}",  # padding left out
                f"data:{mime};base64,{quote(encoded)}",  # percent-encoded
                f"data:{mime};base64,{' '.join(encoded[i:i + 4] for i in range(0, 99, 4))}"):
        assert data_url(url, "w", flavour="anthropic") == (mime, data)
        try:
            media, got = data_url(url, "w", flavour="gemini")
        except ClientError as exc:
            assert "cannot tell the media type" in exc.message
            continue
        declared = mime.strip().lower()
        assert got == data and media == (declared if declared not in
                                         ("", "application/octet-stream") else sniff(data))
    raw = f"data:{mime},{quote(data)}"
    assert data_url(raw, "w", flavour="anthropic") == (mime, data)


_URL_CHARS = st.sampled_from(list("data:;,base64=%+/-_ \n\tAQIDBAgimage/pnjé") + ["%2B", "%3D"])


@settings(max_examples=500)
@given(st.one_of(
    st.lists(_URL_CHARS, max_size=30).map(lambda x: "data:" + "".join(x)),
    st.tuples(st.sampled_from(["image/png", "", "application/octet-stream", "x"]),
              st.sampled_from([";base64", ";base64;charset=x", ";charset=x;base64", "",
                               "; BASE64 "]),
              st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode()),
              st.sampled_from(["", "=", "==", "===", " ", "-", "_", "%3D", "é"]))
    .map(lambda t: f"data:{t[0]}{t[1]},{t[2]}{t[3]}")))
def test_data_url_matches_both_old_readers(url):
    assert _outcome(lambda u, w: data_url(u, w, flavour="anthropic")[::-1], url, "m[0]") == \
        _outcome(_old_anthropic_data_url, url, "m[0]")
    assert _outcome(lambda u, w: data_url(u, w, flavour="gemini"), url, "m[0]") == \
        _outcome(_old_gemini_data_url, url, "m[0]")


@given(st.text(alphabet="AQIDBAgim+/-_= \n", max_size=24))
def test_b64_matches_gemini_audio_reader(text):
    def new(t: str) -> Any:
        try:
            return b64decode_loose(t)
        except (binascii.Error, ValueError):
            return "error"

    def old(t: str) -> Any:
        try:
            return _old_gemini_b64(t, "w")
        except ClientError:
            return "error"

    assert new(text) == old(text)


def test_data_url_errors_name_the_place_with_each_vendor_code():
    for flavour, code in (("anthropic", "invalid_image"), ("gemini", "invalid_request")):
        with pytest.raises(ClientError) as e:
            data_url("data:image/png;base64", "messages[0]", flavour=flavour)
        assert e.value.message == "messages[0]: malformed data URL" and e.value.code == code
    with pytest.raises(ClientError) as e:
        data_url("data:image/png;base64,@@@@", "m", flavour="anthropic")
    assert e.value.message == "m: data URL payload is not valid base64"
    with pytest.raises(ClientError) as e:
        data_url("data:image/png;base64,@@@@", "m", flavour="gemini")
    assert e.value.message == "m: invalid base64 data"
    with pytest.raises(ClientError) as e:
        data_url("data:;base64,AAAA", "m", flavour="gemini")
    assert e.value.message == "m: cannot tell the media type of the data URL"


def test_vendors_use_the_toolkit():
    """One copy of each helper: the vendors hold the toolkit's functions, not their own."""
    for module in (anthropic, bedrock, cohere, cloudflare, gemini):
        src = open(module.__file__, encoding="utf-8").read()
        for name in ("def _bad", "def _fail", "def _str", "def _dict", "def _list", "def _is",
                     "def _count", "def _int", "def _call_id", "def _new_id", "def _sniff",
                     "def _data_url", "_ALNUM", "_ID_OK", "_ID_BAD", "_STATUS_TYPES"):
            assert not re.search(rf"^{name}\b", src, re.M), (module.__name__, name)


# -- error envelopes -----------------------------------------------------------------------------

def test_status_types_and_the_409_drift():
    assert status_type(409) == "invalid_request_error"  # Anthropic, Cohere, Cloudflare, base
    assert status_type(409, None, STATUS_TYPES_NO_409) == "upstream_error"  # Gemini, Bedrock
    assert status_type(409, "rate_limit_error", STATUS_TYPES_NO_409) == "rate_limit_error"
    assert status_type(404, "rate_limit_error") == "not_found_error", "the status comes first"
    assert status_type(529, "invalid_request_error") == "server_error"
    assert status_type(418) == "upstream_error" and status_type(418, "x") == "x"
    assert set(STATUS_TYPES) - set(STATUS_TYPES_NO_409) == {409}


def test_status_error_and_retry_after():
    headers = (("Retry-After", "7"), ("x", "y"), ("retry-after", "9"))
    assert retry_after(headers) == (("Retry-After", "7"),)
    assert retry_after(()) == ()
    err = status_error("m", 529, "server_error", "overloaded_error", retry_after(headers))
    assert (err.message, err.kind, err.upstream_status, err.status, err.type, err.code,
            err.headers) == ("m", "status", 529, client_status_for(529), "server_error",
                             "overloaded_error", (("Retry-After", "7"),))


# -- the decoder base (DEC-1, DEC-2, DEC-4) -------------------------------------------------------

def _decoders() -> list[Any]:
    c = ChatContext(client_model="m", upstream_model="gemini-2.5-flash",
                    provider=Provider(provider="p"), api_key=None, stream=True,
                    include_usage=False, response_id="chatcmpl-abc", created=0)
    return [OpenAIStreamDecoder("m"), GeminiStreamDecoder(c), BedrockStreamDecoder(c),
            AnthropicStreamDecoder(c), CohereStreamDecoder(c), CloudflareStreamDecoder(c)]


def test_every_stream_decoder_is_a_vendor_decoder():
    for d in _decoders():
        assert isinstance(d, VendorDecoder), type(d)
        assert isinstance(d, SSEVendorDecoder) != isinstance(d, BedrockStreamDecoder)


def test_any_call_after_close_is_a_closed_error_dec_2():
    for d in _decoders():
        d.close()
        for call in (lambda: d.feed(b"data: {}\n\n"), d.close):
            with pytest.raises(DecodeError) as e:
                call()
            assert e.value.kind == "closed", type(d)


def test_items_before_an_error_come_first_then_the_error_dec_1():
    d = OpenAIStreamDecoder("m")
    items = d.feed(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: nope\n\n')
    assert len(items) == 1
    with pytest.raises(DecodeError) as e:
        d.feed(b"")
    assert e.value.kind == "invalid_json"
    with pytest.raises(DecodeError):
        d.close()


def test_nothing_is_read_after_a_terminal_failure_dec_4():
    c = ChatContext(client_model="m", upstream_model="gemini-2.5-flash",
                    provider=Provider(provider="p"), api_key=None, stream=True,
                    include_usage=False, response_id="chatcmpl-abc", created=0)
    d = GeminiStreamDecoder(c)
    (failed,) = d.feed(b'data: {"error": {"code": 429, "message": "slow down"}}\n\n')
    assert isinstance(failed, StreamFailed) and failed.error.status == 429
    assert d.feed(b"\xff\xfe\n\ndata: [1]\n\n") == []  # neither framed nor parsed
    assert d.close() == []
