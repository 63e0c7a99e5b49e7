"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks (stdlib only).

`FakeOpenAIServer(script)` serves POST /v1/chat/completions (and, in their own JSON shapes,
Anthropic's POST /v1/messages and Gemini's POST .../models/M:generateContent) from a thread pool (HTTP/1.1
keep-alive, TCP_NODELAY). `script(body, n)` decides each answer from the request body and the
request's sequence number: a `Reply` (text or tool call), or a fault: `Status(429)`,
`Status(500)`, `Slow(seconds, reply)`, `Garbage()` (a 200 with a malformed JSON body) or
`Drop()` (the connection closes without an answer). It records every request body and the
busy time from the first request to the last answer, for throughput figures; `srv.images(n)`
gives the pictures request `n` carried (OpenAI image_url parts, Anthropic image blocks, Gemini
inlineData), decoded from base64, in the order sent.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str = ""
    tool: tuple[str, dict[str, Any]] | None = None
    delay: float = 0.0


@dataclass
class Status:
    code: int
    retry_after: float | None = None


@dataclass
class Slow:
    seconds: float
    reply: Reply = field(default_factory=Reply)


@dataclass
class Garbage:
    body: bytes = b'{"choices": [{"message": {"content": "trunc'


@dataclass
class Drop:
    pass


Answer = Reply | Status | Slow | Garbage | Drop
Script = Callable[[dict[str, Any], int], Answer]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()


class FakeOpenAIServer:
    """Start with `with FakeOpenAIServer(script) as srv:`; `srv.url` is the base URL (/v1)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.answers: list[str] = []
        self.auth: list[str | None] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.first: float | None = None
        self.last: float | None = None
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                with outer._lock:
                    stats = {
                        "requests": len(outer.requests),
                        "busy_s": outer.busy_s,
                        "first": outer.first,  # perf_counter: CLOCK_MONOTONIC, machine-wide
                        "last": outer.last,
                    }
                self._send(200, json.dumps(stats).encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                now = time.perf_counter()
                with outer._lock:
                    n = len(outer.requests)
                    body = json.loads(raw) if _shape(self.path) else {}
                    outer.requests.append(body)
                    outer.auth.append(self.headers.get("Authorization"))
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    outer.paths.append(self.path)
                    outer.first = now if outer.first is None else outer.first
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    if not _shape(self.path):
                        self._send(404, b'{"error": "not found"}')
                    else:
                        self._answer(outer.script(body, n), body)
                finally:
                    with outer._lock:
                        outer.in_flight -= 1
                        outer.last = time.perf_counter()

            def _answer(self, answer: Answer, body: dict[str, Any]) -> None:
                outer.answers.append(type(answer).__name__)
                if isinstance(answer, Slow):
                    time.sleep(answer.seconds)
                    answer = answer.reply
                if isinstance(answer, Status):
                    headers = {}
                    if answer.retry_after is not None:
                        headers["Retry-After"] = str(answer.retry_after)
                    self._send(answer.code, b'{"error": {"message": "injected"}}', headers)
                elif isinstance(answer, Garbage):
                    self._send(200, answer.body)
                elif isinstance(answer, Drop):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                else:
                    if answer.delay:
                        time.sleep(answer.delay)
                    shaped = SHAPES[_shape(self.path)](body, answer)
                    self._send(200, json.dumps(shaped).encode())

            def _send(self, code: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (a time-out test)

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def images(self, n: int = -1) -> list[tuple[str, bytes]]:
        """(media type, bytes) of every image in request `n` (default: the last)."""
        return images_in(self.requests[n])

    @property
    def busy_s(self) -> float:
        """Seconds from the first request received to the last answer sent."""
        return (self.last or 0.0) - (self.first or 0.0)


def images_in(body: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(media type, bytes) of every base64 image a request body holds, in any API's shape."""
    found: list[tuple[str, bytes]] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, dict):
            url = (
                (node.get("image_url") or {}).get("url", "")
                if node.get("type") == "image_url"
                else ""
            )
            source = node.get("source") if node.get("type") == "image" else None
            inline = node.get("inlineData")
            if url.startswith("data:"):
                media, _, data = url[5:].partition(";base64,")
                found.append((media, base64.b64decode(data)))
            elif isinstance(source, dict) and source.get("type") == "base64":
                found.append((source["media_type"], base64.b64decode(source["data"])))
            elif isinstance(inline, dict):
                found.append((inline["mimeType"], base64.b64decode(inline["data"])))
            else:
                for v in node.values():
                    walk(v)

    walk(body)
    return found


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user (or tool) message of an OpenAI-style request."""
    for m in reversed(body.get("messages", [])):
        if m.get("role") in ("user", "tool"):
            content = m.get("content")
            if isinstance(content, list):
                return " ".join(
                    str(p.get("text") or "") for p in content if p.get("type") == "text"
                )
            return str(content or "")
    return ""


def completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """A chat-completion body as OpenAI's API returns it; tokens counted as words."""
    prompt_words = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool is not None:
        name, args = reply.tool
        message["tool_calls"] = [
            {
                "id": f"call_{name}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
        ]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),  # required by the openai SDK's ChatCompletion model
        "model": body.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.tool else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_words,
            "completion_tokens": max(len(reply.text.split()), 1),
            "total_tokens": prompt_words + max(len(reply.text.split()), 1),
        },
    }


def anthropic_message(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """A Messages API answer as Anthropic's API returns it; tokens counted as words."""
    words = sum(len(json.dumps(m.get("content")).split()) for m in body.get("messages", []))
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    if reply.tool is not None:
        name, args = reply.tool
        content.append({"type": "tool_use", "id": f"toolu_{name}", "name": name, "input": args})
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": content,
        "stop_reason": "tool_use" if reply.tool else "end_turn",
        "usage": {"input_tokens": words, "output_tokens": max(len(reply.text.split()), 1)},
    }


def gemini_content(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """A generateContent answer as the Gemini API returns it; tokens counted as words."""
    words = sum(len(json.dumps(c.get("parts")).split()) for c in body.get("contents", []))
    parts: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
    if reply.tool is not None:
        name, args = reply.tool
        parts.append({"functionCall": {"name": name, "args": args}})
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": words,
            "candidatesTokenCount": max(len(reply.text.split()), 1),
        },
        "modelVersion": "gemini-test",
    }


SHAPES = {"openai": completion, "anthropic": anthropic_message, "gemini": gemini_content}
"""Answer shape by API: the request path decides which (`_shape`)."""


def _shape(path: str) -> str:
    """Which API a request path is for ('' for none this server answers)."""
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/v1/messages"):
        return "anthropic"
    if path.endswith(":generateContent"):
        return "gemini"
    return ""


QUESTIONS = (
    "Do you have a fever?",
    "Any cough?",
    "Any chest pain?",
    "How long has this been going on?",
    "Do you take any medicines?",
    "Any allergies?",
    "EXAMINE: respiratory",
)


def opening(messages: list[dict[str, Any]]) -> int:
    """Index of the env's opening message (after the prompt's example exchanges, if any)."""
    for i, m in enumerate(messages):
        text = str(m.get("content") or "")
        if (
            m.get("role") == "user"
            and text.startswith("New consultation (")
            and "(example)" not in text
        ):
            return i
    return 1


def clinician_turn(messages: list[dict[str, Any]]) -> int:
    """How many turns the clinician has taken in this conversation."""
    return sum(m.get("role") == "assistant" for m in messages[opening(messages) :])


def clinician_script(turns: int, latency: float) -> Script:
    """A fixed-latency 'model' that asks `turns - 1` questions, then diagnoses."""

    def script(body: dict[str, Any], n: int) -> Answer:
        turn = clinician_turn(body.get("messages", []))
        if turn + 1 >= turns:
            return Reply("DIAGNOSIS: Community-acquired pneumonia (60%)", delay=latency)
        return Reply(QUESTIONS[turn % len(QUESTIONS)], delay=latency)

    return script


FINDING_WORDS = (
    ("pneumothora", "Primary spontaneous pneumothorax"),
    ("mediastin", "Aortic dissection"),
    ("cardiomegaly", "Acute heart failure"),
    ("hilar lymph", "Sarcoidosis"),
    ("hyperinflat", "COPD exacerbation"),
    ("consolidation", "Community-acquired pneumonia"),
    ("subarachnoid", "Subarachnoid haemorrhage"),
    ("cisterns", "Subarachnoid haemorrhage"),
    ("infarct", "Ischaemic stroke"),
    ("grey-white", "Ischaemic stroke"),
)
"""Words of an imaging result -> the diagnosis `finding_reader` gives, first match wins."""


def finding_reader(guess: str = "Community-acquired pneumonia") -> Script:
    """A 'model' that reads words but not pictures: it diagnoses from the finding words of the
    last message it was sent (a report or a table), and when that message has only a picture,
    it guesses `guess` with low confidence. For the modality probe: a real model over HTTP
    whose decisions do depend on how a finding is shown."""

    def script(body: dict[str, Any], n: int) -> Answer:
        text = last_user_text(body).lower()
        for word, diagnosis in FINDING_WORDS:
            if word in text:
                return Reply(f"DIAGNOSIS: {diagnosis} (70%)")
        if images_in((body.get("messages") or [{}])[-1]):
            return Reply(f"DIAGNOSIS: {guess} (30%)")
        return Reply("Do you have a fever?")

    return script


def main() -> None:
    """Serve `clinician_script` until stdin closes; print the base URL first (for benchmarks)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--turns", type=int, default=5)
    args = ap.parse_args()
    with FakeOpenAIServer(clinician_script(args.turns, args.latency)) as srv:
        print(srv.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
