"""The protocols the gateway relays, by client-facing path."""

from __future__ import annotations

from localsuite.gateway.protocols.anthropic import CountTokens, Messages
from localsuite.gateway.protocols.base import Assembler, Protocol, StreamView
from localsuite.gateway.protocols.openai import ChatCompletions, Completions, Responses

CHAT = ChatCompletions()
COMPLETIONS = Completions()
MESSAGES = Messages()
COUNT_TOKENS = CountTokens()
RESPONSES = Responses()

__all__ = [
    "CHAT",
    "COMPLETIONS",
    "COUNT_TOKENS",
    "MESSAGES",
    "RESPONSES",
    "Assembler",
    "Protocol",
    "StreamView",
]
