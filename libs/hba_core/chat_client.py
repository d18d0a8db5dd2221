"""One client for OpenAI-compatible chat servers (hba-judge and served hba-predict): one HTTP connection pool
per run, bounded concurrency, a request-rate limit, per-request timeouts and retries with exponential
backoff + jitter that honour ``Retry-After``.

Requests go straight to ``POST {base_url}/chat/completions`` as JSON, through aiohttp (its HTTP parser is
C: ~0.3 ms of client CPU a request at 32-64 in flight, against ~1.1-1.5 ms through httpx2/httpcore, the
openai SDK's own library, and ~2.5 ms through the SDK itself; docs/benchmarks.md). The API key is passed in
by the caller (read from the environment there) and is scrubbed from every error message and reply this
module returns. No torch here: a ``[judge]`` install uses it.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from hba_core.errors import HbaError

OPENAI_URL = "https://api.openai.com/v1"
_RETRYABLE_STATUS = frozenset({408, 409, 429})  # plus every 5xx
_FATAL_STATUS = {401: "authentication failed", 403: "permission denied", 404: "not found"}
_MAX_RETRY_AFTER_S = 120.0  # a server asking for longer is treated as asking for this long


class ChatServerError(HbaError):
    """The server refuses every request (bad key, unknown model, wrong URL): the run stops."""


@dataclass(frozen=True)
class ClientSettings:
    base_url: str | None = None  # None: api.openai.com
    model: str = "gpt-5-nano"
    concurrency: int = 16  # requests in flight at once
    rpm: float | None = None  # requests started per minute; None = unlimited
    timeout_s: float = 60.0  # per request
    retries: int = 5  # extra attempts after the first, on 429 / 5xx / timeouts / connection errors
    backoff_s: float = 0.5  # first backoff; doubles each retry (with jitter), capped at backoff_max_s
    backoff_max_s: float = 30.0


@dataclass(frozen=True)
class Reply:
    """The outcome of one chat request after retries."""

    content: str | None  # the reply text (None when no reply came)
    latency_s: float | None  # of the attempt that answered
    attempts: int
    error: str | None  # set when no reply came after the last retry


_SCRUB_MIN = 8  # a run of this many characters of the key is scrubbed: servers echo keys cut or without "sk-"


def redact(text: str, secret: str | None) -> str:
    """``text`` with every run of ``secret`` of 8+ characters (or the whole of a shorter key) replaced by ``***``.

    >>> redact("bad key abc12345xyz given", "sk-abc12345xyz")
    'bad key *** given'
    """
    if not secret or len(secret) < 4:
        return text
    if len(secret) < _SCRUB_MIN:
        return text.replace(secret, "***")
    grams = {secret[i : i + _SCRUB_MIN] for i in range(len(secret) - _SCRUB_MIN + 1)}
    covered = [False] * len(text)
    for i in range(len(text) - _SCRUB_MIN + 1):
        if text[i : i + _SCRUB_MIN] in grams:
            covered[i : i + _SCRUB_MIN] = [True] * _SCRUB_MIN
    if not any(covered):
        return text
    out: list[str] = []
    for i, ch in enumerate(text):
        if not covered[i]:
            out.append(ch)
        elif i == 0 or not covered[i - 1]:
            out.append("***")
    return "".join(out)


def check_base_url(url: str | None, flag: str = "--base-url") -> None:
    """Refuse a URL the HTTP client would misread (no scheme: ``localhost:8000/v1``); ``flag`` names the option."""
    if url is None:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HbaError(f"{flag} {url!r} is not an http(s) URL; write it in full, e.g. http://127.0.0.1:8000/v1")


def retry_after_s(headers: Mapping[str, str] | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date, counted from ``now()``); None
    when absent or unreadable."""
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
    return max(0.0, parsed.timestamp() - now())


class RateLimiter:
    """Spaces request starts at least ``60 / rpm`` seconds apart (no bursts), as measured when they start.

    The next slot is booked from the moment ``wait`` actually returns, under the lock: a sleep that wakes
    late pushes every later start back instead of letting the next one follow too closely (booking fixed
    slots in advance would). ``clock`` and ``sleep`` are injectable so tests can run on a fake clock.

    >>> asyncio.run(RateLimiter(None).wait())  # no limit: returns at once
    """

    def __init__(
        self,
        rpm: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ):
        self.interval = 60.0 / rpm if rpm else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")
        self._lock = asyncio.Lock()  # FIFO: waiters start in the order they asked

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            # a loop, not one sleep: a clock coarser than the delay, or an early wake-up, must not start early
            while (delay := self._next - self._clock()) > 0:
                await self._sleep(delay)
            self._next = self._clock() + self.interval


def http_library() -> Any:
    """aiohttp, imported on first use: a fully cached re-run never needs it (importing it costs ~0.1 s)."""
    import aiohttp

    return aiohttp


class _StatusError(Exception):
    """An HTTP error answer: status, the server's message, and headers (for Retry-After)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str]):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class _BadResponse(Exception):
    """HTTP 200 whose body is not a chat completion."""


def _error_message(content: bytes, reason: str | None) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the start of the body text."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
    text = content.decode("utf-8", "replace").strip()
    return text[:300] or (reason or "no message")


def _reply_text(content: bytes) -> str | None:
    """``choices[0].message.content`` (or its ``refusal``) of a chat-completion body; _BadResponse otherwise."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise _BadResponse("the body is not JSON: not a chat completion") from None
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _BadResponse("the response has no choices: not a chat completion")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _BadResponse("the first choice has no message: not a chat completion")
    text = message.get("content")
    if text is None:
        text = message.get("refusal")
    if text is not None and not isinstance(text, str):
        raise _BadResponse(f"the message content is {type(text).__name__}, not text")
    return text


Messages = list[dict[str, Any]]
# What one attempt sends: the messages and a response_format (None: none). Called once a slot is held, so
# it can use what earlier replies taught (the judge's structured-output fallback).
Build = Callable[[], tuple[Messages, dict[str, Any] | None]]


class ChatClient:
    """One OpenAI-compatible HTTP client for a whole run. Use as ``async with ChatClient(...) as client``.

    ``who`` and ``url_flag`` name the server and the option that points at it in error messages
    ("judge server", "--base-url"); ``error`` is the exception raised when the server refuses every request.
    """

    def __init__(
        self,
        settings: ClientSettings,
        api_key: str,
        *,
        who: str = "chat server",
        url_flag: str = "--base-url",
        error: type[ChatServerError] = ChatServerError,
    ):
        self.settings = settings
        self._key = api_key
        self._who, self._flag, self._error = who, url_flag, error
        base = (settings.base_url or OPENAI_URL).rstrip("/")
        self._chat_url, self._models_url = f"{base}/chat/completions", f"{base}/models"
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._http: Any = None  # aiohttp, and the session below: opened on the first request
        self._session: Any = None
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._rate = RateLimiter(settings.rpm)
        self.requests = 0  # HTTP requests sent, retries included

    def _open(self) -> Any:
        """The run's one aiohttp session (created inside the event loop, as aiohttp requires)."""
        if self._session is None:
            http = self._http = http_library()
            # A pool as large as the concurrency, every connection kept alive between requests. trust_env:
            # HTTP(S)_PROXY / NO_PROXY are honoured as httpx (the SDK's library) did; the URL is always explicit.
            self._session = http.ClientSession(
                headers=self._headers,
                timeout=http.ClientTimeout(total=self.settings.timeout_s),
                connector=http.TCPConnector(limit=max(100, self.settings.concurrency + 1)),
                trust_env=True,
            )
        return self._session

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def check_endpoint(self) -> None:
        """One ``GET /models`` before the run, so a dead URL or bad key fails in seconds, not as N error rows.

        Any HTTP answer other than 401/403 counts as reachable: not every OpenAI-compatible server lists models.
        """
        session = self._open()
        http = self._http
        try:
            timeout = http.ClientTimeout(total=min(self.settings.timeout_s, 15.0))
            async with session.get(self._models_url, timeout=timeout) as response:
                status, content, reason = response.status, await response.read(), response.reason
        except (TimeoutError, http.ClientError) as exc:
            raise self._error(
                f"cannot reach the {self._who} at {self._where()} "
                f"({self._scrub(str(exc) or type(exc).__name__)}); check {self._flag} and that the server is running"
            ) from None
        if status in (401, 403):
            raise self._error(self._fatal(status, _error_message(content, reason)))

    def _fatal(self, status: int, message: str) -> str:
        what = _FATAL_STATUS[status] + (f" (check {self._flag} and --model)" if status == 404 else "")
        return f"{self._who} at {self._where()}: {what} (HTTP {status}: {self._scrub(message)})"

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, _MAX_RETRY_AFTER_S) + random.uniform(0, 0.1 * self.settings.backoff_s)
        cap = min(self.settings.backoff_max_s, self.settings.backoff_s * 2**attempt)
        return random.uniform(cap / 2, cap)  # "equal jitter": never zero, spreads the herd

    async def _send(
        self, messages: Messages, response_format: dict[str, Any] | None, extra: Mapping[str, Any] | None
    ) -> tuple[str | None, float]:
        body: dict[str, Any] = {"model": self.settings.model, "messages": messages, **(extra or {})}
        if response_format is not None:
            body["response_format"] = response_format
        self.requests += 1
        session = self._open()
        start = time.perf_counter()
        async with session.post(self._chat_url, data=orjson.dumps(body)) as response:
            content = await response.read()
            if response.status >= 300:
                raise _StatusError(response.status, _error_message(content, response.reason), response.headers)
        return _reply_text(content), time.perf_counter() - start

    async def ask(
        self,
        messages: Messages,
        *,
        response_format: dict[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Reply:
        """Send one chat request; ``extra`` holds further body fields (``temperature``, ``max_tokens``...).

        Example (inside a coroutine)::

            async with ChatClient(ClientSettings(base_url=url, model="m"), key) as client:
                reply = await client.ask([{"role": "user", "content": "Hi"}], extra={"temperature": 0})
        """
        return await self.exchange(lambda: (messages, response_format), extra=extra)

    async def exchange(
        self,
        build: Build,
        *,
        extra: Mapping[str, Any] | None = None,
        resend_on_400: Callable[[dict[str, Any] | None], bool] | None = None,
    ) -> Reply:
        """The request loop behind :meth:`ask`: ``build()`` gives each attempt's messages and response_format.

        Retries 429, 408, 409, 5xx, timeouts and dropped connections up to ``settings.retries`` times;
        other 4xx answers and the last failure become ``Reply.error``. 401/403/404 stop the run. A 400 is
        sent again at once (not counted as a retry) when ``resend_on_400(response_format)`` says so.
        """
        http = self._http or http_library()
        attempt = 0
        while True:
            retry_after: float | None = None
            async with self._slots:  # backoff sleeps happen outside: a waiting retry holds no slot
                await self._rate.wait()
                messages, response_format = build()
                try:
                    content, latency = await self._send(messages, response_format, extra)
                except _StatusError as exc:
                    status = exc.status
                    if status == 400 and resend_on_400 is not None and resend_on_400(response_format):
                        continue
                    if status in _FATAL_STATUS:
                        raise self._error(self._fatal(status, exc.message)) from None
                    if status not in _RETRYABLE_STATUS and status < 500:
                        return Reply(None, None, attempt + 1, f"HTTP {status}: {self._scrub(exc.message)}")
                    failure = f"HTTP {status}: {self._scrub(exc.message)}"
                    retry_after = retry_after_s(exc.headers)
                except TimeoutError:  # aiohttp's own timeouts derive from it
                    failure = f"timed out after {self.settings.timeout_s:g} s"
                except http.ClientError as exc:  # refused, reset, dropped mid-reply
                    failure = f"connection error: {self._scrub(str(exc) or type(exc).__name__)}"
                except _BadResponse as exc:  # a 200 whose body is not a chat completion
                    return Reply(None, None, attempt + 1, f"bad response: {self._scrub(str(exc))}")
                else:
                    return Reply(self._scrub(content) if content is not None else None, latency, attempt + 1, None)
            if attempt >= self.settings.retries:
                return Reply(None, None, attempt + 1, f"gave up after {attempt + 1} attempts: {failure}")
            await asyncio.sleep(self._backoff(attempt, retry_after))
            attempt += 1

    def _scrub(self, text: str) -> str:
        return redact(text, self._key)

    def _where(self) -> str:
        return self.settings.base_url or OPENAI_URL
