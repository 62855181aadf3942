"""The API (through Chalice's own local gateway) and the built page, on one port.

Serving both from one origin is what CloudFront does in AWS; locally it keeps the
page free of CORS and of a second port to print. Where Chalice's local gateway and API
Gateway differ, it does what API Gateway does: a greedy `{proxy+}` route matches every
path below it that no other route matches; and it answers HEAD as HTTP requires, with
GET's headers and no body, for the API and the page alike.
"""
from __future__ import annotations

import importlib.util
import mimetypes
import os
import posixpath
import re
import sys
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import List, Optional
from urllib.parse import parse_qs, unquote, urlparse, urlsplit

from chalice.config import Config
from chalice.local import (ChaliceRequestHandler, LambdaEventConverter, LocalChalice, LocalGateway,
                           LocalGatewayAuthorizer, MatchResult, NotAuthorizedError, RouteMatcher)

API_DIR = Path(__file__).resolve().parents[2] / "functions" / "api"


def load_api_app():
    """Import functions/api/app.py the way Lambda does: with its folder as the root,
    and its vendor/ folder (golive_data) importable as `chalice local` makes it, at the
    end of sys.path (from the repository's root the same package is found first)."""
    if str(API_DIR) not in sys.path:
        sys.path.insert(0, str(API_DIR))
    if (API_DIR / "vendor").is_dir() and str(API_DIR / "vendor") not in sys.path:
        sys.path.append(str(API_DIR / "vendor"))
    spec = importlib.util.spec_from_file_location("goodman_live_api", API_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def per_thread(app):
    """The app with a `current_request` of each thread's own, as `chalice local` makes
    it. Lambda gives each process one request at a time; this server answers requests
    in threads, and with one shared `current_request` two requests at the same moment
    read each other's method, query, body and caller (a POST answered as a GET)."""
    if not isinstance(app, LocalChalice):
        app.__class__ = type("PerThreadChalice", (LocalChalice, app.__class__), {})
    return app


_GREEDY = re.compile(r"\{(\w+)\+\}")


class _RouteMatcher(RouteMatcher):
    """Chalice's local route matcher, taught API Gateway's greedy path variable: a
    route ending in `{name+}` matches any path below its prefix (one segment or more)
    that no other route matches, with the rest of the path as `name`."""

    def __init__(self, route_urls: List[str]):
        self._greedy = sorted((r for r in route_urls if _GREEDY.fullmatch(r.rsplit("/", 1)[-1])),
                              key=lambda r: r.count("/"), reverse=True)   # the deepest prefix first
        # API Gateway prefers a literal path segment to a variable one (/api/files/reduce
        # over /api/files/{file_id}); Chalice's matcher takes the first route that fits
        super().__init__(sorted((r for r in route_urls if r not in self._greedy), key=lambda r: r.count("{")))

    def match_route(self, url: str) -> MatchResult:
        try:
            return super().match_route(url)
        except ValueError:
            pass
        parsed = urlparse(url)
        parts = parsed.path.rstrip("/").split("/") if parsed.path != "/" else [""]
        for route in self._greedy:
            prefix, last = route.rsplit("/", 1)
            prefix_parts = prefix.split("/")
            if len(parts) <= len(prefix_parts):
                continue
            captured = {}
            for part, pattern in zip(parts, prefix_parts):
                if pattern.startswith("{") and pattern.endswith("}"):
                    captured[pattern[1:-1]] = part
                elif part != pattern:
                    break
            else:
                captured[_GREEDY.fullmatch(last).group(1)] = "/".join(parts[len(prefix_parts):])
                return MatchResult(route, captured, parse_qs(parsed.query, keep_blank_values=True))
        raise ValueError("No matching route found for: %s" % url)


class _Authorizer(LocalGatewayAuthorizer):
    """Chalice's local authorizer runner, answering as API Gateway does when a Lambda
    authorizer fails with the error "Unauthorized": 401 (Chalice's would answer 500)."""

    def authorize(self, raw_path, lambda_event, lambda_context):
        try:
            return super().authorize(raw_path, lambda_event, lambda_context)
        except Exception as exc:
            if str(exc) != "Unauthorized":
                raise
            raise NotAuthorizedError({"x-amzn-RequestId": lambda_context.aws_request_id,
                                      "x-amzn-ErrorType": "UnauthorizedException"}, b'{"message":"Unauthorized"}')


class _LocalGateway(LocalGateway):
    def __init__(self, app_object, config: Config):
        super().__init__(app_object, config)
        self.event_converter = LambdaEventConverter(_RouteMatcher(list(app_object.routes)),
                                                    app_object.api.binary_types)
        self._authorizer = _Authorizer(app_object)


class _Handler(ChaliceRequestHandler):
    static_root: Path = Path(".")
    # An answer is written as headers, then body: with Nagle's algorithm on, a client's
    # delayed ACK holds each answer on a kept-alive connection for ~40 ms.
    disable_nagle_algorithm = True

    def __init__(self, request, client_address, server, app_object, config: Config):
        # ChaliceRequestHandler.__init__, with the gateway that knows greedy routes
        self.local_gateway = _LocalGateway(app_object, config)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)

    def _send_http_response_with_body(self, code, headers, body) -> None:
        if self.command != "HEAD":
            super()._send_http_response_with_body(code, headers, body)
            return
        # GET's status and headers, Content-Length included, and no body: a body after a
        # HEAD answer would be read as the start of the next answer on the connection.
        self.send_response(code)
        self.send_header("Content-Length", str(len(body.encode("utf-8") if isinstance(body, str) else body)))
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        self._send_headers(headers)

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
        elif self.command in ("GET", "HEAD"):
            self._static()
        else:
            self._send_http_response_with_body(405, {"Content-Type": "text/plain", "Allow": "GET, HEAD"},
                                               b"the page is read-only")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _route


class LocalServer:
    def __init__(self, static_root: Path, host: str = "127.0.0.1", port: int = 0, app=None):
        handler = type("Handler", (_Handler,), {"static_root": Path(static_root)})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        if app is None:
            # The page beside the API is the one page that may read it from its origin
            # (the app reads ALLOWED_ORIGIN once, as it loads, through its Settings).
            os.environ["ALLOWED_ORIGIN"] = self.url
            app = load_api_app()
        self.httpd.RequestHandlerClass = partial(handler, app_object=per_thread(app), config=Config())
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
