"""Talking to the judge: one AsyncOpenAI client per run, bounded concurrency, a request-rate limit,
per-request timeouts and retries with exponential backoff + jitter that honour ``Retry-After``.

Every request is a fresh two-message conversation (system instruction + user instruction), so no
history is shared between judgments. Structured output (a JSON-schema ``response_format``) is asked
for first; a server that rejects it with 400 gets the same request without it, plus a sentence asking
for the JSON object, and the client remembers that for the rest of the run.

The API key is passed in by the caller (read from the environment there) and is scrubbed from every
error message and reply this module returns.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hba_core.errors import HbaError

DEFAULT_MODEL = "gpt-5-nano"
OPENAI_URL = "https://api.openai.com/v1"
_RETRYABLE_STATUS = frozenset({408, 409, 429})  # plus every 5xx
_FATAL_STATUS = {
    401: "authentication failed",
    403: "permission denied",
    404: "not found (check --base-url and --model)",
}
_MAX_RETRY_AFTER_S = 120.0  # a server asking for longer is treated as asking for this long


class JudgeServerError(HbaError):
    """The judge server refuses every request (bad key, unknown model, wrong URL): the run stops."""


@dataclass(frozen=True)
class ClientSettings:
    base_url: str | None = None  # None: api.openai.com
    model: str = DEFAULT_MODEL
    concurrency: int = 16  # requests in flight at once
    rpm: float | None = None  # requests started per minute; None = unlimited
    timeout_s: float = 60.0  # per request
    retries: int = 5  # extra attempts after the first, on 429 / 5xx / timeouts / connection errors
    backoff_s: float = 0.5  # first backoff; doubles each retry (with jitter), capped at backoff_max_s
    backoff_max_s: float = 30.0


@dataclass(frozen=True)
class Reply:
    """The outcome of one judgment request after retries."""

    content: str | None  # the reply text (None when no reply came)
    latency_s: float | None  # of the attempt that answered
    attempts: int
    error: str | None  # set when no reply came after the last retry


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``***``."""
    if secret and len(secret) >= 4 and secret in text:
        return text.replace(secret, "***")
    return text


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date); None when absent or unreadable."""
    if headers is None:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


class RateLimiter:
    """Spaces request starts at least ``60 / rpm`` seconds apart (no bursts)."""

    def __init__(self, rpm: float | None):
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


class JudgeClient:
    """One OpenAI-compatible client for a whole run. Use as ``async with JudgeClient(...) as client``."""

    def __init__(self, settings: ClientSettings, api_key: str):
        import openai  # imported on first use (~1 s): a fully cached re-run never needs it
        from openai._constants import DEFAULT_CONNECTION_LIMITS

        self.settings = settings
        self._key = api_key
        # The SDK's HTTP client with its defaults, except that every concurrent connection is kept alive (the
        # default keeps 100: above that, connections are torn down and re-opened on every request). The Limits
        # class is taken from the SDK's own default, so this follows whichever HTTP library the SDK uses.
        pool = type(DEFAULT_CONNECTION_LIMITS)(
            max_connections=max(1000, settings.concurrency), max_keepalive_connections=max(100, settings.concurrency)
        )
        # SDK retries are off (ours honour Retry-After and are counted); the URL is always explicit, since the SDK
        # would otherwise read $OPENAI_BASE_URL behind the cache key's back.
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=settings.base_url or OPENAI_URL,
            max_retries=0,
            timeout=settings.timeout_s,
            http_client=openai.DefaultAsyncHttpxClient(limits=pool),
        )
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._rate = RateLimiter(settings.rpm)
        self.structured: bool | None = None  # None until the server has accepted or refused response_format
        self.requests = 0  # HTTP requests sent, retries included

    async def __aenter__(self) -> JudgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, _MAX_RETRY_AFTER_S) + random.uniform(0, 0.1 * self.settings.backoff_s)
        cap = min(self.settings.backoff_max_s, self.settings.backoff_s * 2**attempt)
        return random.uniform(cap / 2, cap)  # "equal jitter": never zero, spreads the herd

    async def _send(self, messages: list[dict[str, str]], schema: dict[str, Any] | None) -> tuple[str | None, float]:
        import openai

        kwargs: dict[str, Any] = {}
        if schema is not None:
            # Sent as-is in the body: the SDK's typed-parameter transform walks the schema on every call (~2 ms).
            kwargs["extra_body"] = {"response_format": {"type": "json_schema", "json_schema": schema}}
        self.requests += 1
        start = time.perf_counter()
        response = await self._client.chat.completions.create(model=self.settings.model, messages=messages, **kwargs)  # type: ignore[arg-type]
        latency = time.perf_counter() - start
        if not response.choices:
            raise openai.APIError("the response has no choices: not a chat completion", request=None, body=None)
        message = response.choices[0].message
        return (message.content if message.content is not None else message.refusal), latency

    async def ask(self, render: Callable[[bool], tuple[str, str]], schema: dict[str, Any]) -> Reply:
        """Send one judgment request; ``render(json_instruction)`` gives the (system, user) messages.

        Retries 429, 408, 409, 5xx, timeouts and dropped connections up to ``settings.retries`` times;
        other 4xx answers and the last failure become ``Reply.error``. 401/403/404 stop the run.
        """
        import openai

        attempt = 0
        while True:
            retry_after: float | None = None
            async with self._slots:  # backoff sleeps happen outside: a waiting retry holds no slot
                await self._rate.wait()
                structured = self.structured is not False  # decided once a slot is held: the latest knowledge
                system, user = render(not structured)
                messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
                try:
                    content, latency = await self._send(messages, schema if structured else None)
                except openai.APIStatusError as exc:
                    status = exc.status_code
                    if status == 400 and structured and self.structured is not True:
                        # The server has no structured output: ask in words from now on (requests already in
                        # flight with a schema land here too, and are simply re-sent).
                        self.structured = False
                        continue
                    if status in _FATAL_STATUS:
                        raise JudgeServerError(
                            f"judge server at {self._where()}: {_FATAL_STATUS[status]} "
                            f"(HTTP {status}: {self._scrub(exc.message)})"
                        ) from None
                    if status not in _RETRYABLE_STATUS and status < 500:
                        return Reply(None, None, attempt + 1, f"HTTP {status}: {self._scrub(exc.message)}")
                    failure = f"HTTP {status}: {self._scrub(exc.message)}"
                    retry_after = retry_after_s(exc.response.headers)
                except openai.APITimeoutError:
                    failure = f"timed out after {self.settings.timeout_s:g} s"
                except openai.APIConnectionError as exc:
                    failure = f"connection error: {self._scrub(str(exc.__cause__ or exc))}"
                except openai.APIError as exc:  # a 200 whose body is not a chat completion
                    return Reply(None, None, attempt + 1, f"bad response: {self._scrub(str(exc))}")
                else:
                    if structured and self.structured is None:
                        self.structured = True
                    return Reply(self._scrub(content) if content is not None else None, latency, attempt + 1, None)
            if attempt >= self.settings.retries:
                return Reply(None, None, attempt + 1, f"gave up after {attempt + 1} attempts: {failure}")
            await asyncio.sleep(self._backoff(attempt, retry_after))
            attempt += 1

    def _scrub(self, text: str) -> str:
        return redact(text, self._key)

    def _where(self) -> str:
        return self.settings.base_url or OPENAI_URL
