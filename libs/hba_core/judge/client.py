"""Talking to the judge: the shared chat client (:mod:`hba_core.chat_client`: concurrency, rate limit,
timeouts, retries honouring ``Retry-After``, key scrubbing) plus the judge's structured-output logic.

Every request is a fresh two-message conversation (the instruction, as a system message or - in the
reference protocol - a user one, then the user instruction), so no history is shared between
judgments. Structured output (a JSON-schema ``response_format``) is asked for first; a server that
rejects it with 400 gets the same request without it, plus a sentence asking for the JSON object,
and the client remembers that for the rest of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hba_core.chat_client import (  # noqa: F401 - the judge's names for the shared transport
    OPENAI_URL,
    ChatClient,
    ChatServerError,
    ClientSettings,
    RateLimiter,
    Reply,
    check_base_url,
    http_library,
    redact,
    retry_after_s,
)

DEFAULT_MODEL = "gpt-5-nano"


class JudgeServerError(ChatServerError):
    """The judge server refuses every request (bad key, unknown model, wrong URL): the run stops."""


class JudgeClient:
    """The chat client of one judge run. Use as ``async with JudgeClient(...) as client``."""

    def __init__(self, settings: ClientSettings, api_key: str):
        self.settings = settings
        self.chat = ChatClient(settings, api_key, who="judge server", url_flag="--base-url", error=JudgeServerError)
        self.structured: bool | None = None  # None until the server has accepted or refused response_format

    @property
    def requests(self) -> int:
        """HTTP requests sent, retries included."""
        return self.chat.requests

    async def __aenter__(self) -> JudgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.chat.__aexit__(*exc)

    async def check_endpoint(self) -> None:
        await self.chat.check_endpoint()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        return self.chat._backoff(attempt, retry_after)

    async def ask(
        self,
        render: Callable[[bool], list[dict[str, str]]],
        schema: dict[str, Any],
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> Reply:
        """Send one judgment request; ``render(json_instruction)`` gives its chat messages.

        ``extra`` holds further body fields (the reference protocol's ``max_completion_tokens``).
        Retries as :meth:`hba_core.chat_client.ChatClient.exchange` does.
        """
        structured_format = {"type": "json_schema", "json_schema": schema}

        sent_structured = False

        def build() -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
            nonlocal sent_structured
            sent_structured = self.structured is not False  # decided once a slot is held: the latest knowledge
            return render(not sent_structured), structured_format if sent_structured else None

        def resend_on_400(response_format: dict[str, Any] | None) -> bool:
            if response_format is not None and self.structured is not True:
                # The server has no structured output: ask in words from now on (requests already in
                # flight with a schema land here too, and are simply re-sent).
                self.structured = False
                return True
            return False

        reply = await self.chat.exchange(build, extra=extra, resend_on_400=resend_on_400)
        if reply.error is None and sent_structured and self.structured is None:
            self.structured = True
        return reply
