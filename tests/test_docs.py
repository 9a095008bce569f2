"""docs/vendors.md is generated from the translators' MAPPED/DROPPED tables; it must match.
Every rule id the code cites has a heading in docs/, and nothing points outside the repository.

Regenerate docs/vendors.md with ``python tests/test_docs.py``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from uniapi_core.vendors import dialects, vertex

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "vendors.md"
VENDORS = ["anthropic", "gemini", "cohere", "cloudflare"]


def render() -> str:
    out = ["# Vendor translation: what each upstream gets\n\n",
           "Each translating vendor module keeps explicit tables of the OpenAI request fields it "
           "maps and the ones it drops, with the reason (docs/contracts.md, REQ-3: unmapped fields "
           "are never copied into a vendor body; Anthropic and Google reject unknown fields). "
           "OpenAI-compatible and Azure upstreams get every field untouched except `model`.\n\n",
           "Generated from the modules' `MAPPED`/`DROPPED` tables by "
           "`python tests/test_docs.py`; a test checks it is current. What each vendor rule "
           "the code cites means (`ANT-K4`, `GEM-R4`, `BR-S3`, ...) is in "
           "[vendor-rules.md](vendor-rules.md).\n"]
    out += _dialects()
    for name in VENDORS:
        module = importlib.import_module(f"uniapi_core.vendors.{name}")
        out.append(f"\n## {name}\n\n")
        mapped = sorted(getattr(module, "MAPPED", ()))
        out.append("Mapped: " + ", ".join(f"`{k}`" for k in mapped) + "\n")
        dropped = getattr(module, "DROPPED", {})
        items = sorted(dropped.items()) if isinstance(dropped, dict) else [
            (k, "") for k in sorted(dropped)]
        if items:
            out.append("\n| dropped field | why |\n| --- | --- |\n")
            out += [f"| `{k}` | {str(v).replace('|', '/')} |\n" for k, v in items]
    out.append("\n## bedrock\n\nThe Anthropic body (same mapped and dropped fields) without "
               "`model` and `stream`, plus `anthropic_version: bedrock-2023-05-31`, "
               "SigV4-signed.\n")
    out.append("\n## vertex\n\nGemini models get the gemini body and Claude models the "
               "anthropic body (same mapped and dropped fields), at "
               "`…/v1/projects/<project>/locations/<region>/publishers/<google|anthropic>/"
               "models/<model>:<generateContent|streamGenerateContent?alt=sse|rawPredict|"
               "streamRawPredict>` with `Authorization: Bearer <service-account token>`; the "
               "Claude body has no `model` and starts with "
               f"`anthropic_version: {vertex.ANTHROPIC_VERSION}`. Regions: "
               "docs/routing.md §6.\n\n"
               "A Gemini 3 stream whose function-call arguments come in pieces "
               "(`partialArgs`, when `streamFunctionCallArguments` is on) reaches the client as "
               "whole tool calls, one per real call, named from its first part, arguments "
               "assembled from the pieces' JSON paths (vendor-rules.md, GEM-S3). The gateway "
               "never asks for pieces itself.\n")
    out += _structured()
    out += _input_parts()
    out += _messages_front()
    out += _responses_front()
    out += _gemini_front()
    out += _errors()
    return "".join(out)


def _structured() -> list[str]:
    """The "Structured outputs" section: where ``response_format`` goes per vendor (issue 19)."""
    from uniapi_core.vendors import cloudflare
    cf_models = ", ".join(f"`{m}`" for m in sorted(cloudflare.JSON_MODE_MODELS))
    rows = [
        ("OpenAI-compatible family, Azure",
         "`response_format` passed through untouched (`json_object`, `json_schema` with "
         "`strict`)",
         "all of it; what the host enforces is the host's"),
        ("Anthropic, Vertex Claude, Bedrock Claude: Opus, Sonnet, Haiku 4.5 and later",
         "`json_schema`: `output_config.format` (`{\"type\": \"json_schema\", \"schema\": "
         "…}`, no beta header); `json_object`: the forced answer tool below (Claude needs "
         "every object closed, so a format cannot say \"any object\"); `strict` function "
         "tools: `strict: true`",
         "rewritten as Anthropic's SDKs do: every object gets `additionalProperties: false`, "
         "`oneOf` becomes `anyOf`; kept: `type`, `title`, `description`, `enum`, `const`, "
         "`$ref`/`$defs`, `properties`, `required`, `anyOf`, `allOf`, `items`, `minItems` 0 "
         "or 1, the common string `format`s; every other constraint (`minLength`, `pattern`, "
         "`minimum`, `maxItems`, `default`…) is written into the property's `description`, "
         "never dropped (ANT-J1…ANT-J6)"),
        ("Anthropic, Vertex Claude, Bedrock Claude: older models",
         "a forced tool `uniapi_json_answer` whose `input_schema` is the schema; its input "
         "comes back as `message.content` (streamed as content deltas) with `finish_reason: "
         "stop`; a client tool of that name is a 400",
         "all of it, as the tool's input schema (the root must be an object); `strict` left "
         "out"),
        ("Gemini, Vertex Gemini: Gemini 2.5 and later, `gemini-*-latest`",
         "`responseMimeType: application/json` + `responseJsonSchema`",
         "all of it, as sent (`$ref`/`$defs`, `anyOf`, `prefixItems`, bounds…); Google "
         "documents which keywords the model enforces"),
        ("Gemini, Vertex Gemini: 1.x, 2.0, Gemma, tuned or unknown names",
         "`responseMimeType: application/json` + `responseSchema` (OpenAPI-subset Schema)",
         "the Schema allow-list (vendor-rules.md, \"Tool schemas cleaned for Gemini\"), "
         "`$ref` inlined; every other constraint (`exclusiveMinimum`, `multipleOf`, "
         "`uniqueItems`, `prefixItems`, a string `format`, a schema-valued "
         "`additionalProperties`, `not`, `if`/`then`/`else`, a cut recursive `$ref`…) is "
         "written into the node's `description` as `Constraints: <json>`, never dropped"),
        ("Cohere v2",
         "`response_format: {\"type\": \"json_object\", \"json_schema\": <schema>}`; "
         "`json_object` alone without a schema",
         "all of it, as sent; `strict` has no counterpart (Cohere's JSON Schema mode is "
         "always constrained)"),
        ("Cloudflare Workers AI (`ai/run`)",
         f"JSON Mode on {cf_models}: `{{\"type\": \"json_schema\", \"json_schema\": "
         "<the bare schema>}` or `{\"type\": \"json_object\"}`; not streamed. Other models, "
         "or `stream: true`, get a 400 naming the model (`unsupported_parameter`). The "
         "`/ai/v1` OpenAI-compatible endpoint passes it through",
         "all of it, as sent; `strict` has no counterpart"),
    ]
    out = ["\n## Structured outputs\n\n",
           "`response_format` `json_object` and `json_schema` (with `strict`) go to each "
           "vendor's own mechanism; `text` adds nothing. A vendor that cannot take it answers "
           "a 400, never a silent drop.\n\n",
           "| vendor | what is sent | what is kept of the schema |\n| --- | --- | --- |\n"]
    out += [f"| {a} | {b} | {c} |\n" for a, b, c in rows]
    out.append("\nClaude's model table is `STRUCTURED_MODELS` in `anthropic.py`; a Claude "
               "refusal under structured output (`stop_reason: refusal`) comes back as "
               "`message.refusal` with `content: null` (`delta.refusal` in a stream). "
               "Gemini's model table is `_RESPONSE_SCHEMA_FIELD` in `gemini.py`; Workers "
               "AI's is `JSON_MODE_MODELS` in `cloudflare.py` (Cloudflare's \"JSON Mode\" "
               "page, \"Supported Models\"). Refusals: Gemini has no refusal field; a "
               "structured answer stopped by `finishReason` `SAFETY`, `RECITATION`, "
               "`BLOCKLIST`, `PROHIBITED_CONTENT` or `SPII` ends with `finish_reason: "
               "content_filter`, and a blocked prompt is a 400 `content_filter` (GEM-N3), as "
               "for any answer. Workers AI answers a schema it could not meet with an error "
               "(`JSON Mode couldn't be met`), relayed as Cloudflare's errors are.\n")
    return out


def _input_parts() -> list[str]:
    """The "Input parts" section: which chat content parts reach each vendor, and how
    (issue 20). A part a vendor cannot take is a channel mismatch: the next channel is tried."""
    from uniapi_core.vendors import cohere, gemini
    limit = gemini.MAX_INLINE_BYTES // (1024 * 1024)
    pdf_mib = cohere.MAX_PDF_BYTES // (1024 * 1024)
    rows = [
        ("OpenAI-compatible family, Azure", "✓", "✓ passed through",
         "✓ passed through", "✓ passed through", "✓ fetched, sent as `file_data`",
         "✓ passed through (OpenAI's own ids)", "✓ passed through (`input_audio`)"),
        ("Anthropic", "✓", "✓ `image` blocks",
         "✓ `document` block (base64); 32 MB per request, else 413",
         "✓ `document` block (`text/plain`)", "✓ `url` document source (PDFs; not fetched)",
         "✓ Files API ids (`file_…`) as a `file` source, beta `files-api-2025-04-14`",
         "✗"),
        ("Vertex Claude, Bedrock Claude", "✓", "✓ `image` blocks",
         "✓ `document` block (base64); 32 MB per request, else 413",
         "✓ `document` block (`text/plain`)", "✓ fetched, as a data URL", "✗", "✗"),
        ("Gemini, Vertex Gemini", "✓", "✓ `inlineData` (data URLs; http(s) URLs fetched)",
         f"✓ `inlineData` `application/pdf`; {limit} MiB of inline data per request, else "
         "413", "✓ `inlineData` (`text/plain`)", "✓ fetched, as `inlineData`",
         "✓ `fileData`: Files API names and URIs on Gemini, `gs://` URIs on Vertex",
         "✓ `inlineData` `audio/<format>` (wav, mp3…)"),
        ("Cohere v2", "✓", "✓ `image_url` (vision models)",
         f"✓ its text layer (pypdf) as a document; per request at most "
         f"{cohere.MAX_PDF_FILES} PDFs, {pdf_mib} MiB, {cohere.MAX_PDF_PAGES} pages, else "
         "413; a scan ✗",
         "✓ top-level `documents`: `{\"data\": {\"title\": <filename>, \"text\": …}}`",
         "✓ fetched, then as a PDF or text file", "✗", "✗"),
        ("Cloudflare Workers AI (`ai/run`)", "✓", "✗", "✗", "✗", "✗", "✗", "✗"),
    ]
    out = ["\n## Input parts\n\n",
           "Which chat `content` parts reach each vendor, and as what. ✗ is a 400 "
           "(`unsupported_content`, or `unsupported_parameter` for `n` and `response_format`) "
           "that only makes that channel unusable: the router tries the next channel of the "
           "key, and only when no channel can take the request does the client get the first "
           "refusal, its message ending with every provider tried (`no channel can take this "
           "request; tried: <provider> (<engine>), …`). A 413 for a document over a vendor's "
           "limit is checked before any upstream call, and falls over the same way.\n\n",
           "| vendor | text | image | file: PDF | file: text | file by URL | file by id "
           "| audio |\n"
           "| --- | --- | --- | --- | --- | --- | --- | --- |\n"]
    out += [f"| {' | '.join(row)} |\n" for row in rows]
    out.append(
        "\nA `file` part is `{\"type\": \"file\", \"file\": {\"file_data\": "
        "\"data:<mime>;base64,…\", \"filename\": …}}` or `{\"file_id\": …}`, as OpenAI defines "
        "it; uniapi also takes `{\"file_url\": \"https://…\", \"filename\": …}`, which the "
        "Messages front's `document` url source and the Responses front's `input_file."
        "file_url` become. A URL is fetched, for the vendors that need the bytes, under the "
        "fetch policy of [contracts.md](contracts.md) R11 (https, public addresses, 32 MiB: "
        "else a 413 `document_too_large`; a failed fetch is a 400 `document_fetch_failed`). "
        "An id is read only by the vendor whose Files API issued it. The rules behind each "
        "cell are in [vendor-rules.md](vendor-rules.md) (ANT-D1…D6, \"Gemini reads documents "
        "and audio inline\", \"Gemini fetched documents\", \"Gemini file ids\", \"Cohere "
        "documents\", \"Cohere PDF text\").\n")
    return out


def _responses_front() -> list[str]:
    """How a ``/v1/responses`` request reaches each upstream (uniapi_core/fronts/responses.py)."""
    return [
        "\n## The OpenAI Responses front (`/v1/responses`)\n\n",
        "A Responses request (Codex, the OpenAI Agents SDK, `client.responses`; "
        "[clients.md](clients.md)) is routed like a chat completion. A provider whose "
        "`base_url` ends in `/responses` (engine `gpt` or `openrouter`) is sent the client's "
        "body as it is, `model` replaced, and its answer and events come back as it wrote "
        "them (`vendors/responses_native.py`). Every other channel gets an OpenAI chat "
        "request (`fronts/responses.py`), and the chat answer or chunk stream is turned back "
        "into a `response` object or Responses event stream (`response.created`, "
        "`response.in_progress`, output items and parts with their deltas and `.done` "
        "events, `response.completed`, `response.incomplete` at the token limit, or "
        "`response.failed`; `sequence_number` rises by one from 0). Errors are OpenAI's "
        "shape.\n\n",
        "- `input` as a string or items: `message` (roles user, assistant, system, "
        "developer as system; `input_text`, `output_text`, `input_image` by URL or data URL, "
        "`input_file` by `file_data`, `file_url` or `file_id`: a `file` part, its URL "
        "fetched for upstreams that need the bytes), `function_call` (consecutive ones make "
        "one assistant "
        "message with `tool_calls`), `function_call_output` (a `tool` message), `reasoning` "
        "(its text becomes `reasoning_content` of the next assistant message; "
        "`encrypted_content` is dropped). An image by `file_id`, "
        "`item_reference` and other item types (`custom_tool_call`, `web_search_call` …) "
        "are a 400 naming the JSON path. `instructions` is a leading system message.\n",
        "- `tools`: function tools pass (with `strict`); Codex's `namespace` tools are "
        "flattened to `<namespace>__<name>` and calls come back with `name` and `namespace` "
        "apart again; every other tool type (`web_search`, `file_search`, "
        "`code_interpreter`, `computer_use_preview`, `image_generation`, `mcp`, `local_shell`, "
        "`shell`, `apply_patch`, `custom` …) is dropped, never a 400. `tool_choice` naming a "
        "hosted tool becomes `auto`.\n",
        "- `max_output_tokens` is sent as `max_completion_tokens`, `reasoning.effort` as "
        "`reasoning_effort` (`xhigh` and `max` as `high`), `text.format` as "
        "`response_format`; `reasoning.summary`, `metadata`, `store`, `truncation`, "
        "`include`, `service_tier`, `prompt_cache_key` and the like are echoed in the answer "
        "where the response object has them, never sent upstream.\n",
        "- Back: reasoning becomes one `reasoning` item with summary text; text a `message` "
        "item with `output_text` (annotations empty); tool calls `function_call` items; "
        "`length` gives status `incomplete` (`max_output_tokens`), `content_filter` "
        "`incomplete` (`content_filter`); usage with `input_tokens_details.cached_tokens` and "
        "`output_tokens_details.reasoning_tokens`.\n",
        "- `previous_response_id` continues a stored response (with the stats store on and "
        "`store` not false; docs/operations.md, Stored responses): its conversation is put "
        "before the new `input`, and a Responses-native channel is sent that whole input, "
        "without the id. With the store off it is a 400.\n",
    ]


def _gemini_front() -> list[str]:
    """How a Gemini-native request reaches each upstream (uniapi_core/fronts/gemini.py)."""
    return [
        "\n## The Gemini-native front (`/v1beta/models/{model}:generateContent`)\n\n",
        "`generateContent`, `streamGenerateContent` (`?alt=sse`, else one JSON array) and "
        "`countTokens` under `/v1beta/models/` or `/v1/models/` (google-genai, Gemini CLI; "
        "[clients.md](clients.md)), and `GET /v1beta/models`. The key comes from "
        "`x-goog-api-key`, `?key=` or Bearer; errors are Google's shape "
        "(`{\"error\": {code, message, status}}`). A Gemini or Vertex-Gemini channel is sent "
        "the client's body as it is (`vendors/gemini_native.py`: `thoughtSignature` and unknown "
        "fields kept; the upstream is always asked for SSE, and a client that wanted the "
        "array gets it re-framed). Every other channel gets an OpenAI chat request "
        "(`fronts/gemini.py`):\n\n",
        "- `contents` (user and model turns): text; `inlineData` images as data URLs, audio "
        "as `input_audio`, other documents as `file` parts; `fileData`: http(s) images as "
        "image URLs, other http(s) documents (not audio or video) as `file` parts by URL, a "
        "Files API or `gs://` URI as a `file_id` only Gemini reads; `functionCall` and `functionResponse` as tool calls and tool messages (a "
        "call's `thoughtSignature` rides on the tool call); thought parts of the history and "
        "signatures on text are dropped; `executableCode`, `codeExecutionResult`, video and "
        "`cachedContent` are a 400.\n",
        "- `systemInstruction` is a system message; `functionDeclarations` become function "
        "tools (Gemini's schema types lower-cased, `nullable` as a null type); other tools "
        "(`googleSearch`, `codeExecution`, `urlContext` …) are dropped; `toolConfig` modes "
        "map to `tool_choice`.\n",
        "- `generationConfig`: `temperature`, `topP`, `topK`, `maxOutputTokens`, "
        "`stopSequences`, `candidateCount`, penalties, `seed`; `responseMimeType` JSON with "
        "`responseSchema` or `responseJsonSchema` as `response_format`; `thinkingConfig` as "
        "`reasoning_effort` (`thinkingLevel` first; budget 0 none, -1 medium, < 4096 low, < "
        "16384 medium, else high), thoughts returned only with `includeThoughts`. "
        "`safetySettings` are dropped.\n",
        "- Back: `finishReason` STOP (also after tool calls), MAX_TOKENS, SAFETY; "
        "`usageMetadata` with thoughts and cached counts; streamed tool calls are sent whole "
        "once complete, and the last event carries `finishReason` and usage.\n",
        "- `countTokens` is an estimate (characters / 4 plus per-content, per-function and "
        "per-media amounts), marked `x-uniapi-token-count: estimated`.\n",
    ]


def _messages_front() -> list[str]:
    """How a ``/v1/messages`` request reaches each upstream (uniapi_core/fronts/)."""
    from uniapi_core.vendors.messages_native import NATIVE_ENGINES

    native = ", ".join(f"`{e}`" for e in sorted(NATIVE_ENGINES))
    return [
        "\n## The Anthropic Messages front (`/v1/messages`)\n\n",
        "A Messages request (Claude Code, the anthropic SDK; [clients.md](clients.md)) is routed "
        "like a chat completion: the same keys, model list, renames, schedulers, retries, "
        "limits and stats rows (endpoint `/v1/messages`). What reaches the upstream depends on "
        "the channel an attempt goes to; the client reads Anthropic's shapes either way, "
        "including errors (`{\"type\": \"error\", \"error\": {type, message}}`).\n\n",
        "| channel | what it gets | what is lost |\n| --- | --- | --- |\n",
        f"| Anthropic (`claude`), Claude on Vertex, Claude on Bedrock (engines {native}) | the "
        "client's own body (`vendors/messages_native.py`): `model` replaced by the upstream "
        "model (Vertex and Bedrock: removed, `anthropic_version` added, Bedrock without "
        "`stream`), the client's `anthropic-beta` values added (a header for Anthropic, the "
        "body's `anthropic_beta` list for Vertex and Bedrock; Vertex and Bedrock, which take "
        "no `url` sources, get image and document URLs fetched and inlined as base64, a text "
        "document as a text source); the answer and every stream "
        "event come back as the upstream wrote them, `model` the client's, Bedrock's event "
        "stream re-framed as SSE | nothing: `cache_control`, signed `thinking`, "
        "`redacted_thinking`, citations and server-tool blocks pass through |\n",
        "| every other engine (OpenAI-compatible, Azure, OpenRouter, Gemini, Vertex Gemini, "
        "Cohere, Cloudflare) | an OpenAI chat request (`fronts/messages.py`, rules below), then "
        "that engine's translation above; the OpenAI answer is turned back into a Messages "
        "answer or event stream | `cache_control`; thinking blocks of earlier turns (their "
        "signatures mean something to Anthropic only); citations; the fields the engine's "
        "own table above drops |\n\n",
        "The translation to chat (a request it cannot express is a 400 naming the JSON path, "
        "never a silent drop of content):\n\n",
        "- `system` (a string or text blocks, joined with a blank line) and a `role: "
        "\"system\"` turn among the messages become system messages in place.\n",
        "- Blocks: `text`; `image` from base64 (a data URL) or a URL; a base64 PDF `document` "
        "becomes a `file` part, a text document a text part (its title first), a URL "
        "document a `file` part by URL (fetched for upstreams that need the bytes), a "
        "document from a file id a `file` part with that `file_id`. A content-block "
        "document, an image from a file id, server-tool blocks "
        "(`server_tool_use`, `web_search_tool_result` …), `search_result` and "
        "`container_upload` blocks, and server tools (`web_search_…`, `bash_…`, "
        "`text_editor_…`) are a 400 on a translated channel.\n",
        "- `tool_use` becomes an assistant tool call; `tool_result` a `tool` message before "
        "the rest of its turn (`is_error: true` prefixes the text with `Error: `; images in a "
        "result follow in a user message).\n",
        "- `tools` become functions (`input_schema` is `parameters`); `tool_choice` `auto`, "
        "`any` (required), `tool` (that function), `none`; `disable_parallel_tool_use` is "
        "`parallel_tool_calls: false`.\n",
        "- `max_tokens`, `temperature`, `top_p`, `top_k`, `stop_sequences` (`stop`), "
        "`metadata.user_id` (`user`); `thinking` `enabled` becomes `reasoning_effort` by its "
        "budget (< 4096 low, < 16384 medium, else high), `adaptive` medium; "
        "`output_config.effort` wins (`max` is high); `output_config.format` `json_schema` "
        "becomes `response_format` `json_schema`.\n",
        "- Back: `reasoning_content` becomes a `thinking` block (with an empty signature), "
        "content a `text` block, tool calls `tool_use` blocks (arguments that are not a JSON "
        "object give `input: {}` in a whole answer); `finish_reason` `stop` is `end_turn`, "
        "`length` `max_tokens`, `tool_calls` `tool_use`, `content_filter` `refusal`; usage "
        "`input_tokens` (prompt minus cache reads and writes), `output_tokens`, "
        "`cache_read_input_tokens`, `cache_creation_input_tokens`.\n",
        "- A stream failing after its first event ends with Anthropic's `event: error`, "
        "never a bare cut; before it, the request is retried or answered with an error. A "
        "stream whose upstream is silent for 10 s (`relay/machine.py` `PING_EVERY`) is sent "
        "a `ping` event, as Anthropic sends them.\n\n",
        "`POST /v1/messages/count_tokens` is asked of an Anthropic channel of the model when "
        "the model has one; otherwise it is an estimate (characters / 4 plus per-message, "
        "per-tool and per-image amounts, `fronts/messages.py` `estimate_input_tokens`), "
        "marked `x-uniapi-token-count: estimated`.\n",
    ]


def _dialects() -> list[str]:
    """The dialect table of uniapi_core/vendors/dialects.py, and what is normalized."""
    out = ["\n## OpenAI-compatible dialects\n\n",
           "\"OpenAI-compatible\" hosts differ in what they stream back. The request goes out "
           "untouched; the answer is normalized so that an OpenAI client can read it "
           "(`uniapi_core/vendors/dialects.py`). These normalizations run for every dialect, "
           "because each is safe for a host that does not need it:\n\n",
           "- **Tool-call indexes** are assigned by order of first appearance in each choice "
           "(missing, restarting at 0 for every call, or starting at 1 all come out 0, 1, ...). "
           "Ids are kept; a call without one gets `call_` + 24 hex digits derived from the "
           "response id. The first delta of each call has `id`, `type` and `function.name`; "
           "arguments sent as an object become its JSON text.\n",
           "- **Content** is a string or null: a list of typed parts is flattened, `text` parts "
           "into `content`, `thinking` parts into `reasoning_content`.\n",
           "- **Reasoning** from `reasoning_content`, `reasoning` or the readable text of "
           "`reasoning_details` (the first present, never two) is sent as `reasoning_content`; "
           "`reasoning` is removed, `reasoning_details` kept. With `think_tags`, a "
           "`<think>...</think>` block at the start of the content is sent as "
           "`reasoning_content` (a tag split across chunks is held back until it is known).\n",
           "- **Usage** (top-level, or Groq's `x_groq.usage`) keeps counts only: integers >= 0; "
           "timings, costs and flags are not relayed. Cache hits reach "
           "`prompt_tokens_details.cached_tokens` (from DeepSeek's `prompt_cache_hit_tokens`, a "
           "top-level `cached_tokens` or `cache_read_input_tokens`), reasoning counts "
           "`completion_tokens_details.reasoning_tokens`, and `total_tokens` is filled in.\n",
           "- **Finish reasons** are mapped into OpenAI's set (`eos` and `end_turn` -> `stop`, "
           "`model_length` and `max_tokens` -> `length`, `tool_use` -> `tool_calls`, `stop` "
           "after tool calls -> `tool_calls`, anything unknown -> `stop`). Each choice gets "
           "exactly one: a repeated one and anything after it are dropped, and a stream that "
           "ends without one gets a last chunk carrying it. `finish_reason: \"error\"` fails "
           "the stream (an error event to the client; a retry if nothing was sent yet).\n",
           "- `model` is the name the client asked for.\n\n",
           "The dialect comes from `preferences.dialect` when the provider sets it, else from "
           "the engine (`azure`, `openrouter`), else from the `base_url` host (or, for "
           "`localhost`, the port), else `generic`. It decides whether `think_tags` is on by "
           "default; `preferences.think_tags: true|false` overrides it.\n\n",
           "| dialect | hosts | `think_tags` by default | what the host does differently |\n",
           "| --- | --- | --- | --- |\n"]
    for d in [*dialects.DIALECTS.values(), dialects.GENERIC]:
        hosts = ", ".join(f"`{h}`" for h in d.hosts)
        if d.port is not None:
            hosts += (", " if hosts else "") + f"`localhost:{d.port}`"
        out.append(f"| `{d.name}` ({d.title}) | {hosts or '-'} | "
                   f"{'yes' if d.think_tags else 'no'} | {d.differs} |\n")
    out.append("\n`tests/data/dialects/` holds a recorded-style stream and whole answer per "
               "dialect, written from each host's public docs (its README names them); "
               "`tests/core/vendors/test_dialects.py` and `tests/e2e/test_dialects.py` check "
               "that an OpenAI client, the openai SDK's stream helper included, reads each one "
               "as the expected answer.\n")
    return out


def _errors() -> list[str]:
    """The error section, from the tables the translators use (issue 11)."""
    from uniapi_core.errors import UpstreamError
    from uniapi_core.vendors import anthropic, base, bedrock, cohere, gemini

    status = base.client_status_for
    out = ["\n## Errors\n\n",
           "Every upstream error reaches the client as an OpenAI error: the vendor's message "
           "verbatim, its own error id in `code` (the HTTP status as a string when it gives "
           "none), `Retry-After` passed on (docs/contracts.md, Error status mapping; "
           "`tests/core/vendors/test_error_table.py` checks every row for every vendor). "
           "OpenAI-compatible and Azure errors keep their `type` and `code`. The status the "
           "client gets is decided for every vendor by one function, "
           "`uniapi_core.vendors.base.client_status_for`; the retry policy still sees the "
           "upstream's own status (a 529 is retried).\n\n",
           "| upstream status | status to the client |\n| --- | --- |\n",
           "| 400–499 | the same (409, 418 … too) |\n"]
    out += [f"| {s} | {status(s)} |\n" for s in sorted(base._CLIENT_STATUS)]
    out += [f"| 500–599 ({', '.join(str(s) for s in (500, 503, 529))} …) | {status(529)} |\n",
            f"| anything else | {status(0)} |\n",
            "| no channel left to try | 503 (429 with `Retry-After` when every key is over "
            "its rate limit; docs/routing.md §7) |\n",
            "\nAn error inside a 2xx body or a stream has the status its type comes with "
            "(the tables below, made by the translators themselves; OpenAI types likewise), "
            "so it maps the same way before the commit point.\n"]

    def table(title: str, errors: list[tuple[str, UpstreamError]]) -> list[str]:
        rows = [f"\n| {title} | OpenAI `type` | its status | to the client |\n"
                "| --- | --- | --- | --- |\n"]
        return rows + [f"| `{k}` | `{e.type}` | {e.upstream_status} | {e.status} |\n"
                       for k, e in errors]

    out += table("Anthropic `error.type`", [(k, anthropic._upstream_error(0, (), "", k))
                                            for k in sorted(anthropic.ERROR_TYPES)])
    out += table("Bedrock error class", [(k, bedrock._make_error(0, "", k))
                                         for k in sorted(bedrock.EXCEPTIONS)])
    out += table("Google `status`", [(k, gemini._google_error(
        base.implied_status({"status": k}), (), b"", {"error": {"status": k, "message": ""}}))
        for k in sorted(base.GOOGLE_STATUS_TYPES)])
    out.append("\nAnthropic, Bedrock and Google errors are typed by HTTP status first, by "
               "vendor type second. A Gemini prompt blocked before generation "
               "(`promptFeedback.blockReason`) and an Azure `content_filter` 400 are 400 "
               "`invalid_request_error` with `code: \"content_filter\"`. Cohere's own statuses: "
               + ", ".join(f"{k} is taken as {v}"
                           for k, v in sorted(cohere._STATUS_ALIASES.items()))
               + " (its status string stays the `code`); `finish_reason` `ERROR` in a stream is a "
               "500 and `ERROR_LIMIT` a 429. Cloudflare errors are typed by HTTP status and "
               "keep their numeric `code`; one sent with HTTP 200 or in a stream is a 502.\n")
    return out


def test_vendors_page_is_current():
    assert PAGE.read_text() == render(), "run: python tests/test_docs.py"


# -- rule ids and outside documents ------------------------------------------------------------

#: where rule ids may be cited: the code, the tests, fuzz targets, benchmarks and the docs
SCANNED = ["uniapi_core", "uniapi_trio", "uniapi_asyncio", "tests", "fuzz", "benchmarks", "docs"]
_PREFIXES = "DEC|REQ|TC|ERR|SSE|O|S|U|D|ANT|GEM|VTX|BR|AZ|OAI|CF|CO"
#: a rule id: a known prefix, a dash, an optional letter and a number (``DEC-1``, ``GEM-R4``,
#: ``S-8``), or a reliability rule (``R`` and one or two digits). Only known prefixes count, so
#: UTF-8, SHA-256 or CRC-32 are words, and the lookarounds keep ``ANT-R7`` one id, not two.
TAG = re.compile(rf"(?<![\w-])(?:(?:{_PREFIXES})-[A-Z]?\d+|R\d{{1,2}})(?![\w-])")
#: ``S-1..S-8``, ``GEM-R1..R3``, ``SSE-1 … SSE-10``, ``R3–R11``: every id in between is cited
RANGE = re.compile(rf"(?<![\w-])(?P<p>(?:{_PREFIXES})-|)(?P<l>[A-Z]?)(?P<a>\d+)"
                   r"\s*(?:\.\.|…|–)\s*(?:(?P=p))?(?P=l)(?P<b>\d+)(?![\w-])")
#: names of documents that live outside this repository (spelled so this file does not match);
#: ``docs/reliability.md`` is ours: linked as ``docs/…``, ``(…`` or ``[…``, the name is allowed
OUTSIDE = re.compile(r"spec[/]|semantics\.md|vendor[-]protocols|(?<!docs/)(?<![(\[])"
                     r"reliability\.md|"
                     r"uni-api[-]reference|dependencies\.md|seeds[/]|style\.md|"
                     r"DEVELOPERS\.md|\.\.[/]shared")


def _scanned(suffixes: tuple[str, ...]) -> list[Path]:
    files = [ROOT / "README.md"]
    for top in SCANNED:
        files += sorted(p for p in (ROOT / top).rglob("*")
                        if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts)
    return files


def cited_tags() -> dict[str, list[str]]:
    """Rule id -> the ``file:line`` places citing it (ranges expanded)."""
    cited: dict[str, list[str]] = {}
    for path in _scanned((".py", ".md")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{n}"
            tags = TAG.findall(line)
            for m in RANGE.finditer(line):
                prefix, letter = m["p"], m["l"]
                if not prefix and letter != "R":
                    continue  # "1..3" is not a rule range
                tags += [f"{prefix}{letter}{i}" for i in range(int(m["a"]), int(m["b"]) + 1)]
            for tag in tags:
                cited.setdefault(tag, []).append(where)
    return cited


def headed_tags() -> set[str]:
    """Rule ids that head a section of a docs/ page (``### DEC-1 Split invariance``)."""
    headed = set()
    for page in (ROOT / "docs").glob("*.md"):
        for line in page.read_text(encoding="utf-8").splitlines():
            words = line.lstrip("#").split() if line.startswith("#") else []
            if words and TAG.fullmatch(words[0]):
                headed.add(words[0])
    return headed


def test_the_tag_pattern_knows_words_from_rule_ids():
    text = "UTF-8 SHA-256 CRC-32 SSH-2 PDF-1 ANT-R1 R3_CASES x-1 DEC-1 GEM-R4 S-8 R7 BR-S3"
    assert TAG.findall(text) == ["ANT-R1", "DEC-1", "GEM-R4", "S-8", "R7", "BR-S3"]
    assert [m.group() for m in RANGE.finditer("S-1..S-8, GEM-R1..R3, R3–R11, 1..3")] == [
        "S-1..S-8", "GEM-R1..R3", "R3–R11", "1..3"]


def test_every_cited_tag_resolves_to_a_docs_heading():
    cited, headed = cited_tags(), headed_tags()
    missing = sorted(set(cited) - headed)
    assert not missing, "rule ids cited without a heading in docs/ (docs/contracts.md for " \
        "shared rules, docs/vendor-rules.md for vendor rules):\n" + "\n".join(
            f"  {tag}: {', '.join(cited[tag][:5])}" for tag in missing)


def test_no_reference_to_documents_outside_the_repository():
    found = []
    for path in _scanned((".py", ".md", ".txt", ".toml", ".yaml", ".yml", ".json", ".cfg")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line) and "github.com/yym68686/uni-api" not in line:
                found.append(f"  {path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not found, "references to documents outside the repository; point at docs/ " \
        "instead:\n" + "\n".join(found)


# -- section signs ----------------------------------------------------------------------------

#: a section sign and the section number after it, if any (the sign is spelled as an escape so
#: that this file holds none)
SIGN = re.compile("\u00a7" r"\s*(\d+(?:\.\d+)*)?")
#: what a section sign may point into: a page of docs/ (``docs/routing.md``, ``routing.md``) or
#: a public standard (``RFC 9110``)
SOURCE = re.compile(r"(?:docs/)?(?P<page>[\w-]+\.md)\b|(?P<rfc>RFC \d+)")
#: how far (in characters) a section sign may stand from the page it points into, or from the
#: previous section sign of a list such as ``docs/routing.md`` + ``\u00a71, \u00a78``
NEAR = 20


def _numbered_headings() -> dict[str, set[str]]:
    """docs page name -> the numbers its headings start with (``## 6. Provider keys`` -> 6)."""
    heading = re.compile(r"^#+\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
    return {page.name: set(heading.findall(page.read_text(encoding="utf-8")))
            for page in (ROOT / "docs").glob("*.md")}


def section_sign_problems() -> list[str]:
    """Every section sign in the code, tests, fuzz targets, benchmarks and README.md that does
    not name a docs page (and, when numbered, a numbered heading of that page)."""
    pages = _numbered_headings()
    files = [ROOT / "README.md"] + [p for p in _scanned((".py",)) if p.suffix == ".py"]
    problems = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"  {path.relative_to(ROOT)}:{n}: {line.strip()[:100]}"
            marks = sorted([(m.start(), m.end(), m) for m in SOURCE.finditer(line)] +
                           [(m.start(), m.end(), m) for m in SIGN.finditer(line)],
                           key=lambda t: t[0])
            source, end = None, 0
            for start, stop, m in marks:
                if m.re is SOURCE:
                    source, end = m["page"] or m["rfc"], stop
                    continue
                if source is None or start - end > NEAR:
                    problems.append(f"{where}\n    (a section sign with no docs page before it)")
                elif source.endswith(".md") and source not in pages:
                    problems.append(f"{where}\n    ({source} is not a page of docs/)")
                elif source.endswith(".md") and m[1] and m[1] not in pages[source]:
                    problems.append(f"{where}\n    (docs/{source} has no heading numbered {m[1]})")
                end = stop
    return problems


def test_every_section_sign_names_a_docs_page():
    problems = section_sign_problems()
    assert not problems, "section signs must point into a page of docs/ (docs/routing.md " \
        "and a number it has as a heading, e.g. '## 6.'), or into an RFC:\n" + "\n".join(problems)


if __name__ == "__main__":
    PAGE.write_text(render())
