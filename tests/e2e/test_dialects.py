"""The OpenAI-compatible dialects end to end (issue 18): a real gateway, on both backends, in
front of a fake upstream replaying each fixture of tests/data/dialects, one provider per case
with ``preferences.dialect`` (and ``think_tags`` where the host leaves ``<think>`` in the
content). The official openai SDK is the client: its stream helper's
``get_final_completion()``, and the whole answer of a plain ``create``, must state what the
fixture's ``.expected.json`` states.

One fake upstream and one gateway per backend serve every case (the upstream picks the fixture
from the request path, the first segment of which is the case's name), so the file stays fast.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import LengthFinishReasonError

from tests.fakes.upstream import FakeUpstream, Reply, Seen
from tests.harness import RunningGateway, run_gateway

DATA = Path(__file__).resolve().parent.parent / "data" / "dialects"
KEY = "sk-dialects"
MESSAGES = [{"role": "user", "content": "Hello"}]
#: the cases whose host leaves ``<think>…</think>`` in the content
THINK_TAGS = {"together", "fireworks", "vllm_think", "lmstudio"}

STREAMS = sorted(p.name[: -len("_stream.sse")] for p in DATA.glob("*_stream.sse"))
BODIES = sorted(p.name[: -len("_body.json")] for p in DATA.glob("*_body.json"))


def replay(seen: Seen) -> Reply:
    """The fixture of the case the path names, streamed in 97-byte pieces or whole."""
    case = seen.path.split("/")[1]
    if seen.json().get("stream"):
        raw = (DATA / f"{case}_stream.sse").read_bytes()
        return Reply(headers=[("content-type", "text/event-stream")],
                     pieces=[raw[i:i + 97] for i in range(0, len(raw), 97)])
    return Reply(pieces=[(DATA / f"{case}_body.json").read_bytes()], chunked=False)


def config(url: str) -> str:
    providers = []
    for case in sorted(set(STREAMS) | set(BODIES)):
        dialect = case.split("_")[0]
        engine = "\n    engine: azure" if dialect == "azure" else ""
        base = f"{url}/{case}" if dialect == "azure" else f"{url}/{case}/v1"
        think = "\n      think_tags: true" if case in THINK_TAGS else ""
        providers.append(f"""
  - provider: {case}
    base_url: {base}{engine}
    api: sk-{case}
    model:
      - vendor-model: {case}
    preferences:
      dialect: {dialect}{think}""")
    return "providers:" + "".join(providers) + f"\napi_keys:\n  - api: {KEY}\n"


@pytest.fixture(scope="module")
def gateways() -> Iterator[Callable[[str], RunningGateway]]:
    """A gateway per backend, started on first use, over one fake upstream."""
    with contextlib.ExitStack() as stack:
        up = FakeUpstream(handler=replay)
        stack.callback(up.close)
        running: dict[str, RunningGateway] = {}

        def get(backend: str) -> RunningGateway:
            if backend not in running:
                running[backend] = stack.enter_context(run_gateway(config(up.url),
                                                                   backend=backend))
            return running[backend]

        yield get


def expected(case: str) -> dict[str, Any]:
    return json.loads((DATA / f"{case}.expected.json").read_text(encoding="utf-8"))


def summary(message: Any, finish_reason: Any, usage: Any) -> dict[str, Any]:
    return {"content": message.content or "",
            "reasoning_content": getattr(message, "reasoning_content", None) or "",
            "tool_calls": [{"id": call.id, "name": call.function.name,
                            "arguments": call.function.arguments}
                           for call in message.tool_calls or []],
            "finish_reason": finish_reason,
            "usage": usage.to_dict() if usage is not None else None}


@pytest.mark.parametrize("case", STREAMS)
def test_stream_through_the_gateway(backend, gateways, case):
    client = gateways(backend).openai(KEY)
    with client.chat.completions.stream(model=case, messages=MESSAGES,
                                        stream_options={"include_usage": True}) as stream:
        try:
            completion = stream.get_final_completion()
        except LengthFinishReasonError as exc:  # the helper raises on a cut answer
            completion = exc.completion
    assert completion.model == case
    choice = completion.choices[0]
    assert summary(choice.message, choice.finish_reason, completion.usage) == \
        expected(case)["stream"]


@pytest.mark.parametrize("case", BODIES)
def test_body_through_the_gateway(backend, gateways, case):
    completion = gateways(backend).openai(KEY).chat.completions.create(model=case,
                                                                        messages=MESSAGES)
    assert completion.model == case
    choice = completion.choices[0]
    assert summary(choice.message, choice.finish_reason, completion.usage) == \
        expected(case)["body"]
