"""Goodman Live's public API. Routes only: the work is in chalicelib/ and in the data
layer it shares with the workers, golive_data/ (vendored: functions/api/vendor/).

Every route but /api/health, /api/auth/config and unknown paths needs a signed-in user:
the `signed_in` authorizer verifies the Cognito token (chalicelib/auth.py) the same way
locally and in AWS, and each route decides what that user may see or do
(golive_data/access.py, chalicelib/access.py).
"""
import json
import uuid

from chalice import (AuthResponse, BadRequestError, Chalice, ChaliceViewError, ConflictError, CORSConfig,
                     ForbiddenError, NotFoundError, Response, UnauthorizedError)

from chalicelib import access, auth, measure, pagetoken, products
from chalicelib.openapi import openapi
from chalicelib.query import FilesQuery, check_night
from chalicelib.spectrum import spectrum_data
from chalicelib.views import expires_at, night_downloads, night_objects, with_download_urls
from golive_data import archives, imexam, linefit, linefits, versions
from golive_data.access import AccessError, Directory, ROLE_OBSERVER, ROLE_PI, ROLES, check_username, proposal_id
from golive_data.index import BadRequest, FileIndex, iter_all_files, plausible_file_id, public_view
from golive_data.parameters import describe as describe_settings, validate as validate_settings
from golive_data.settings import Settings

API_VERSION = "0.2.0"
#: the key of a task message on the reduction queue (functions/services.py TASK_KEY)
REDUCE_TASK_KEY = "goodman_live_task"
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
app.api.cors = CORSConfig(allow_origin=_settings().allowed_origin,
                          allow_headers=["Authorization"]) if _settings().allowed_origin else False


def _client(name: str, **config):
    if name not in _clients:
        _clients[name] = _settings().client(name, **config)
    return _clients[name]


def _index() -> FileIndex:
    if "index" not in _clients:
        _clients["index"] = FileIndex(_client("dynamodb"), _settings().index_table)
    return _clients["index"]


def _directory() -> Directory:
    if "directory" not in _clients:
        _clients["directory"] = Directory(_client("dynamodb"), _settings().index_table)
    return _clients["directory"]


def _signer():
    """The S3 client that signs download URLs: SigV4, which S3 requires of new buckets
    (botocore's default in us-east-1 is still SigV2)."""
    if "signer" not in _clients:
        _clients["signer"] = _settings().client("s3", signature_version="s3v4")
    return _clients["signer"]


def _pool() -> auth.Pool:
    s = _settings()
    if not (s.user_pool_id and s.user_pool_client_id):
        raise RuntimeError("USER_POOL_ID and USER_POOL_CLIENT_ID must be set: the API serves signed-in users only")
    return auth.Pool(s.region, s.user_pool_id, s.user_pool_client_id, s.cognito_endpoint)


def _keys() -> auth.Keys:
    if "keys" not in _clients:
        _clients["keys"] = auth.Keys(_pool().jwks_url)
    return _clients["keys"]


# ---- who is asking ------------------------------------------------------------------
@app.authorizer(ttl_seconds=300)
def signed_in(auth_request):
    """A verified Cognito access or ID token (`Bearer <jwt>` or the bare token). API
    Gateway keeps the answer for the token up to 300 s, so it allows every route and
    carries the token's expiry: each route checks it again (chalicelib/access.py)."""
    try:
        claims = auth.verify(auth_request.token, _pool(), _keys())
    except auth.Unauthorized as exc:
        app.log.info("refused a token: %s", exc.reason)
        raise
    return AuthResponse(routes=["*"], principal_id=claims["username"],
                        context={"username": claims["username"], "exp": int(claims["exp"])})


def _caller() -> access.Caller:
    try:
        return access.Caller.of(app.current_request, _directory(), _settings())
    except auth.Unauthorized as exc:
        raise UnauthorizedError(exc.reason)


def _query() -> dict:
    return app.current_request.query_params or {}


def _dressed(items) -> list:
    return [with_download_urls(f, _signer(), _settings().url_expiry_seconds) for f in items]


def _urls_expire_at() -> str:
    """When the signed URLs of an answer stop working: the page fetches them again first."""
    return expires_at(_settings().url_expiry_seconds)


def _store() -> products.Store:
    if "store" not in _clients:
        _clients["store"] = products.Store(_client("s3"))
    return _clients["store"]


def _json_body() -> dict:
    try:
        body = json.loads(app.current_request.raw_body or b"{}")
    except (ValueError, RecursionError):
        raise BadRequestError("the body must be a JSON object")
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    return body


# ---- open to anyone ------------------------------------------------------------------
@app.route("/api/health", methods=READ)
def health():
    return {"status": "ok", "api_version": API_VERSION}


@app.route("/api/auth/config", methods=READ)
def auth_config():
    """What the page and scripts need to sign in: the user pool, its app client, the
    region and the Cognito endpoint to send InitiateAuth to (USER_PASSWORD_AUTH)."""
    pool = _pool()
    return {"api_version": API_VERSION, "region": pool.region, "user_pool_id": pool.user_pool_id,
            "client_id": pool.client_id, "cognito_endpoint": pool.endpoint, "issuer": pool.issuer,
            "auth_flow": "USER_PASSWORD_AUTH"}


# ---- signed in -----------------------------------------------------------------------
@app.route("/api/me", methods=READ, authorizer=signed_in)
def me():
    """Who the token belongs to: username, role, the proposals they are a member / PI of."""
    caller = _caller()
    return {"api_version": API_VERSION, **caller.principal.public(),
            "proprietary_days": _settings().proprietary_days}


@app.route("/api/nights", methods=READ, authorizer=signed_in)
def nights():
    """The nights with files, newest first, with how many files the caller may see."""
    caller = _caller()
    return {"api_version": API_VERSION, "nights": caller.nights(_index())}


@app.route("/api/files", methods=READ, authorizer=signed_in)
def files():
    """A night's files the caller may see, a page at a time; with `since`, only what
    changed after that cursor."""
    caller = _caller()
    try:
        query = FilesQuery.parse(_query())
        visible = caller.visible_in(query.night)
        if query.since is not None:
            items, cursor = _index().changes(query.night, query.since, limit=query.limit, obstype=query.obstype)
            return {"api_version": API_VERSION, "night": query.night, "cursor": cursor,
                    "urls_expire_at": _urls_expire_at(), "files": _dressed(visible(items))}
        key = _settings().page_token_key
        start = pagetoken.read(query.next, query.scope(), key)
        items, position = _index().list_files(query.night, query.obstype, query.limit, start)
    except BadRequest as exc:
        raise BadRequestError(str(exc))
    return {"api_version": API_VERSION, "night": query.night, "next": pagetoken.issue(position, query.scope(), key),
            "urls_expire_at": _urls_expire_at(), "files": _dressed(visible(items))}


def _visible_file(caller: access.Caller, file_id: str) -> dict:
    """The file as the caller may see it; 404, as if it did not exist, otherwise."""
    item = _index().get_file(file_id) if plausible_file_id(file_id) else None
    shown = caller.visible_in(item["night"])([public_view(item)]) if item else []
    if not shown:
        raise NotFoundError(f"no file with id {file_id}")
    return shown[0]


@app.route("/api/files/{file_id}", methods=READ, authorizer=signed_in)
def file_detail(file_id):
    """One file, its products (signed URLs) and every reduction version kept."""
    caller = _caller()
    item = with_download_urls(_visible_file(caller, file_id), _signer(), _settings().url_expiry_seconds)
    item["versions"] = [with_download_urls(v, _signer(), _settings().url_expiry_seconds)
                        for v in versions.list_versions(_client("dynamodb"), _settings().index_table, file_id)]
    item["urls_expire_at"] = _urls_expire_at()
    return item


# ---- measuring: the page's spectrum plot, line fits and imexam ------------------------------
def _products_of(item: dict, version) -> list:
    """The products of the version asked for (None: the one the file shows)."""
    if version is None:
        return item.get("products") or []
    found = versions.get_version(_client("dynamodb"), _settings().index_table, item["file_id"], version)
    if found:
        return found.get("products") or []
    if version == 0 and not item.get("settings_version"):
        return item.get("products") or []
    raise NotFoundError(f"{item['file_name']} has no version {version}")


def _measured(work):
    """Run `work`; a caller's mistake is a 400, a product not there (yet) a 409."""
    try:
        return work()
    except BadRequest as exc:
        raise BadRequestError(str(exc))
    except products.NoProduct as exc:
        raise ConflictError(str(exc))


def _spectrum(item: dict, target: int, version, fluxed: bool = False) -> dict:
    return spectrum_data(item, _products_of(item, version), _store(), target, version, fluxed)


@app.route("/api/files/{file_id}/spectrum", methods=READ, authorizer=signed_in)
def file_spectrum(file_id):
    """A target's spectrum as data (?target=1, ?version=n, ?units=flux): wavelength (or
    pixel), flux, variance, sky and mask, with the lamp spectrum and its identified
    lines; with units=flux, the flux-calibrated spectrum and its standard when there is one."""
    item = _visible_file(_caller(), file_id)
    query = _query()
    return _measured(lambda: _spectrum(item, measure.target_of(query), measure.version_of(query),
                                       measure.fluxed_of(query)))


@app.route("/api/files/{file_id}/linefit", methods=["GET", "HEAD", "POST"], authorizer=signed_in,
           content_types=["application/json"])
def file_linefit(file_id):
    """POST: fit a line in a window of a target's spectrum, with its variance (Gaussian
    or pseudo-Voigt on a linear continuum): centre, FWHM, flux, equivalent width and
    their errors, a redshift given the rest wavelength; the fit is kept. GET: the
    file's fits, newest first."""
    caller = _caller()
    item = _visible_file(caller, file_id)
    table = _settings().index_table
    if app.current_request.method != "POST":
        return {"api_version": API_VERSION, "file_id": file_id,
                "fits": list(reversed(linefits.list_fits(_client("dynamodb"), table, file_id)))}

    def fit():
        asked = measure.LineFitRequest.parse(_json_body())
        data = _spectrum(item, asked.target, asked.version)
        try:
            result = linefit.fit_spectrum(data["x"], data["flux"], data["variance"], asked.window, asked.model,
                                          asked.rest_wavelength)
        except linefit.LineFitError as exc:
            raise BadRequest(str(exc))
        request = {"target": asked.target, "version": asked.version, "window": list(asked.window),
                   "model": asked.model, "x_unit": data["x_unit"], "product": data["product"]}
        return linefits.record_fit(_client("dynamodb"), table, file_id, {**request, **result},
                                   caller.principal.username)

    return Response(status_code=201, body=_measured(fit))


@app.route("/api/files/{file_id}/linefit/{fit_id}", methods=["DELETE"], authorizer=signed_in)
def delete_linefit(file_id, fit_id):
    """Remove a line fit: its author's, or any for staff."""
    caller = _caller()
    _visible_file(caller, file_id)
    client, table = _client("dynamodb"), _settings().index_table
    found = linefits.get_fit(client, table, file_id, fit_id)
    if not found:
        raise NotFoundError(f"no line fit {fit_id} on this file")
    if found.get("by") != caller.principal.username and not caller.principal.staff:
        raise ForbiddenError(f"the fit is {found.get('by')}'s: only they and staff remove it")
    linefits.delete_fit(client, table, file_id, fit_id, found)
    return Response(status_code=204, body="")


@app.route("/api/files/{file_id}/imexam", methods=READ, authorizer=signed_in)
def file_imexam(file_id):
    """imexam on the reduced 2-D frame at (x, y), 0-based: the pixel, a row and a column
    cut, box statistics, and the nearest source's profile and FWHM (a star's radial
    profile, a spectrum's profile across its trace)."""
    item = _visible_file(_caller(), file_id)

    def examine():
        asked = measure.ExamineRequest.parse(_query())
        listed = _products_of(item, asked.version)
        reduced = products.named(listed, None, "reduced")
        if reduced is None:
            raise products.NoProduct(f"{item['file_name']} has no reduced 2-D frame"
                                     + (f" ({item['error']})" if item.get("error") else ""))
        image = _store().hdus(reduced)[0]
        ny, nx = image.shape[-2:]
        if asked.x >= nx or asked.y >= ny:
            raise BadRequest(f"({asked.x}, {asked.y}) is outside the frame ({nx} columns x {ny} rows)")
        result = imexam.examine(image, asked.x, asked.y, box=asked.box)
        preview = products.named(listed, None, "preview_reduced") or {}
        result["saturated"] = [asked.x, asked.y] in (preview.get("saturated") or [])
        return {"api_version": API_VERSION, "file_id": file_id, "product": reduced["file_name"], **result}

    return _measured(examine)


def _night_objects(caller: access.Caller, night: str, proposal) -> tuple:
    """(the proposal id or None, what of the night the caller may download: all of it, or one
    proposal's frames and the night's calibrations); 400 for a proposal with nothing there."""
    try:
        check_night(night)
        wanted = proposal_id(proposal) if proposal else None
    except (BadRequest, AccessError) as exc:
        raise BadRequestError(str(exc))
    seen = caller.visible_in(night)(public_view(i) for i in iter_all_files(_index(), night))
    objects = night_objects(seen, wanted)
    if wanted and not any(o["proposal"] == wanted for o in objects):
        raise BadRequestError(f"nothing of {wanted} on {night} that you may see")
    return wanted, objects


@app.route("/api/nights/{night}/downloads", methods=READ, authorizer=signed_in)
def night_download_list(night):
    """Every file of the night the caller may see (of one proposal: ?proposal=), raw and
    products, as signed URLs: JSON, or ?format=text, one URL per line, for `wget -i`."""
    caller = _caller()
    params = _query()
    fmt = params.get("format", "json")
    if fmt not in ("json", "text"):
        raise BadRequestError("format must be json or text")
    wanted, objects = _night_objects(caller, night, params.get("proposal"))
    listed = night_downloads(objects, _signer(), _settings().url_expiry_seconds)
    if fmt == "text":
        return Response(status_code=200, headers={"Content-Type": "text/plain; charset=utf-8"},
                        body="".join(f["url"] + "\n" for f in listed))
    return {"api_version": API_VERSION, "night": night, "proposal": wanted, "expires_at": _urls_expire_at(),
            "files": listed}


@app.route("/api/nights/{night}/archive", methods=["POST"], authorizer=signed_in, content_types=["application/json"])
def night_archive(night):
    """Ask for the night's files the caller may see (of one proposal: {"proposal": P}) as
    one zip: 202 with its archive_id; GET /api/archives/{archive_id} says when it is
    ready and gives its URL."""
    caller = _caller()
    body = _json_body()
    unknown = sorted(set(body) - {"proposal"})
    if unknown:
        raise BadRequestError(f"unknown field(s) {unknown}: the request is {{\"proposal\": null or a proposal}}")
    wanted, objects = _night_objects(caller, night, body.get("proposal"))
    if not objects:
        raise BadRequestError(f"nothing of {night}" + (f" for {wanted}" if wanted else "") + " to download")
    s = _settings()
    # a zip is slow work: on the reduction's low-priority queue, so no new frame waits behind it
    queue_url = s.background_queue_url or s.work_queue_url
    if not queue_url:
        raise ChaliceViewError("the work queue is not configured (BACKGROUND_QUEUE_URL or WORK_QUEUE_URL)")
    archive_id = uuid.uuid4().hex[:16]
    entries = [{k: o[k] for k in ("bucket", "key", "name", "size")} for o in objects]
    try:
        archive = archives.request_archive(_client("dynamodb"), s.index_table, archive_id, night, wanted,
                                           caller.principal.username, entries)
    except ValueError as exc:
        raise BadRequestError(str(exc))
    _client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(
        {REDUCE_TASK_KEY: {"task": "archive", "archive_id": archive_id}}))
    return Response(status_code=202, body={"api_version": API_VERSION, **archives.public(archive)})


@app.route("/api/archives/{archive_id}", methods=READ, authorizer=signed_in)
def archive_status(archive_id):
    """An archive the caller asked for: queued, building, done (with a signed `url`) or
    failed (with the reason)."""
    caller = _caller()
    found = archives.get_archive(_client("dynamodb"), _settings().index_table, archive_id) \
        if plausible_file_id(archive_id) else None
    if not found or (found.get("requested_by") != caller.principal.username and not caller.principal.staff):
        raise NotFoundError(f"no archive {archive_id}")
    shown = archives.public(found)
    if found.get("status") == archives.DONE:
        shown["url"] = _signer().generate_presigned_url(
            "get_object", Params={"Bucket": found["bucket"], "Key": found["key"]},
            ExpiresIn=_settings().url_expiry_seconds)
        shown["expires_at"] = _urls_expire_at()
    return {"api_version": API_VERSION, **shown}


@app.route("/api/settings", methods=READ, authorizer=signed_in)
def settings_declaration():
    """Every reduction setting a re-reduction or a proposal may set: name, type,
    default, valid values, help."""
    return {"api_version": API_VERSION, "settings": describe_settings()}


# The seed's name is /api/files/reduce/: API Gateway (and the local server) drop the
# trailing slash, and prefer this literal path to /api/files/{file_id}.
@app.route("/api/files/reduce", methods=["POST"], authorizer=signed_in, content_types=["application/json"])
def reduce_request():
    """Reduce a file again with other settings (merged over its proposal's): a new
    version, queued at once; older versions are kept, the newest is shown."""
    caller = _caller()
    body = _json_body()
    file_id, requested = body.get("file_id"), body.get("settings", {})
    unknown = sorted(set(body) - {"file_id", "settings"})
    if unknown:
        raise BadRequestError(f"unknown field(s) {unknown}: the request is {{\"file_id\": ..., \"settings\": {{...}}}}")
    if not isinstance(file_id, str) or not file_id:
        raise BadRequestError("file_id (a string, as GET /api/files lists it) is required")
    if not isinstance(requested, dict):
        raise BadRequestError("settings must be a JSON object of setting: value (see GET /api/settings)")
    item = _visible_file(caller, file_id)
    why_not = caller.why_not_reduce(item)
    if why_not:
        raise ForbiddenError(why_not)
    proposal = item.get("proposal")
    overrides = {**_directory().settings(proposal), **requested}
    problems = validate_settings(overrides)
    if problems:
        raise BadRequestError("; ".join(problems))
    s = _settings()
    if not s.work_queue_url:
        raise ChaliceViewError("the reduction queue is not configured (WORK_QUEUE_URL)")
    try:
        number = versions.request_version(_client("dynamodb"), s.index_table, file_id, overrides,
                                          caller.principal.username)
    except versions.NoSuchFile:
        raise NotFoundError(f"no file with id {file_id}")
    _client("sqs").send_message(QueueUrl=s.work_queue_url, MessageBody=json.dumps(
        {REDUCE_TASK_KEY: {"task": "rereduce", "file_id": file_id, "version": number}}))
    return Response(status_code=202, body=access.reduce_answer(API_VERSION, caller.principal.username, item, number,
                                                               overrides, requested))


# ---- proposals -------------------------------------------------------------------------
def _proposal(caller: access.Caller, proposal: str, manage: bool) -> str:
    """The proposal id, if the caller may see it (its members, staff) and, with `manage`,
    change it (its PIs, staff); 404 / 403 otherwise."""
    try:
        pid = proposal_id(proposal)
    except AccessError:
        raise NotFoundError(f"no proposal {proposal}")
    p = caller.principal
    if not (p.staff or pid in p.proposals) or _directory().get_proposal(pid) is None:
        raise NotFoundError(f"no proposal {proposal}")
    if manage and not p.may_manage(pid):
        raise ForbiddenError(f"only the PIs of {pid} and staff may do this")
    return pid


@app.route("/api/proposals/{proposal}/settings", methods=["GET", "HEAD", "PUT"], authorizer=signed_in,
           content_types=["application/json"])
def proposal_settings(proposal):
    """A proposal's reduction settings (over the deployment's): its PIs and staff read and
    replace them; every reduction of its frames uses them."""
    caller = _caller()
    pid = _proposal(caller, proposal, manage=True)
    if app.current_request.method == "PUT":
        body = _json_body()
        settings = body.get("settings", body)
        if not isinstance(settings, dict):
            raise BadRequestError("settings must be a JSON object of setting: value (see GET /api/settings)")
        problems = validate_settings(settings)
        if problems:
            raise BadRequestError("; ".join(problems))
        _directory().set_settings(pid, settings)
    return {"api_version": API_VERSION, "proposal": pid, "settings": _directory().settings(pid)}


@app.route("/api/proposals/{proposal}/members", methods=["GET", "HEAD", "POST", "DELETE"], authorizer=signed_in,
           content_types=["application/json"])
def proposal_members(proposal):
    """A proposal's members: its members read them; its PIs add and remove observers,
    staff anyone. POST {"username", "role"}; DELETE ?username= (or the same body)."""
    caller = _caller()
    method = app.current_request.method
    pid = _proposal(caller, proposal, manage=method in ("POST", "DELETE"))
    if method in ("POST", "DELETE"):
        body = _json_body() if method == "POST" or app.current_request.raw_body else {}
        username = body.get("username") or _query().get("username")
        role = body.get("role", ROLE_OBSERVER)
        if not isinstance(username, str) or not username:
            raise BadRequestError("username is required")
        try:
            check_username(username)
        except AccessError as exc:
            raise BadRequestError(str(exc))
        if role not in ROLES:
            raise BadRequestError(f"role must be one of {', '.join(ROLES)}")
        current = {m["username"]: m["role"] for m in _directory().members(pid)}
        touches_pi = role == ROLE_PI or current.get(username) == ROLE_PI
        if touches_pi and not caller.principal.staff:
            raise ForbiddenError("only staff add or remove a PI")
        if method == "POST":
            if _directory().get_user(username) is None:
                raise BadRequestError(f"no user {username}: an operator creates accounts (python -m infra.admin)")
            _directory().add_member(pid, username, role)
        elif not _directory().remove_member(pid, username):
            raise NotFoundError(f"{username} is not a member of {pid}")
    return {"api_version": API_VERSION, "proposal": pid, "members": _directory().members(pid)}


@app.route("/api/openapi.json", methods=READ, authorizer=signed_in)
def openapi_document():
    """The OpenAPI description of every route, with the schema of a file item."""
    return openapi(app, API_VERSION)


@app.route("/{proxy+}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def unknown_route():
    """Any path no route above names: a 404 with a JSON error. API Gateway sends such
    paths to its greedy `{proxy+}` resource (without one it answers 403 "Missing
    Authentication Token"); infra/local/server.py matches it the same way."""
    raise NotFoundError(f"no such route: /{app.current_request.uri_params['proxy']}")
