"""The API (through Chalice's own local gateway) and the built page, on one port.

Serving both from one origin is what CloudFront does in AWS; locally it keeps the
page free of CORS and of a second port to print.
"""
from __future__ import annotations

import importlib.util
import mimetypes
import posixpath
import sys
import threading
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

from chalice.config import Config
from chalice.local import ChaliceRequestHandler

API_DIR = Path(__file__).resolve().parents[2] / "functions" / "api"


def load_api_app():
    """Import functions/api/app.py the way Lambda does: with its folder as the root."""
    if str(API_DIR) not in sys.path:
        sys.path.insert(0, str(API_DIR))
    spec = importlib.util.spec_from_file_location("goodman_live_api", API_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


class _Handler(ChaliceRequestHandler):
    static_root: Path = Path(".")

    def log_message(self, format, *args):  # quiet: the demo prints what matters
        pass

    def _static(self) -> None:
        path = posixpath.normpath(unquote(urlsplit(self.path).path)).lstrip("/")
        target = (self.static_root / (path or "index.html")).resolve()
        if target.is_dir():
            target = target / "index.html"
        if self.static_root.resolve() not in target.parents or not target.is_file():
            self._send_http_response_with_body(404, {"Content-Type": "text/plain"}, b"not found")
            return
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send_http_response_with_body(200, {"Content-Type": ctype, "Cache-Control": "no-cache"},
                                           target.read_bytes())

    def _route(self) -> None:
        if urlsplit(self.path).path.startswith("/api/"):
            self._generic_handle()
        else:
            self._static()

    do_GET = do_HEAD = _route


class LocalServer:
    def __init__(self, static_root: Path, host: str = "127.0.0.1", port: int = 0, app=None):
        app = app or load_api_app()
        handler = type("Handler", (_Handler,), {"static_root": Path(static_root)})
        self.httpd = ThreadingHTTPServer((host, port), partial(handler, app_object=app, config=Config()))
        self.httpd.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LocalServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="local-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
