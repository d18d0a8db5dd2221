"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for the judge tests and benchmark.

It grades like a judge would (the candidate equals the reference, ignoring case and a final full stop,
-> correct) and can be told to misbehave: per candidate text, a script of actions for successive
attempts, then ``default``. Actions:

    ok            a structured JSON verdict {"explanation", "correct"} (or ratings in rater requests)
    429           HTTP 429 with ``Retry-After: <retry_after>``
    500 / 503     a server error
    401           authentication error whose message echoes the bearer token (as some servers do)
    drop          close the connection without answering
    hang          answer nothing for ``hang_s`` seconds, then close (a client timeout)
    prose         "The candidate is correct, this is true." (contains "true", is not JSON)
    prose_no      "The candidate misses the point." (not JSON, no "true")
    wrong_fields  {"verdict": "true", "reason": "..."}
    string_bool   {"explanation": "...", "correct": "true"}
    fenced        the JSON verdict inside a ```json fence
    bad_body      HTTP 200 whose body is not a chat completion

``structured=False`` makes it refuse ``response_format`` with HTTP 400, as many local servers do.
``predict=True`` answers like a served model instead of a judge (for hba-predict --endpoint): ``ok`` replies
``received <part types>`` (e.g. ``received text,video_url,input_audio``); the script markers are matched
against the text parts of the last message.
Run standalone for benchmarks: ``python tests/openai_server.py --latency 0.1`` prints its base URL.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CANDIDATE = re.compile(r"Candidate Answer: (.*?)\n\nReference Answer: (.*?)(?:\n\n|\Z)", re.DOTALL)
# The reference repository's GRADE_PROMPT quotes each text on its own line.
_REF_CANDIDATE = re.compile(r'Candidate Answer:\n"(.*?)"\nReference Answer:\n"(.*?)"\n', re.DOTALL)
_RATED = re.compile(r"Model Answer: (.*?)(?:\n\n|\Z)", re.DOTALL)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the benchmark opens many connections at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (a timeout, a stopped run) is part of the tests; anything else is a server bug.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _norm(text: str) -> str:
    return text.strip().lower().rstrip(".").strip()


class FakeOpenAI:
    """The server plus its knobs; ``with FakeOpenAI(...) as server: server.base_url``."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        structured: bool = True,
        retry_after: str = "0",
        script: dict[str, list[str]] | None = None,
        default: str = "ok",
        hang_s: float = 3.0,
        port: int = 0,
        predict: bool = False,
    ):
        self.predict = predict
        self.latency = latency
        self.structured = structured
        self.retry_after = retry_after
        self.script = dict(script or {})
        self.default = default
        self.hang_s = hang_s
        self.requests: list[dict[str, Any]] = []  # every request body received, in order
        self.auth: list[str] = []  # the Authorization header of each request
        self.actions: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests the server was handling at once
        self._attempts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _action(self, candidate: str) -> str:
        with self._lock:
            for marker, plan in self.script.items():
                if marker in candidate:
                    attempt = self._attempts[candidate]
                    self._attempts[candidate] += 1
                    action = plan[attempt] if attempt < len(plan) else self.default
                    break
            else:
                action = self.default
            self.actions[action] += 1
            return action

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms per reply.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _hang_up(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if len(raw) < length:  # the client hung up mid-request
                    self._hang_up()
                    return
                try:
                    body = json.loads(raw)
                    body["messages"][-1]["content"]
                except (ValueError, KeyError, IndexError, TypeError):
                    self._send(400, {"error": {"message": "expected a chat completion request"}})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server._lock:
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization", ""))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer(body)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, body: dict[str, Any]) -> None:
                if server.latency:
                    time.sleep(server.latency)
                if "response_format" in body and not server.structured:
                    self._send(
                        400,
                        {
                            "error": {
                                "message": "response_format is not supported by this server",
                                "type": "invalid_request_error",
                            }
                        },
                    )
                    return
                user = body["messages"][-1]["content"]
                if server.predict:
                    self._predict(body, user)
                    return
                match = _CANDIDATE.search(user) or _REF_CANDIDATE.search(user)
                rated = _RATED.search(user)
                candidate = match.group(1) if match else rated.group(1) if rated else ""
                action = server._action(candidate)
                if action == "ok" or action == "fenced":
                    if match:
                        correct = _norm(match.group(1)) == _norm(match.group(2))
                        verdict = {"explanation": "matches the reference" if correct else "differs", "correct": correct}
                        # fields in the order the request's schema lists them, as a structured-output server writes
                        order = body.get("response_format", {}).get("json_schema", {}).get("schema", {})
                        if list(order.get("properties", {})) == ["correct", "explanation"]:
                            verdict = {"correct": verdict["correct"], "explanation": verdict["explanation"]}
                    else:
                        n = len(candidate)
                        verdict = {"fluency": n % 5 + 1, "coherence": (n + 1) % 5 + 1, "relevance": (n + 2) % 5 + 1}
                    content = json.dumps(verdict)
                    if action == "fenced":
                        content = f"```json\n{content}\n```"
                    self._reply(content, body)
                elif action == "prose":
                    self._reply("The candidate is correct, this is true.", body)
                elif action == "prose_no":
                    self._reply("The candidate misses the point.", body)
                elif action == "wrong_fields":
                    self._reply(json.dumps({"verdict": "true", "reason": "close enough"}), body)
                elif action == "string_bool":
                    self._reply(json.dumps({"explanation": "ok", "correct": "true"}), body)
                elif action == "429":
                    self._send(
                        429,
                        {"error": {"message": "rate limited", "type": "rate_limit"}},
                        {"Retry-After": server.retry_after},
                    )
                elif action in ("500", "503"):
                    self._send(int(action), {"error": {"message": "server error"}})
                elif action == "401":
                    token = self.headers.get("Authorization", "")
                    self._send(401, {"error": {"message": f"Incorrect API key provided: {token}"}})
                elif action == "echo_key_tail":  # a 200 whose reply quotes the key without its "sk-" prefix
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ").removeprefix("sk-")
                    self._reply(json.dumps({"explanation": f"seen {token}", "correct": True}), body)
                elif action == "bad_body":
                    self._send(200, {"unexpected": True})
                elif action == "drop":
                    self._hang_up()
                elif action == "hang":
                    time.sleep(server.hang_s)
                    self._hang_up()
                else:
                    raise ValueError(f"unknown action {action!r}")

            def _predict(self, body: dict[str, Any], user: Any) -> None:
                parts = user if isinstance(user, list) else [{"type": "text", "text": user}]
                text = "\n".join(p.get("text", "") for p in parts if p.get("type") == "text")
                action = server._action(text)
                if action == "ok":
                    self._reply("received " + ",".join(p.get("type", "?") for p in parts), body)
                elif action == "429":
                    self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": server.retry_after})
                elif action in ("500", "503"):
                    self._send(int(action), {"error": {"message": "server error"}})
                elif action == "401":
                    token = self.headers.get("Authorization", "")
                    self._send(401, {"error": {"message": f"Incorrect API key provided: {token}"}})
                elif action == "drop":
                    self._hang_up()
                else:
                    raise ValueError(f"unknown action {action!r} in predict mode")

            def _reply(self, content: str, request: dict[str, Any]) -> None:
                self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": request.get("model", "m"),
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                    },
                )

        return Handler


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--predict", action="store_true", help="answer like a served model, not a judge")
    args = parser.parse_args(argv)
    server = FakeOpenAI(latency=args.latency, port=args.port, predict=args.predict)
    print(server.base_url, flush=True)
    try:
        server._httpd.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
