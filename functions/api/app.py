"""Goodman Live's public API. Routes only: the work is in chalicelib/ and in the data
layer it shares with the workers, golive_data/ (vendored: functions/api/vendor/)."""
from chalice import BadRequestError, Chalice, CORSConfig, NotFoundError

from chalicelib import pagetoken
from chalicelib.openapi import openapi
from chalicelib.query import FilesQuery
from chalicelib.views import with_download_urls
from golive_data.index import BadRequest, FileIndex, public_view
from golive_data.settings import Settings

API_VERSION = "0.1.0"
#: HEAD wherever GET: API Gateway routes only the methods a route declares
READ = ["GET", "HEAD"]

app = Chalice(app_name="goodman-live")

_clients = {}


def _settings() -> Settings:
    if "settings" not in _clients:
        _clients["settings"] = Settings.from_env()
    return _clients["settings"]


# Only the page's origin may read the API from another origin (ALLOWED_ORIGIN); unset,
# no CORS header is sent and only the API's own origin, where the page is served, may.
app.api.cors = CORSConfig(allow_origin=_settings().allowed_origin) if _settings().allowed_origin else False


def _index() -> FileIndex:
    if "index" not in _clients:
        _clients["index"] = FileIndex(_settings().client("dynamodb"), _settings().index_table)
    return _clients["index"]


def _signer():
    """The S3 client that signs download URLs: SigV4, which S3 requires of new buckets
    (botocore's default in us-east-1 is still SigV2)."""
    if "signer" not in _clients:
        _clients["signer"] = _settings().client("s3", signature_version="s3v4")
    return _clients["signer"]


def _query() -> dict:
    return app.current_request.query_params or {}


def _dressed(items) -> list:
    return [with_download_urls(f, _signer(), _settings().url_expiry_seconds) for f in items]


@app.route("/api/health", methods=READ)
def health():
    return {"status": "ok", "api_version": API_VERSION}


@app.route("/api/nights", methods=READ)
def nights():
    return {"api_version": API_VERSION, "nights": _index().list_nights()}


@app.route("/api/files", methods=READ)
def files():
    """A night's files, a page at a time; with `since`, only what changed after that cursor."""
    try:
        query = FilesQuery.parse(_query())
        if query.since is not None:
            items, cursor = _index().changes(query.night, query.since, limit=query.limit, obstype=query.obstype)
            return {"api_version": API_VERSION, "night": query.night, "cursor": cursor, "files": _dressed(items)}
        key = _settings().page_token_key
        start = pagetoken.read(query.next, query.scope(), key)
        items, position = _index().list_files(query.night, query.obstype, query.limit, start)
    except BadRequest as exc:
        raise BadRequestError(str(exc))
    return {"api_version": API_VERSION, "night": query.night, "next": pagetoken.issue(position, query.scope(), key),
            "files": _dressed(items)}


@app.route("/api/files/{file_id}", methods=READ)
def file_detail(file_id):
    item = _index().get_file(file_id)
    if item is None:
        raise NotFoundError(f"no file with id {file_id}")
    return with_download_urls(public_view(item), _signer(), _settings().url_expiry_seconds)


@app.route("/api/openapi.json", methods=READ)
def openapi_document():
    """The OpenAPI description of every route, with the schema of a file item."""
    return openapi(app, API_VERSION)


@app.route("/{proxy+}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def unknown_route():
    """Any path no route above names: a 404 with a JSON error. API Gateway sends such
    paths to its greedy `{proxy+}` resource (without one it answers 403 "Missing
    Authentication Token"); infra/local/server.py matches it the same way."""
    raise NotFoundError(f"no such route: /{app.current_request.uri_params['proxy']}")
