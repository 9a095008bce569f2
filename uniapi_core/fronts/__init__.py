"""Fronts: the protocols clients speak other than OpenAI chat completions, translated to and
from the OpenAI chat shape every vendor translator and the relay speak.

``messages`` is Anthropic's Messages API (``POST /v1/messages``): the request turned into an
OpenAI chat request, the OpenAI answer (whole ``chat.completion`` or chunk stream) turned back
into Anthropic's ``message`` object or event stream. ``messages_check`` is the grammar
validator of that event stream, used by the tests. Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from .messages import (
    MessagesCall,
    MessagesStream,
    anthropic_error_body,
    chat_request_from_messages,
    error_type_for,
    estimate_input_tokens,
    messages_response_from_chat,
)

__all__ = [
    "MessagesCall",
    "MessagesStream",
    "anthropic_error_body",
    "chat_request_from_messages",
    "error_type_for",
    "estimate_input_tokens",
    "messages_response_from_chat",
]
