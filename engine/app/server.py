"""HTTP server of the Loupe App: the standard library's ThreadingHTTPServer, no other runtime.

Routes: ``/`` (the page, with the per-launch write token), ``/static/<file>`` (package data, a fixed
list), ``/api/<name>`` (JSON, :mod:`engine.app.api`), ``/img/<dataset>/<reference_id>`` and
``/thumb/...`` (images looked up by item id, never by a client path).

Security: binds 127.0.0.1 unless told otherwise; refuses requests whose ``Host`` is not the bound
address (DNS rebinding); POST needs the token in the ``X-Loupe-Token`` header and a JSON body (no
cookie, no CORS headers, so a cross-site page can neither read the token nor send a valid write).
"""
from __future__ import annotations

import hmac
import html
import json
import secrets
import sys
import threading
import time
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .api import ApiError, AppAPI
from .thumbs import IMAGE_TYPES, cache_dir_for, make_thumb, safe_image_path, thumb_path

STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
          "charts.js": "text/javascript; charset=utf-8"}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_BODY = 8 * 1024 * 1024
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
}


def _static(name: str) -> bytes:
    return resources.files("engine.app").joinpath("static", name).read_bytes()


class App:
    """A running (or ready) App over one workspace. ``start()`` serves in a background thread."""

    def __init__(self, ws: Any, host: str = "127.0.0.1", port: int = 5151, read_only: bool = False,
                 cache_dir: str | Path | None = None):
        self.ws = ws
        self.api = AppAPI(ws, read_only=read_only or bool(getattr(ws.store, "read_only", False)))
        self.token = secrets.token_urlsafe(24)
        self.cache_dir = Path(cache_dir) if cache_dir else cache_dir_for(ws.path)
        self.host = host
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None
        self._ds_ids: dict[str, int] = {}

    @property
    def url(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.port}/"

    def start(self) -> "App":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="loupe-app", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and free the port (the workspace stays open)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __repr__(self) -> str:
        return f"App({self.url!r})"

    def __str__(self) -> str:  # print(engine.launch_app(...)) shows the URL
        return self.url

    def _repr_html_(self) -> str:  # a link in notebooks
        u = html.escape(self.url)
        return f'<a href="{u}" target="_blank">Loupe App at {u}</a>'

    # -- pages and images -------------------------------------------------------------------------
    def index_html(self) -> bytes:
        page = _static("index.html").decode("utf-8")
        return page.replace("{{TOKEN}}", html.escape(self.token)).encode("utf-8")

    def dataset_id(self, name: str) -> int:
        if name not in self._ds_ids:
            with self.api.lock:
                self._ds_ids[name] = self.ws.get_dataset(name).id
        return self._ds_ids[name]

    def image_location(self, dataset: str, ref: str) -> str | None:
        with self.api.lock, self.ws.store.hold():
            ds_id = self.dataset_id(dataset)
            row = self.ws.store.con.execute(
                "SELECT image_location FROM items WHERE dataset_id = ? AND reference_id = ?", [ds_id, ref]).fetchone()
        return row[0] if row else None


def launch_app(ws_or_path: Any, host: str = "127.0.0.1", port: int = 0, read_only: bool = False,
               open_browser: bool = False, cache_dir: str | Path | None = None) -> App:
    """Serve the App over a workspace (or a workspace file) in a background thread; returns the App.

    ``app.url`` is the address (``port=0`` picks a free one); ``app.stop()`` ends it. Non-blocking,
    so it works from a notebook. Example: ``app = engine.launch_app("loupe.duckdb"); print(app.url)``.
    """
    import engine

    ws = engine.connect(ws_or_path, read_only=read_only) if isinstance(ws_or_path, (str, Path)) else ws_or_path
    app = App(ws, host=host, port=port, read_only=read_only, cache_dir=cache_dir).start()
    if open_browser:
        webbrowser.open(app.url)
    return app


def _handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "LoupeApp"
        sys_version = ""
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed-ACK stall)

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet; errors still reach stderr
            pass

        # -- responses ------------------------------------------------------------------------
        def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in _SECURITY_HEADERS.items():
                self.send_header(k, v)
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, obj: Any, timing: float | None = None) -> None:
            extra = {"Cache-Control": "no-store"}
            if timing is not None:
                extra["Server-Timing"] = f"app;dur={timing * 1000:.2f}"
            self._send(status, json.dumps(obj, default=str).encode("utf-8"), "application/json", extra)

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"error": message})

        def _host_ok(self) -> bool:
            host = (self.headers.get("Host") or "").strip().lower()
            if host.startswith("["):
                name = host[1:host.find("]")] if "]" in host else host
            else:
                name = host.rsplit(":", 1)[0] if ":" in host else host
            return name in LOOPBACK or name == app.host.lower() or app.host in ("0.0.0.0", "::")

        # -- routing ------------------------------------------------------------------------------
        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            if not self._host_ok():
                return self._error(421, "unexpected Host header")
            parts = urlsplit(self.path)
            path = parts.path
            try:
                if path in ("/", "/index.html"):
                    return self._send(200, app.index_html(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})
                if path.startswith("/static/"):
                    name = path[len("/static/"):]
                    if name not in STATIC:  # a fixed list: no path is ever joined from the URL
                        return self._error(404, "not found")
                    return self._send(200, _static(name), STATIC[name], {"Cache-Control": "no-cache"})
                if path.startswith("/api/"):
                    params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                    return self._api(path[len("/api/"):], params, write=False)
                if path.startswith("/img/") or path.startswith("/thumb/"):
                    return self._image(path)
                if path == "/favicon.ico":
                    return self._send(204, b"", "image/x-icon")
                return self._error(404, "not found")
            except BrokenPipeError:
                pass

        def do_POST(self) -> None:
            if not self._host_ok():
                return self._error(421, "unexpected Host header")
            path = urlsplit(self.path).path
            if not path.startswith("/api/"):
                return self._error(404, "not found")
            sent = self.headers.get("X-Loupe-Token") or ""
            if not hmac.compare_digest(sent.encode(), app.token.encode()):
                return self._error(403, "missing or wrong X-Loupe-Token: writes need the token of this launch")
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                return self._error(415, "POST bodies must be application/json")
            try:
                n = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return self._error(400, "bad Content-Length")
            if n > MAX_BODY:
                return self._error(413, "request body too large")
            try:
                body = json.loads(self.rfile.read(n) or b"{}")
            except (ValueError, UnicodeDecodeError):
                return self._error(400, "the body is not valid JSON")
            if not isinstance(body, dict):
                return self._error(400, "the body must be a JSON object")
            name = path[len("/api/"):]
            if name not in AppAPI.WRITES:
                return self._error(405, f"'{name}' is not a write endpoint (use GET)")
            self._api(name, body, write=True)

        def _api(self, name: str, params: dict, write: bool) -> None:
            if not write and name in AppAPI.WRITES:
                return self._error(405, f"'{name}' changes data: use POST with the token")
            t0 = time.perf_counter()
            try:
                out = app.api.handle(name, params)
            except ApiError as e:
                return self._json(e.status, e.body)
            except Exception as e:  # noqa: BLE001 - a server answers, it does not die
                print(f"loupe app: internal error on /api/{name}: {type(e).__name__}: {e}", file=sys.stderr)
                return self._json(500, {"error": f"internal error: {type(e).__name__}: {e}"})
            self._json(200, out, time.perf_counter() - t0)

        def _image(self, path: str) -> None:
            # /img/<dataset>/<reference_id> ; segments are URL-decoded once and used as ids only
            kind, _, rest = path[1:].partition("/")
            dataset, sep, ref = rest.partition("/")
            if not sep or not dataset or not ref:
                return self._error(404, "not found")
            dataset, ref = unquote(dataset), unquote(ref)
            try:
                ds_id = app.dataset_id(dataset)
            except Exception:  # noqa: BLE001 - unknown dataset
                return self._error(404, "no such dataset")
            if kind == "thumb":
                tp = thumb_path(app.cache_dir, ds_id, ref)
                try:
                    data = tp.read_bytes()  # cached: no database access
                    return self._send(200, data, "image/jpeg", {"Cache-Control": "private, max-age=3600"})
                except FileNotFoundError:
                    pass
            src = safe_image_path(app.image_location(dataset, ref))
            if src is None:
                return self._error(404, "no servable image for this item")
            if kind == "thumb":
                try:
                    data = make_thumb(src, thumb_path(app.cache_dir, ds_id, ref))
                except Exception as e:  # noqa: BLE001 - unreadable image
                    return self._error(404, f"unreadable image: {type(e).__name__}")
                return self._send(200, data, "image/jpeg", {"Cache-Control": "private, max-age=3600"})
            return self._send(200, src.read_bytes(), IMAGE_TYPES[src.suffix.lower()],
                              {"Cache-Control": "private, max-age=3600"})

    return Handler
