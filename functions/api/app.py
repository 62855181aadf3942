"""Goodman Live's public API. Routes only: the work is in chalicelib/."""
from chalice import BadRequestError, Chalice, NotFoundError

from chalicelib.index import BadRequest, FileIndex, public_view
from chalicelib.settings import Settings
from chalicelib.views import with_download_urls

API_VERSION = "0.1.0"
MAX_PAGE = 500

app = Chalice(app_name="goodman-live")
app.api.cors = True

_clients = {}


def _settings() -> Settings:
    if "settings" not in _clients:
        _clients["settings"] = Settings.from_env()
    return _clients["settings"]


def _index() -> FileIndex:
    if "index" not in _clients:
        _clients["index"] = FileIndex(_settings().client("dynamodb"), _settings().index_table)
    return _clients["index"]


def _s3():
    if "s3" not in _clients:
        _clients["s3"] = _settings().client("s3")
    return _clients["s3"]


def _query() -> dict:
    return app.current_request.query_params or {}


def _limit(params: dict) -> int:
    try:
        limit = int(params.get("limit", 100))
    except ValueError:
        raise BadRequestError("limit must be a whole number")
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequestError(f"limit must be between 1 and {MAX_PAGE}")
    return limit


@app.route("/api/health")
def health():
    return {"status": "ok", "api_version": API_VERSION}


@app.route("/api/nights")
def nights():
    return {"api_version": API_VERSION, "nights": _index().list_nights()}


@app.route("/api/files")
def files():
    """A night's files, a page at a time; with `since`, only what changed after that cursor."""
    params = _query()
    night = params.get("night")
    if not night:
        raise BadRequestError("the 'night' query parameter is required (see /api/nights)")
    settings = _settings()
    try:
        if "since" in params:
            items, cursor = _index().changes(night, params["since"], limit=_limit(params))
            return {"api_version": API_VERSION, "night": night, "cursor": cursor,
                    "files": [with_download_urls(f, _s3(), settings.url_expiry_seconds) for f in items]}
        items, token = _index().list_files(night, params.get("type"), _limit(params), params.get("next"))
    except BadRequest as exc:
        raise BadRequestError(str(exc))
    return {"api_version": API_VERSION, "night": night, "next": token,
            "files": [with_download_urls(f, _s3(), settings.url_expiry_seconds) for f in items]}


@app.route("/api/files/{file_id}")
def file_detail(file_id):
    item = _index().get_file(file_id)
    if item is None:
        raise NotFoundError(f"no file with id {file_id}")
    return with_download_urls(public_view(item), _s3(), _settings().url_expiry_seconds)
