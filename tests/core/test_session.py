"""One client connection driven by hand through its one door, ``handle(event, now, wall)``:
events in, actions out, no sockets."""

from __future__ import annotations

import base64
import json
import random

from uniapi_core.config import load_config
from uniapi_core.gateway import Gateway, Settings
from uniapi_core.connection import Connection
from uniapi_core.events import (
    ClientData,
    Close,
    DeadlineReached,
    DrainStarted,
    Fetch,
    FetchDone,
    FetchResult,
    PauseUpstream,
    ResumeUpstream,
    Served,
    StartUpstream,
    StopUpstream,
    UpstreamData,
    UpstreamEnded,
    UpstreamFailed,
    UpstreamHead,
    Watch,
    Write,
    merge_writes,
)
from uniapi_core.session import Session

CONFIG = """
providers:
  - {provider: oa, base_url: "http://u/v1/chat/completions", api: k, model: [m]}
  - {provider: an, base_url: "http://a/v1/messages", api: k, model: [claude]}
api_keys:
  - api: sk-s
"""
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def session(**settings) -> Session:
    gw = Gateway(load_config(CONFIG).config, settings=Settings(**settings),
                 entropy=random.Random(0))
    return Connection(lambda: gw, now=0.0, alpn="http/1.1")


def request(body: dict, path: str = "/v1/chat/completions") -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-s\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode() + data


def written(actions) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Write))


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = json.dumps({"id": "x", "model": "m", "choices": [{"index": 0, "message": {
    "role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}).encode()


def test_whole_answer_then_keep_alive():
    s = session()
    acts = s.handle(ClientData(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), 0.0, 0.0)
    assert written(acts).startswith(b"HTTP/1.1 200 ") and of(acts, Served)
    acts = s.handle(ClientData(request(CHAT)), 1.0, 1.0)
    (start,) = of(acts, StartUpstream)
    assert json.loads(start.request.body)["model"] == "m"
    acts = s.handle(UpstreamHead(start.ref, 200, (("content-type",
                                                              "application/json"),)), 1.1, 1.1)
    acts += s.handle(UpstreamData(start.ref, ANSWER), 1.1, 1.1)
    acts += s.handle(UpstreamEnded(start.ref), 1.2, 1.2)
    out = written(acts)
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(ANSWER)
    assert of(acts, Served)[0].record.status == 200 and not s.closed


def test_client_eof_mid_relay_stops_upstream_and_closes():
    s = session()
    (start,) = of(s.handle(ClientData(request(dict(CHAT, stream=True))), 0.0, 0.0), StartUpstream)
    acts = s.handle(ClientData(b""), 0.5, 0.5)
    assert StopUpstream(start.ref) in acts and of(acts, Close)
    assert of(acts, Served)[0].record.client_closed


def test_drain_closes_idle_and_lets_busy_finish():
    s = session()
    assert of(s.handle(DrainStarted(), 0.0, 0.0), Close)
    s = session()
    (start,) = of(s.handle(ClientData(request(CHAT)), 0.0, 0.0), StartUpstream)
    assert s.handle(DrainStarted(), 0.1, 0.1) == []
    s.handle(UpstreamHead(start.ref, 200, (("content-type", "application/json"),)),
                     0.2, 0.2)
    acts = s.handle(UpstreamData(start.ref, ANSWER), 0.2, 0.2)
    acts += s.handle(UpstreamEnded(start.ref), 0.3, 0.3)
    assert b"connection: close" in written(acts).lower() and of(acts, Close)


def test_remote_image_is_fetched_following_redirects_then_inlined():
    s = session(fetch_allow_http=True, fetch_allow_private=True)
    body = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "http://img.test/a.png"}}]}]}
    (fetch,) = of(s.handle(ClientData(request(body)), 0.0, 0.0), Fetch)
    assert fetch.url.host == "img.test" and fetch.allow_private
    redirect = FetchResult(302, (("location", "/b.png"),))
    (again,) = of(s.handle(FetchDone(fetch.ref, redirect), 0.1, 0.1), Fetch)
    assert again.url.target == "/b.png"
    acts = s.handle(FetchDone(again.ref, FetchResult(200, (("content-type", "image/png"),), PNG)),
                    0.2, 0.2)
    (start,) = of(acts, StartUpstream)
    sent = json.loads(start.request.body)
    image = sent["messages"][0]["content"][1]
    assert image["source"]["data"] == base64.b64encode(PNG).decode()


def test_image_fetch_refused_by_default_never_calls_upstream():
    s = session()
    body = {"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://127.0.0.1/a.png"}}]}]}
    acts = s.handle(ClientData(request(body)), 0.0, 0.0)
    assert not of(acts, StartUpstream) and not of(acts, Fetch)
    out = written(acts)
    assert out.startswith(b"HTTP/1.1 400 ") and b"image_fetch_failed" in out


def test_failed_fetch_is_400_and_oversize_too():
    s = session(fetch_allow_http=True, fetch_allow_private=True)
    body = {"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://img.test/a.png"}}]}]}
    (fetch,) = of(s.handle(ClientData(request(body)), 0.0, 0.0), Fetch)
    acts = s.handle(FetchDone(fetch.ref, FetchResult(200, (), PNG, truncated=True)), 0.1, 0.1)
    assert b"larger than" in written(acts) and written(acts).startswith(b"HTTP/1.1 400 ")


def test_openai_channels_get_the_url_untouched():
    s = session()
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://img.test/a.png"}}]}]}
    (start,) = of(s.handle(ClientData(request(body)), 0.0, 0.0), StartUpstream)
    assert b"https://img.test/a.png" in start.request.body


MOD_CONFIG = """
providers:
  - {provider: oa, base_url: "http://u/v1/chat/completions", api: k,
     model: [m, text-moderation-latest]}
api_keys:
  - api: sk-s
    preferences: {ENABLE_MODERATION: true}
"""


def moderated_session() -> Session:
    gw = Gateway(load_config(MOD_CONFIG).config, entropy=random.Random(0))
    return Connection(lambda: gw, now=0.0, alpn="http/1.1")


def answer(s, start, status, body, now):
    acts = s.handle(UpstreamHead(start.ref, status, (("content-type",
                                                                 "application/json"),)), now, now)
    acts += s.handle(UpstreamData(start.ref, body), now, now)
    return acts + s.handle(UpstreamEnded(start.ref), now, now)


def test_flagged_by_moderation_is_400_and_chat_upstream_never_called():
    s = moderated_session()
    (check,) = of(s.handle(ClientData(request(CHAT)), 0.0, 0.0), StartUpstream)
    assert check.request.url.endswith("/v1/moderations")
    assert json.loads(check.request.body) == {"model": "text-moderation-latest", "input": "hi"}
    verdict = json.dumps({"results": [{"flagged": True, "categories": {"violence": True,
                                                                       "hate": False}}]})
    acts = answer(s, check, 200, verdict.encode(), 0.1)
    assert not of(acts, StartUpstream)
    out = written(acts)
    assert out.startswith(b"HTTP/1.1 400 ") and b"moderation_flagged" in out
    assert b"violence" in out and b"hate" not in out


def test_clean_moderation_goes_on_and_a_failed_check_fails_open():
    for status, body in ((200, b'{"results":[{"flagged":false}]}'), (503, b"{}")):
        s = moderated_session()
        (check,) = of(s.handle(ClientData(request(CHAT)), 0.0, 0.0), StartUpstream)
        acts = answer(s, check, status, body, 0.1)
        (chat,) = of(acts, StartUpstream)
        assert chat.request.url.endswith("/v1/chat/completions")
        assert written(acts) == b""  # nothing of the check reached the client


# -- Connection: the protocol is picked from ALPN or the first bytes ----------------------------

def auto(alpn=None):
    gw = Gateway(load_config(CONFIG).config, entropy=random.Random(0))
    return Connection(lambda: gw, now=0.0, alpn=alpn)


def h2_request_bytes():
    import h2.config
    import h2.connection

    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                             header_encoding=None))
    c.initiate_connection()
    c.send_headers(1, [(b":method", b"POST"), (b":path", b"/v1/chat/completions"),
                       (b":scheme", b"http"), (b":authority", b"x"),
                       (b"authorization", b"Bearer sk-s")])
    c.send_data(1, json.dumps(CHAT).encode(), end_stream=True)
    return c, c.data_to_send()


def test_auto_session_sniffs_h2c_preface_split_anywhere():
    from uniapi_core.h2session import H2Session

    _, wire = h2_request_bytes()
    for cut in (1, 5, 23, 24, 25, len(wire) - 1):
        s = auto()
        actions = (s.handle(ClientData(wire[:cut]), 0.0, 0.0)
                   + s.handle(ClientData(wire[cut:]), 0.0, 0.0))
        assert isinstance(s.inner, H2Session)
        [start] = of(actions, StartUpstream)
        assert start.request.url == "http://u/v1/chat/completions"
        events = s.handle(UpstreamHead(start.ref, 200, (
            ("content-type", "application/json"),)), 0.0, 0.0)
        events += s.handle(UpstreamData(start.ref, ANSWER), 0.0, 0.0)
        events += s.handle(UpstreamEnded(start.ref), 0.0, 0.0)
        assert of(events, Served)[0].record.status == 200


def test_auto_session_falls_back_to_http11_and_alpn_decides_at_once():
    s = auto()
    actions = s.handle(ClientData(request(CHAT)), 0.0, 0.0)
    assert isinstance(s.inner, Session) and of(actions, StartUpstream)
    s = auto()
    assert s.handle(ClientData(b""), 0.0, 0.0) == [Close()]
    from uniapi_core.h2session import H2Session

    assert isinstance(auto("h2").inner, H2Session)
    assert isinstance(auto("http/1.1").inner, Session)


def _paused_h2_stream():
    """An HTTP/2 stream whose upstream the session just paused: (client, session, ref, the
    SSE event fed, how many it took)."""
    import h2.config
    import h2.connection

    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                             header_encoding=None))
    c.initiate_connection()
    c.send_headers(1, [(b":method", b"POST"), (b":path", b"/v1/chat/completions"),
                       (b":scheme", b"http"), (b":authority", b"x"),
                       (b"authorization", b"Bearer sk-s")])
    c.send_data(1, json.dumps(dict(CHAT, stream=True)).encode(), end_stream=True)
    s = auto("h2")
    [start] = of(s.handle(ClientData(c.data_to_send()), 0.0, 0.0), StartUpstream)
    acts = s.handle(UpstreamHead(start.ref, 200, (("content-type", "text/event-stream"),)),
                    0.0, 0.0)
    sse = {"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"content": "y" * 2000}}]}
    event = b"data: " + json.dumps(sse).encode() + b"\n\n"
    n = 0
    while not of(acts, PauseUpstream) and n < 1000:
        acts = s.handle(UpstreamData(start.ref, event), 0.0, 0.0)
        n += 1
    # the client's 64 KiB window plus our 64 KiB buffer, then the upstream is paused, once
    assert of(acts, PauseUpstream) == [PauseUpstream(start.ref)]
    return c, s, start.ref, event, n


def test_h2_session_pauses_the_upstream_while_the_window_is_shut():
    c, s, ref, event, n = _paused_h2_stream()
    assert 50 < n < 80
    assert not of(s.handle(UpstreamData(ref, event), 0.0, 0.0), PauseUpstream)
    # the client reads and reopens its window: the buffer drains, reading resumes
    c.increment_flow_control_window(1 << 20)
    c.increment_flow_control_window(1 << 20, stream_id=1)
    acts = s.handle(ClientData(c.data_to_send()), 0.1, 0.1)
    assert of(acts, ResumeUpstream) == [ResumeUpstream(ref)]


def test_a_paused_upstream_is_resumed_when_its_stream_ends():
    """The transport keeps a gate per paused ref: the ref's end must let it drop it."""
    _, s, ref, _, _ = _paused_h2_stream()
    acts = s.handle(UpstreamFailed(ref, "reset", "gone"), 0.2, 0.2)
    assert of(acts, ResumeUpstream) == [ResumeUpstream(ref)]


def test_merge_writes_joins_only_consecutive_writes():
    assert merge_writes([Write(b"a"), Write(b"b"), Close(), Write(b"c")]) == [
        Write(b"ab"), Close(), Write(b"c")]
    single = [Write(b"a"), Close()]
    assert merge_writes(single) is single  # the common case allocates nothing
    assert merge_writes([]) == []
    watch = Watch(3, "k")
    assert merge_writes([Write(b"a"), watch, Write(b"b")]) == [watch, Write(b"ab")]


def test_a_response_is_one_write():
    s = session()
    (start,) = of(s.handle(ClientData(request(CHAT)), 0.0, 0.0), StartUpstream)
    s.handle(UpstreamHead(start.ref, 200, (("content-type", "application/json"),)), 0.1, 0.1)
    s.handle(UpstreamData(start.ref, ANSWER), 0.1, 0.1)
    acts = s.handle(UpstreamEnded(start.ref), 0.1, 0.1)
    assert [type(a) for a in acts].count(Write) == 1
    assert written(acts).startswith(b"HTTP/1.1 200 ")


def _served_usage(answer: bytes, stream: bool) -> dict | None:
    s = session()
    body = dict(CHAT, stream=True) if stream else CHAT
    (start,) = of(s.handle(ClientData(request(body)), 0.0, 0.0), StartUpstream)
    kind = "text/event-stream" if stream else "application/json"
    acts = s.handle(UpstreamHead(start.ref, 200, (("content-type", kind),)), 0.1, 0.1)
    acts += s.handle(UpstreamData(start.ref, answer), 0.1, 0.1)
    acts += s.handle(UpstreamEnded(start.ref), 0.2, 0.2)
    return of(acts, Served)[0].record.usage


def test_the_served_record_carries_the_normalized_usage_whole_and_streamed():
    """The stats see the usage the client sees: DeepSeek's cache hits as cached_tokens."""
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "prompt_cache_hit_tokens": 8}
    want = {"prompt_tokens": 9, "completion_tokens": 3, "prompt_cache_hit_tokens": 8,
            "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 8}}
    whole = json.loads(ANSWER)
    whole["usage"] = usage
    assert _served_usage(json.dumps(whole).encode(), stream=False) == want
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}],
             "usage": usage}
    sse = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    assert _served_usage(sse, stream=True) == want
    assert _served_usage(ANSWER, stream=False) is None


def test_a_translated_whole_answer_gives_its_usage_to_the_served_record():
    s = session()
    body = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
    (start,) = of(s.handle(ClientData(request(body)), 0.0, 0.0), StartUpstream)
    answer = json.dumps({"id": "msg_1", "type": "message", "role": "assistant",
                         "model": "claude", "content": [{"type": "text", "text": "ok"}],
                         "stop_reason": "end_turn",
                         "usage": {"input_tokens": 5, "output_tokens": 2,
                                   "cache_read_input_tokens": 100}}).encode()
    acts = s.handle(UpstreamHead(start.ref, 200, (("content-type", "application/json"),)),
                    0.1, 0.1)
    acts += s.handle(UpstreamData(start.ref, answer), 0.1, 0.1)
    acts += s.handle(UpstreamEnded(start.ref), 0.2, 0.2)
    usage = of(acts, Served)[0].record.usage
    assert usage["prompt_tokens"] == 105 and usage["completion_tokens"] == 2
    assert usage["prompt_tokens_details"]["cached_tokens"] == 100


def test_the_served_record_says_who_what_and_how_long_never_a_secret():
    gw = Gateway(load_config(CONFIG).config, entropy=random.Random(0))
    s = Connection(lambda: gw, now=0.0, alpn="http/1.1", peer="203.0.113.9")
    (start,) = of(s.handle(ClientData(request(dict(CHAT, stream=True))), 1.0, 1000.0),
                  StartUpstream)
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}
    acts = s.handle(UpstreamHead(start.ref, 200, (("content-type", "text/event-stream"),)),
                    1.25, 1000.25)
    acts += s.handle(UpstreamData(start.ref, f"data: {json.dumps(chunk)}\n\n".encode()),
                     1.5, 1000.5)
    acts += s.handle(UpstreamData(start.ref, b"data: [DONE]\n\n"), 2.0, 1001.0)
    acts += s.handle(UpstreamEnded(start.ref), 2.0, 1001.0)
    record = of(acts, Served)[0].record
    assert (record.wall, record.model, record.client_ip, record.status) == \
        (1000.0, "m", "203.0.113.9", 200)
    assert record.key == gw.key_label("sk-s") and record.key.startswith("k-") \
        and "sk-s" not in repr(record)
    assert record.ttft == 0.5 and record.duration == 1.0 and record.error is None
    (attempt,) = record.tries
    assert (attempt.provider, attempt.model, attempt.outcome, attempt.key, attempt.latency) == \
        ("oa", "m", "ok", gw.key_label("k"), 1.0)


def test_a_refused_request_records_its_error_text():
    s = session()
    data = json.dumps(CHAT).encode()
    acts = s.handle(ClientData(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(data)).encode()
        + b"\r\n\r\n" + data), 0.0, 0.0)
    record = of(acts, Served)[0].record
    assert record.status == 401 and record.error and record.key is None


STATS_CONFIG = """
providers:
  - {provider: oa, base_url: "http://u/v1/chat/completions", api: k, model: [m]}
api_keys:
  - {api: sk-admin, role: admin}
  - api: sk-s
"""


def _stats_session():
    from uniapi_core.ops.stats import StoreConfig

    gw = Gateway(load_config(STATS_CONFIG).config,
                 settings=Settings(stats_store=StoreConfig(path=":memory:")),
                 entropy=random.Random(0))
    return gw, Connection(lambda: gw, now=0.0, alpn="http/1.1")


def _get(path: str, key: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n".encode()


def test_stats_queries_become_query_actions_and_their_rows_an_answer():
    from uniapi_core.events import Query, QueryDone

    gw, s = _stats_session()
    (query,) = of(s.handle(ClientData(_get("/v1/token_usage?last_n_days=2", "sk-s")), 0.0,
                           1e9), Query)
    acts = s.handle(QueryDone(query.ref, [[[gw.key_label("sk-s"), "m", 2, 30, 4, 0, 0, 0, 0]]]),
                    0.1, 1e9)
    body = json.loads(written(acts).split(b"\r\n\r\n", 1)[1])
    assert body["usage"][0]["total_prompt_tokens"] == 30
    assert body["usage"][0]["api_key_prefix"].startswith("k-")
    # a store that fails is a 503, and one that never answers is one too, at the deadline
    (query,) = of(s.handle(ClientData(_get("/v1/stats", "sk-admin")), 1.0, 1e9), Query)
    acts = s.handle(QueryDone(query.ref, "OperationalError: disk I/O error"), 1.1, 1e9)
    assert written(acts).startswith(b"HTTP/1.1 503 ")
    (query,) = of(s.handle(ClientData(_get("/v1/stats", "sk-admin")), 2.0, 1e9), Query)
    deadline = s.next_deadline()
    assert deadline == 2.0 + 30.0
    acts = s.handle(DeadlineReached(), deadline, 1e9)
    assert StopUpstream(query.ref) in acts and written(acts).startswith(b"HTTP/1.1 503 ")


def test_stats_without_a_store_answer_as_uni_api_does():
    gw = Gateway(load_config(STATS_CONFIG).config, entropy=random.Random(0))
    s = Connection(lambda: gw, now=0.0, alpn="http/1.1")
    out = written(s.handle(ClientData(_get("/v1/stats", "sk-admin")), 0.0, 0.0))
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b'{"stats":{}}')
    out = written(s.handle(ClientData(_get("/v1/token_usage", "sk-s")), 0.0, 0.0))
    assert out.startswith(b"HTTP/1.1 503 ")


def test_every_finished_request_is_queued_for_the_store():
    gw, s = _stats_session()
    s.handle(ClientData(_get("/healthz", "sk-s")), 0.0, 5.0)
    assert gw.stats is not None and gw.stats.added == 1


def test_a_client_that_leaves_mid_stream_is_recorded_with_the_tokens_seen_so_far():
    """Anthropic reports the prompt's tokens in message_start: a client that leaves after the
    first text still has them in its record (the stats row), not an absent count."""
    s = session()
    body = {"model": "claude", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    (start,) = of(s.handle(ClientData(request(body)), 0.0, 0.0), StartUpstream)
    events = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [], "stop_reason": None,
            "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hel"}}),
    ]
    sse = b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in events)
    s.handle(UpstreamHead(start.ref, 200, (("content-type", "text/event-stream"),)), 0.1, 0.1)
    s.handle(UpstreamData(start.ref, sse), 0.2, 0.2)
    acts = s.handle(ClientData(b""), 0.3, 0.3)
    record = of(acts, Served)[0].record
    assert record.client_closed and record.usage is not None
    assert record.usage["prompt_tokens"] == 25


def test_a_close_the_server_decides_lingers_and_one_after_the_client_left_does_not():
    s = auto()
    huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    actions = s.handle(ClientData(huge), 0.0, 0.0)
    assert actions[-1] == Close(linger=True)  # refused: the client is still sending
    assert of(actions, Write)[0].data.startswith(b"HTTP/1.1 431 ")
    s = auto()
    s.handle(ClientData(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"[:10]), 0.0, 0.0)
    assert s.handle(ClientData(b""), 0.0, 0.0)[-1] == Close(linger=False)  # gone
