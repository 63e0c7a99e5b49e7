"""Serving the review app with uvicorn: in the foreground (the CLI) or in a background thread
(tests, notebooks), with the binding rules of `security.py` decided in one place."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinicgym.runs.review.errors import ReviewDependencyError, ReviewError
from clinicgym.runs.review.security import is_loopback, new_token

try:
    import uvicorn
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ReviewDependencyError(
        "the review server needs uvicorn: run `pip install 'clinicgym[review]'`"
    ) from e


@dataclass
class ServeSettings:
    """Where and how to serve: a token is made up when bound beyond loopback without one."""

    host: str = "127.0.0.1"
    port: int = 8800
    token: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def resolved(self) -> ServeSettings:
        token = self.token
        if not is_loopback(self.host) and not token:
            token = new_token()
        if token is not None and len(token) < 16:
            raise ReviewError("--token must be at least 16 characters (or leave it out)")
        return ServeSettings(self.host, self.port, token, self.ssl_certfile, self.ssl_keyfile)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_certfile else "http"


def build_server(run_dirs: list[Path], db: Any, settings: ServeSettings) -> uvicorn.Server:
    """A uvicorn server for the review app (not started)."""
    from clinicgym.runs.review.app import create_app

    app = create_app(run_dirs, db, token=settings.token, loopback_only=is_loopback(settings.host))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=2,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
    )
    return uvicorn.Server(config)


def bound_port(server: uvicorn.Server) -> int:
    """The port a started server listens on (useful with port 0)."""
    for s in server.servers:
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    raise ReviewError("the review server is not listening")


class BackgroundServer:
    """The review server in a daemon thread: `with BackgroundServer(...) as url: ...`."""

    def __init__(self, run_dirs: list[Path], db: Any, settings: ServeSettings) -> None:
        self.settings = settings.resolved()
        self.server = build_server(run_dirs, db, self.settings)
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ReviewError(f"the review server did not start on {self.settings.host}")
            time.sleep(0.02)
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        self.url = f"{self.settings.scheme}://{host}:{bound_port(self.server)}"
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
