"""The sans-IO Redis link (uniapi_core/redis/link.py): the greeting, pipelines under any split
of the replies, the NOSCRIPT reload, refused greetings, the watchdog's test, and the shared
policies (backoff, failure texts)."""

from __future__ import annotations

import errno
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.test_resp import encode_reply, replies
from uniapi_core.redis.link import (BACKOFF_CAP, BACKOFF_FIRST, MAX_PENDING, OVERDUE, Backoff,
                                    Callers,
                                    LinkFailed, RedisLink, failure_reason, script_sha)
from uniapi_core.redis.resp import RespError, RespParser, encode_command
from uniapi_core.redis.url import RedisTarget, parse_redis_url

PLAIN = RedisTarget("tcp", host="h")
SCRIPT = "return redis.call('GET', KEYS[1])"
NOSCRIPT = RespError("NOSCRIPT No matching script. Please use EVAL.")


def commands_of(wire: bytes) -> list[list[bytes]]:
    """The commands in bytes the link wrote (a command is an array of bulk strings)."""
    return RespParser().feed(wire)  # type: ignore[return-value]


def ok(n: int) -> bytes:
    return b"+OK\r\n" * n


def test_script_sha_is_redis_evalsha_name():
    assert script_sha("return 1") == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
    assert script_sha(SCRIPT) == hashlib.sha1(SCRIPT.encode()).hexdigest()


def test_greeting_auth_select_and_scripts():
    target = parse_redis_url("redis://bob:pw@h/2")
    link = RedisLink(target, [SCRIPT, "return 2"])
    assert commands_of(link.greeting()) == [
        [b"AUTH", b"bob", b"pw"], [b"SELECT", b"2"], [b"SCRIPT", b"LOAD", SCRIPT.encode()],
        [b"SCRIPT", b"LOAD", b"return 2"]]
    assert not link.ready and link.pending() == []
    assert link.receive(b"+OK\r\n+OK\r\n$40\r\n" + script_sha(SCRIPT).encode() + b"\r\n") == []
    assert not link.ready
    assert link.receive(b"$40\r\n" + script_sha("return 2").encode() + b"\r\n") == []
    assert link.ready


def test_password_without_user_and_an_empty_greeting():
    link = RedisLink(parse_redis_url("redis://:pw@h"))
    assert commands_of(link.greeting()) == [[b"AUTH", b"pw"]]
    link = RedisLink(PLAIN)
    assert not link.ready
    assert link.greeting() == b""
    assert link.ready


def test_greeting_is_written_first_and_once():
    link = RedisLink(PLAIN)
    with pytest.raises(RuntimeError):
        link.request("a", [["PING"]])
    link.greeting()
    with pytest.raises(RuntimeError):
        link.greeting()
    with pytest.raises(ValueError):
        link.request("a", [])


def test_requests_queue_behind_the_greeting():
    link = RedisLink(parse_redis_url("redis://:pw@h/1"))
    wire = link.greeting() + link.request("a", [["GET", "k"], ["INCR", "n"]])
    assert commands_of(wire)[2:] == [[b"GET", b"k"], [b"INCR", b"n"]]
    assert link.pending() == ["a"]
    assert link.receive(b"+OK\r\n+OK\r\n$1\r\nv\r\n") == []
    assert link.ready
    assert link.receive(b":7\r\n") == [("a", [b"v", 7])]
    assert link.pending() == []


@pytest.mark.parametrize("reply", [b"-WRONGPASS invalid username-password pair\r\n",
                                   b"-ERR AUTH hunter2 called without any password\r\n"])
def test_a_refused_auth_fails_the_link_without_the_password(reply):
    link = RedisLink(parse_redis_url("redis://u:hunter2@h"))
    link.greeting()
    link.request("a", [["PING"]])
    with pytest.raises(LinkFailed) as info:
        link.receive(reply + b"+PONG\r\n")
    assert "hunter2" not in info.value.reason and "AUTH" in info.value.reason
    assert not link.ready
    assert link.pending() == ["a"]  # the transport fails it
    with pytest.raises(LinkFailed):
        link.receive(b"")
    assert "hunter2" not in failure_reason(link.target, info.value)


def test_a_refused_select_fails_the_link():
    link = RedisLink(parse_redis_url("redis://h/99"))
    link.greeting()
    with pytest.raises(LinkFailed, match="SELECT: ERR DB index is out of range"):
        link.receive(b"-ERR DB index is out of range\r\n")


def test_a_script_that_does_not_compile_fails_the_link():
    link = RedisLink(PLAIN, ["return +"])
    link.greeting()
    with pytest.raises(LinkFailed, match="SCRIPT LOAD: ERR Error compiling script"):
        link.receive(b"-ERR Error compiling script\r\n")


def test_protocol_error_and_unasked_reply_fail_the_link():
    link = RedisLink(PLAIN)
    link.greeting()
    with pytest.raises(LinkFailed, match="nobody asked"):
        link.receive(b"+OK\r\n")
    link = RedisLink(PLAIN)
    link.greeting()
    link.request("a", [["PING"]])
    with pytest.raises(LinkFailed, match="not RESP2"):
        link.receive(b"%1\r\n")


def test_noscript_reloads_before_the_next_request():
    sha = script_sha(SCRIPT)
    link = RedisLink(PLAIN, [SCRIPT])
    link.greeting()
    link.receive(b"$40\r\n" + sha.encode() + b"\r\n")
    assert link.ready
    wire = link.request("a", [["EVALSHA", sha, 1, "k"]])
    assert commands_of(wire) == [[b"EVALSHA", sha.encode(), b"1", b"k"]]
    assert link.receive(encode_reply(NOSCRIPT)) == [("a", [NOSCRIPT])]  # still delivered
    wire = link.request("b", [["EVALSHA", sha, 1, "k"]])
    assert commands_of(wire) == [[b"SCRIPT", b"LOAD", SCRIPT.encode()],
                                 [b"EVALSHA", sha.encode(), b"1", b"k"]]
    assert link.pending() == ["b"]
    assert link.receive(b"$40\r\n" + sha.encode() + b"\r\n$1\r\nv\r\n") == [("b", [b"v"])]
    wire = link.request("c", [["PING"]])  # reloaded once only
    assert commands_of(wire) == [[b"PING"]]


def test_noscript_inside_exec_and_from_a_told_pipeline():
    link = RedisLink(PLAIN, [SCRIPT])
    link.greeting()
    link.receive(b"$1\r\nx\r\n")
    link.request("t", [["EXEC"]])
    assert link.receive(encode_reply([1, NOSCRIPT])) == [("t", [[1, NOSCRIPT]])]
    assert commands_of(link.tell([["PING"]]))[0] == [b"SCRIPT", b"LOAD", SCRIPT.encode()]
    link.receive(b"$1\r\nx\r\n+PONG\r\n")
    link.tell([["EVALSHA", "x", 0]])
    assert link.receive(encode_reply(NOSCRIPT)) == []  # nobody waits for a told reply
    assert len(commands_of(link.request("u", [["PING"]]))) == 2  # but it reloads


def test_no_scripts_means_no_reload():
    link = RedisLink(PLAIN)
    link.greeting()
    link.request("a", [["EVALSHA", "x", 0]])
    link.receive(encode_reply(NOSCRIPT))
    assert commands_of(link.request("b", [["PING"]])) == [[b"PING"]]


def test_told_pipelines_are_read_and_dropped_in_order():
    link = RedisLink(PLAIN)
    link.greeting()
    link.tell([["SET", "a", 1], ["SET", "b", 2]])
    link.request("x", [["GET", "a"]])
    link.tell([["DEL", "a"]])
    assert link.pending() == ["x"]
    assert link.receive(ok(2) + b"$1\r\n1\r\n:1\r\n") == [("x", [b"1"])]
    assert link.pending() == []


@st.composite
def scenario(draw):
    """A link with scripts, a password and a db, a list of pipelines (tagged, or told) and
    the server's reply bytes for the whole exchange."""
    scripts = draw(st.lists(st.sampled_from(["return 1", "return 2", SCRIPT]), max_size=2))
    target = RedisTarget("tcp", host="h", db=draw(st.integers(0, 3)),
                         password=draw(st.none() | st.just("pw")))
    pipes = draw(st.lists(st.tuples(st.booleans(), st.lists(replies, min_size=1, max_size=4)),
                          max_size=8))
    return target, scripts, pipes


@settings(max_examples=300, deadline=None)
@given(scenario(), st.data())
def test_any_split_of_the_replies_gives_the_same_pipelines(case, data):
    target, scripts, pipes = case
    link = RedisLink(target, scripts)
    greeting = commands_of(link.greeting())
    wire = ok(len(greeting))  # +OK stands in for the SHA a SCRIPT LOAD returns
    expected = []
    for i, (told, values) in enumerate(pipes):
        cmds = [["GET", f"k{j}"] for j in range(len(values))]
        if told:
            link.tell(cmds)
        else:
            link.request(i, cmds)
            expected.append((i, values))
        wire += b"".join(encode_reply(v) for v in values)
    assert link.pending() == [tag for tag, _ in expected]
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    out: list = []
    last = 0
    for cut in sorted(set(cuts)) + [len(wire)]:
        out += link.receive(wire[last:cut])
        last = cut
    assert out == expected
    assert link.ready and link.pending() == []
    whole = RedisLink(target, scripts)
    whole.greeting()
    for i, (told, values) in enumerate(pipes):
        cmds = [["GET", f"k{j}"] for j in range(len(values))]
        if told:
            whole.tell(cmds)
        else:
            whole.request(i, cmds)
    assert whole.receive(wire) == expected


def test_many_tags_come_back_in_order_byte_by_byte():
    link = RedisLink(PLAIN)
    link.greeting()
    wire = b""
    for i in range(500):
        link.request(("tag", i), [["INCR", "n"]] * (i % 3 + 1))
        wire += b"".join(b":%d\r\n" % (i * 10 + j) for j in range(i % 3 + 1))
    out = []
    for k in range(len(wire)):
        out += link.receive(wire[k:k + 1])
    assert [tag for tag, _ in out] == [("tag", i) for i in range(500)]
    assert out[7] == (("tag", 7), [70, 71])


def test_the_same_commands_give_the_same_bytes():
    a, b = RedisLink(PLAIN), RedisLink(PLAIN)
    a.greeting(), b.greeting()
    cmds = [["SET", "k", b"\x00v", 5], ["GET", "k"]]
    assert a.request(1, cmds) == b.request(2, cmds) == encode_command("SET", "k", b"\x00v", 5) \
        + encode_command("GET", "k")


def test_overdue_and_check():
    link = RedisLink(PLAIN)
    link.greeting()
    assert not link.overdue(1e9)
    link.request("a", [["PING"]], due=10.0)
    link.request("b", [["PING"]], due=5.0)
    assert not link.overdue(5.0 + OVERDUE)
    assert link.overdue(5.0 + OVERDUE + 0.01)
    link.check(6.0)
    with pytest.raises(LinkFailed, match="did not answer in time"):
        link.check(100.0)
    with pytest.raises(LinkFailed):
        link.receive(b"+PONG\r\n")


def test_greeting_due_counts_too():
    link = RedisLink(parse_redis_url("redis://:pw@h"))
    link.greeting(due=1.0)
    assert link.overdue(1.0 + OVERDUE + 0.1)


def test_full_after_max_pending():
    link = RedisLink(PLAIN)
    link.greeting()
    for i in range(MAX_PENDING - 1):
        link.request(i, [["PING"]])
    assert not link.full
    link.tell([["PING"]])
    assert link.full
    link.receive(b"+PONG\r\n")
    assert not link.full


def test_backoff_doubles_to_the_cap_and_resets():
    b = Backoff()
    delays = [b.next() for _ in range(8)]
    assert delays[0] == BACKOFF_FIRST and delays[1] == 2 * BACKOFF_FIRST
    assert delays[-1] == BACKOFF_CAP and all(x <= BACKOFF_CAP for x in delays)
    b.reset()
    assert b.next() == BACKOFF_FIRST


def test_failure_reasons():
    t = parse_redis_url("redis://:secret@127.0.0.1:1")
    assert failure_reason(t, None) == "127.0.0.1:1: Redis closed the connection"
    assert failure_reason(t, TimeoutError()) == "127.0.0.1:1: connect timed out"
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")
    assert failure_reason(t, refused) == "127.0.0.1:1: connection refused"
    wrapped = OSError("all attempts to connect failed")
    wrapped.__cause__ = ExceptionGroup("x", [refused])
    assert failure_reason(t, wrapped) == "127.0.0.1:1: connection refused"
    assert failure_reason(t, LinkFailed("Redis refused AUTH: WRONGPASS")) == \
        "127.0.0.1:1: Redis refused AUTH: WRONGPASS"
    assert failure_reason(t, OSError(errno.EPROTO, "x")) == "127.0.0.1:1: EPROTO"
    assert failure_reason(t, KeyError("k")) == "127.0.0.1:1: KeyError"
    u = parse_redis_url("unix:///tmp/nope.sock")
    assert failure_reason(u, FileNotFoundError(errno.ENOENT, "x")) == \
        "/tmp/nope.sock: no such socket file"


def test_callers_deliver_each_pipeline_once_and_none_when_there_is_no_link():
    callers, got = Callers(), []
    assert callers.ask([["PING"]], 1.0, lambda r: got.append(("early", r))) is None
    assert got == [("early", None)]  # not connected: answered at once
    assert callers.tell([["PING"]], 1.0) is None
    link = RedisLink(parse_redis_url("redis://127.0.0.1"))
    link.greeting()
    callers.link = link
    assert callers.ask([["PING"]], 1.0, lambda r: got.append(("a", r))) == b"*1\r\n$4\r\nPING\r\n"
    callers.ask([["GET", "k"]], 1.0, lambda r: got.append(("b", r)))
    assert callers.tell([["INCR", "n"]], 1.0) is not None
    callers.received(link, b"+PONG\r\n$-1\r\n")
    assert got[1:] == [("a", ["PONG"]), ("b", [None])]
    callers.ask([["PING"]], 1.0, lambda r: got.append(("c", r)))
    callers.received(link, b":1\r\n")  # the told pipeline's reply: nobody's
    callers.lost()
    assert got[3:] == [("c", None)] and callers.link is None
    callers.lost()  # nothing waits any more: nothing delivered twice
    assert len(got) == 4
