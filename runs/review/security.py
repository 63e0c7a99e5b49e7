"""The review server's guards: access token, Host check, CSRF tokens and security headers.

- Bound to a loopback address the server answers only requests whose Host is a loopback name
  (a web page elsewhere cannot reach it through DNS rebinding). Bound anywhere else it needs a
  token: opening `/?token=T` once sets an HttpOnly cookie, scripts may send `Authorization:
  Bearer T`; anything else gets 401.
- Every form carries a CSRF token, an HMAC of the browser's session cookie under a secret made
  when the server starts; a POST without the right one, or from another Origin, gets 403.
- Every response forbids inline and foreign scripts (Content-Security-Policy), framing and
  MIME sniffing, and sends no Referer to other sites (a token in a URL must not leak).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_COOKIE = "cg_token"
SESSION_COOKIE = "cg_session"
ANNOTATOR_COOKIE = "cg_annotator"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` on the
    # app's own form posts, which the Origin check must refuse
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A random access token (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def csrf_token(secret: bytes, session: str) -> str:
    """The CSRF token of a browser session."""
    return hmac.new(secret, session.encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time string comparison that accepts any characters."""
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def csrf_ok(secret: bytes, session: str | None, given: str | None) -> bool:
    """True when `given` is the session's CSRF token."""
    if not session or not given:
        return False
    return same(csrf_token(secret, session), given)


def cookie_header(name: str, value: str, *, max_age: int | None = None) -> tuple[bytes, bytes]:
    """A Set-Cookie header: HttpOnly, SameSite=Lax (sent on top-level links, never on
    cross-site POSTs), Path=/."""
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return b"set-cookie", "; ".join(parts).encode()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:
        return {}
    return {k: m.value for k, m in jar.items()}


class GuardMiddleware:
    """Host check, token check, a session cookie for CSRF, and security headers (pure ASGI,
    so server-sent event streams pass through unbuffered)."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host", "")
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.loopback_only and hostname.lower() not in LOOPBACK_NAMES:
            await _plain(send, 400, f"Host {host!r} is not allowed: use http://127.0.0.1")
            return
        cookies = _cookies(headers)
        extra: list[tuple[bytes, bytes]] = []
        if self.token is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            bearer = headers.get("authorization", "")
            if "token" in query and same(query["token"], self.token):
                rest = urlencode({k: v for k, v in query.items() if k != "token"})
                location = scope["path"] + (f"?{rest}" if rest else "")
                await _redirect(send, location, [cookie_header(TOKEN_COOKIE, self.token)])
                return
            if not (
                same(cookies.get(TOKEN_COOKIE, ""), self.token)
                or same(bearer, f"Bearer {self.token}")
            ):
                await _plain(
                    send,
                    401,
                    "This review server needs its access token: open the address it printed "
                    "when it started (ending in ?token=...).",
                )
                return
        session = cookies.get(SESSION_COOKIE, "")
        if len(session) < 32:
            session = secrets.token_hex(16)
            extra.append(cookie_header(SESSION_COOKIE, session))
        scope.setdefault("state", {})["session"] = session

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS, *extra]
            await send(message)

        await self.app(scope, receive, send_wrapped)


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location.encode("latin-1")),
                (b"content-length", b"0"),
                *SECURITY_HEADERS,
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})
