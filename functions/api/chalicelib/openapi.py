"""The API's OpenAPI 3.1 description, generated from the app's own routes (their paths,
methods, docstrings and authorizers) and the declaration of the file item
(golive_data/item.py), so it cannot drift from either; what a route takes and answers
beyond that is in the small tables below. Served at GET /api/openapi.json.
"""
from __future__ import annotations

import copy
import inspect
import re
from typing import Any, Dict, List, Tuple

from golive_data.access import ROLE_OBSERVER, ROLES
from golive_data.item import FILE_TYPES, json_schema

from .query import DEFAULT_PAGE, MAX_PAGE

_FILE = {"$ref": "#/components/schemas/File"}
#: Chalice's errors ({Code, Message}); API Gateway's own refusals ({message})
_ERROR = {"type": "object", "properties": {"Code": {"type": "string"}, "Message": {"type": "string"},
                                           "message": {"type": "string"}}}
_STRING = {"type": "string"}
_SETTINGS = {"type": "object", "description": "setting: value, as GET /api/settings declares them"}
#: the security scheme of every route with an authorizer
BEARER = "cognito"

#: What each route answers when it succeeds (200 unless _SUCCESS says otherwise).
_ANSWERS: Dict[str, Dict[str, Any]] = {
    "/api/files": {"type": "object", "required": ["api_version", "night", "files"], "properties": {
        "api_version": _STRING, "night": _STRING,
        "next": {"type": ["string", "null"], "description": "page token of the next page (a listing)"},
        "cursor": {"type": "string", "description": "the cursor to ask `since` next (with `since`)"},
        "urls_expire_at": {"type": "string", "description": "when the products' signed URLs stop working (UTC): "
                                                            "list again before then"},
        "files": {"type": "array", "items": _FILE}}},
    "/api/files/{file_id}": _FILE,
    "/api/nights": {"type": "object", "required": ["nights"], "properties": {
        "api_version": _STRING,
        "nights": {"type": "array", "items": {"type": "object", "required": ["night", "files"], "properties": {
            "night": _STRING, "files": {"type": "integer", "description": "files the caller may see"},
            "updated_at": _STRING}}}}},
    "/api/openapi.json": {"type": "object", "description": "this document"},
    "/api/health": {"type": "object", "properties": {"status": _STRING, "api_version": _STRING}},
    "/api/auth/config": {"type": "object", "required": ["user_pool_id", "client_id", "region", "issuer"],
                         "properties": {name: _STRING for name in (
                             "api_version", "region", "user_pool_id", "client_id", "cognito_endpoint", "issuer",
                             "auth_flow")}},
    "/api/me": {"type": "object", "required": ["username", "staff", "proposals", "pi_of", "role"], "properties": {
        "api_version": _STRING, "username": _STRING, "staff": {"type": "boolean"},
        "proposals": {"type": "array", "items": _STRING, "description": "member of (observer or PI)"},
        "pi_of": {"type": "array", "items": _STRING},
        "role": {"type": "string", "enum": ["staff", "pi", "observer", "user"]},
        "proprietary_days": {"type": "integer"}}},
    "/api/settings": {"type": "object", "required": ["settings"], "properties": {
        "api_version": _STRING,
        "settings": {"type": "array", "items": {"type": "object", "required": ["name", "type", "default", "help"],
                                                "properties": {"name": _STRING, "type": _STRING, "default": {},
                                                               "choices": {"type": ["array", "null"]},
                                                               "min": {"type": ["number", "null"]},
                                                               "max": {"type": ["number", "null"]},
                                                               "nullable": {"type": "boolean"}, "group": _STRING,
                                                               "help": _STRING}}}}},
    "/api/files/reduce": {"type": "object", "required": ["file_id", "status", "version"], "properties": {
        "api_version": _STRING, "username": _STRING, "file_id": _STRING, "error": _STRING,
        "status": {"type": "string", "enum": ["queued"]}, "version": {"type": "integer", "minimum": 1},
        "reduced_file_id": _STRING,
        "api_response": {"type": "object", "description": "what will be reduced, with what, and where the new "
                                                          "version will be written"}}},
    "/api/proposals/{proposal}/settings": {"type": "object", "required": ["proposal", "settings"], "properties": {
        "api_version": _STRING, "proposal": _STRING, "settings": _SETTINGS}},
    "/api/proposals/{proposal}/members": {"type": "object", "required": ["proposal", "members"], "properties": {
        "api_version": _STRING, "proposal": _STRING,
        "members": {"type": "array", "items": {"type": "object", "required": ["username", "role"], "properties": {
            "username": _STRING, "role": {"type": "string", "enum": list(ROLES)}}}}}},
}
_NUMBER = {"type": ["number", "null"]}
_NUMBERS = {"type": "array", "items": _NUMBER}
_SPECTRUM = {"type": "object", "required": ["file_id", "target", "calibrated", "x", "flux"], "properties": {
    "file_id": _STRING, "file_name": _STRING, "object": {"type": ["string", "null"]}, "target": {"type": "integer"},
    "version": {"type": ["integer", "null"]}, "product": _STRING, "calibrated": {"type": "boolean"},
    "x_unit": {"type": "string", "enum": ["Angstrom", "pixel"]}, "flux_unit": _STRING,
    "x": _NUMBERS, "flux": _NUMBERS, "variance": {"type": ["array", "null"]}, "sky": {"type": ["array", "null"]},
    "mask": {"type": ["array", "null"]},
    "lamp": {"type": ["object", "null"], "description": "the lamp extracted along the target: file_name, x, flux, "
                                                        "lines [{x, label}] identified"},
    "wavelength": {"type": ["object", "null"], "description": "the wavelength solution's summary"},
    "fluxed": {"type": "boolean", "description": "whether flux is the flux-calibrated product's (erg/s/cm^2/A)"},
    "flux_calibration": {"type": ["object", "null"], "description": "the frame's flux calibration: status, the "
                                                                    "standard (standard, file_name, night, airmass), "
                                                                    "notes, or reason and fix"}}}
_FIT = {"type": "object", "required": ["fit_id", "centre", "fwhm", "kind"], "properties": {
    "fit_id": _STRING, "file_id": _STRING, "by": _STRING, "at": _STRING, "target": {"type": "integer"},
    "version": {"type": ["integer", "null"]}, "window": _NUMBERS,
    "model": {"type": "string", "enum": ["gaussian", "voigt"]}, "kind": {"type": "string",
                                                                        "enum": ["absorption", "emission"]},
    **{name: _NUMBER for name in ("centre", "centre_error", "fwhm", "fwhm_error", "amplitude", "amplitude_error",
                                  "flux", "flux_error", "equivalent_width", "equivalent_width_error", "continuum",
                                  "continuum_error", "slope", "chi2_reduced", "rest_wavelength", "redshift",
                                  "redshift_error", "velocity", "velocity_error")},
    "curve": {"type": "object", "description": "the fitted model over the window: x, y"}}}
_CUT = {"type": "object", "properties": {"values": _NUMBERS}}
#: What a route answers when it succeeds, where its methods answer differently.
_METHOD_ANSWERS: Dict[Tuple[str, str], Dict[str, Any]] = {
    ("GET", "/api/files/{file_id}/linefit"): {"type": "object", "required": ["fits"], "properties": {
        "api_version": _STRING, "file_id": _STRING, "fits": {"type": "array", "items": _FIT}}},
    ("POST", "/api/files/{file_id}/linefit"): _FIT,
}
_ANSWERS.update({
    "/api/files/{file_id}/spectrum": _SPECTRUM,
    "/api/files/{file_id}/imexam": {"type": "object", "required": ["x", "y", "value", "box"], "properties": {
        "x": {"type": "integer"}, "y": {"type": "integer"}, "value": _NUMBER, "shape": {"type": "array"},
        "row_cut": _CUT, "column_cut": _CUT, "box": {"type": "object"},
        "source": {"type": ["object", "null"], "description": "the nearest source: kind (point or trace), x, y, "
                                                              "peak, background, fwhm, fwhm_error, profile, model"},
        "saturated": {"type": "boolean"}, "product": _STRING}},
    "/api/nights/{night}/downloads": {"type": "object", "required": ["night", "files", "expires_at"], "properties": {
        "api_version": _STRING, "night": _STRING, "proposal": {"type": ["string", "null"]}, "expires_at": _STRING,
        "files": {"type": "array", "items": {"type": "object", "required": ["file_id", "kind", "url"]}}}},
})
_ARCHIVE = {"type": "object", "required": ["archive_id", "status", "night"], "properties": {
    "api_version": _STRING, "archive_id": _STRING, "night": _STRING, "proposal": {"type": ["string", "null"]},
    "status": {"type": "string", "enum": ["queued", "building", "done", "failed"]},
    "count": {"type": "integer"}, "bytes": {"type": "integer"}, "requested_by": _STRING, "requested_at": _STRING,
    "url": {"type": "string", "description": "when done: the zip, signed"}, "expires_at": _STRING,
    "error": {"type": ["string", "null"]}, "missing": {"type": ["array", "null"]}}}
_ANSWERS.update({"/api/nights/{night}/archive": _ARCHIVE, "/api/archives/{archive_id}": _ARCHIVE})
#: Routes that may answer plain text too (?format=text).
_TEXT = {"/api/nights/{night}/downloads": "one signed URL per line (?format=text), for wget -i"}
#: Routes whose success is not 200.
_SUCCESS = {("POST", "/api/files/reduce"): "202", ("POST", "/api/files/{file_id}/linefit"): "201",
            ("DELETE", "/api/files/{file_id}/linefit/{fit_id}"): "204", ("POST", "/api/nights/{night}/archive"): "202"}

#: The errors a route answers besides 401 (every route with an authorizer) and 404 (every
#: path with a variable), by (method, path); HEAD answers as GET.
_ERRORS: Dict[Tuple[str, str], Dict[str, str]] = {
    ("GET", "/api/files"): {"400": "a bad query: the reason in Message"},
    ("POST", "/api/files/reduce"): {
        "400": "a bad body or settings: the reason in Message",
        "403": "a file the caller may see but not have reduced: not a lamp nor a science frame, a calibration "
               "(staff only), another proposal's frame",
        "404": "no such file, or one the caller may not see"},
    ("GET", "/api/proposals/{proposal}/settings"): {"403": "a member who is not its PI"},
    ("PUT", "/api/proposals/{proposal}/settings"): {"400": "a body that is not a JSON object, or bad settings",
                                                    "403": "a member who is not its PI"},
    ("POST", "/api/proposals/{proposal}/members"): {"400": "a body that is not a JSON object, no username, an "
                                                           "unknown user or role",
                                                    "403": "a member who is not its PI, or a PI adding a PI"},
    ("DELETE", "/api/proposals/{proposal}/members"): {"400": "no username (or a body that is not a JSON object)",
                                                      "403": "a member who is not its PI, or a PI removing a PI"},
}
_NO_PRODUCT = "the file has no such product (yet): no spectrum extracted, no reduced frame; the reason in Message"
_ERRORS.update({
    ("GET", "/api/files/{file_id}/spectrum"): {"400": "a bad target or version", "409": _NO_PRODUCT},
    ("GET", "/api/files/{file_id}/linefit"): {},
    ("POST", "/api/files/{file_id}/linefit"): {"400": "a bad body, or no line to fit in the window: the reason in "
                                                      "Message", "409": _NO_PRODUCT},
    ("DELETE", "/api/files/{file_id}/linefit/{fit_id}"): {"403": "another user's fit (only staff remove it)"},
    ("GET", "/api/files/{file_id}/imexam"): {"400": "no x or y, or a point outside the frame", "409": _NO_PRODUCT},
    ("GET", "/api/nights/{night}/downloads"): {"400": "a bad night, proposal or format"},
    ("POST", "/api/nights/{night}/archive"): {"400": "a bad night or proposal, or nothing (or too much) to archive"},
})
_NOT_FOUND = {"/api/proposals/{proposal}/settings": "no such proposal, or one the caller is not a member of",
              "/api/proposals/{proposal}/members": "no such proposal, or one the caller is not a member of",
              "/api/files/{file_id}": "no such file, or one the caller may not see"}

#: Request bodies, by (method, path).
_BODIES: Dict[Tuple[str, str], Dict[str, Any]] = {
    ("POST", "/api/files/reduce"): {
        "type": "object", "required": ["file_id"], "additionalProperties": False,
        "properties": {"file_id": {"type": "string", "minLength": 1, "description": "as GET /api/files lists it"},
                       "settings": {**_SETTINGS, "description": "overrides of the proposal's settings for this "
                                                                "version"}}},
    ("PUT", "/api/proposals/{proposal}/settings"): {
        "type": "object", "required": ["settings"], "additionalProperties": False,
        "properties": {"settings": {**_SETTINGS, "description": "the proposal's settings, whole (they replace "
                                                                "the ones it had)"}}},
    ("POST", "/api/files/{file_id}/linefit"): {
        "type": "object", "required": ["window"], "additionalProperties": False,
        "properties": {"target": {"type": "integer", "minimum": 1, "maximum": 99, "default": 1},
                       "window": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                                  "description": "[lo, hi] in the spectrum's x unit"},
                       "model": {"type": "string", "enum": ["gaussian", "voigt"], "default": "gaussian"},
                       "rest_wavelength": {"type": ["number", "null"], "exclusiveMinimum": 0},
                       "version": {"type": ["integer", "null"], "minimum": 0}}},
    ("POST", "/api/nights/{night}/archive"): {
        "type": "object", "additionalProperties": False,
        "properties": {"proposal": {"type": ["string", "null"], "description": "only this proposal's frames (and "
                                                                               "the night's calibrations)"}}},
    ("POST", "/api/proposals/{proposal}/members"): {
        "type": "object", "required": ["username"], "additionalProperties": False,
        "properties": {"username": {"type": "string", "minLength": 1, "description": "an existing account"},
                       "role": {"type": "string", "enum": list(ROLES), "default": ROLE_OBSERVER}}},
}

#: The query of GET /api/files (chalicelib/query.py checks it).
_FILES_QUERY = [
    {"name": "night", "in": "query", "required": True, "schema": {"type": "string"}, "description": "YYYY-MM-DD"},
    {"name": "type", "in": "query", "schema": {"type": "string", "enum": list(FILE_TYPES)},
     "description": "only files of this type (any case)"},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                                "default": DEFAULT_PAGE}},
    {"name": "next", "in": "query", "schema": {"type": "string"},
     "description": "the `next` page token of the previous page, unchanged"},
    {"name": "since", "in": "query", "schema": {"type": "string"},
     "description": "only files changed after this cursor (a `cursor` returned, or a UTC time); not with `next`"},
]
_TARGET = {"name": "target", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 99, "default": 1},
           "description": "the target's number (brightest first)"}
_VERSION = {"name": "version", "in": "query", "schema": {"type": "integer", "minimum": 0},
            "description": "a reduction version (GET /api/files/{file_id} lists them); default: the one shown"}
_UNITS = {"name": "units", "in": "query", "schema": {"type": "string", "enum": ["counts", "flux"], "default": "counts"},
          "description": "flux: the flux-calibrated spectrum when the frame has one (see `fluxed`); counts: ADU"}
#: Query parameters, by (method, path).
_QUERIES: Dict[Tuple[str, str], List[Dict[str, Any]]] = {
    ("GET", "/api/files/{file_id}/spectrum"): [_TARGET, _VERSION, _UNITS],
    ("GET", "/api/files/{file_id}/imexam"): [
        {"name": "x", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 0},
         "description": "column of the reduced frame, 0-based"},
        {"name": "y", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 0},
         "description": "row, 0-based"},
        {"name": "box", "in": "query", "schema": {"type": "integer", "minimum": 3, "maximum": 101, "default": 21}},
        _VERSION],
    ("GET", "/api/nights/{night}/downloads"): [
        {"name": "proposal", "in": "query", "schema": {"type": "string"},
         "description": "only this proposal's frames (and the night's calibrations)"},
        {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "text"], "default": "json"}}],
    ("GET", "/api/files"): _FILES_QUERY,
    ("DELETE", "/api/proposals/{proposal}/members"): [
        {"name": "username", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1},
         "description": "the member to remove"}],
}


def _json(description: str, schema: Dict[str, Any]) -> Dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(method: str, path: str, signed_in: bool) -> Dict[str, Any]:
    ask = "GET" if method == "HEAD" else method
    answers: Dict[str, Any] = {}
    schema = _METHOD_ANSWERS.get((ask, path), _ANSWERS.get(path))
    status = _SUCCESS.get((ask, path), "200")
    if status == "204":
        answers[status] = {"description": "done; no body"}
    elif schema is not None:
        answers[status] = _json("OK", schema)
        if path in _TEXT:
            answers[status]["content"]["text/plain"] = {"schema": {"type": "string", "description": _TEXT[path]}}
    for status, why in _ERRORS.get((ask, path), {}).items():
        answers[status] = _json(why, _ERROR)
    if "{" in path:
        answers.setdefault("404", _json(_NOT_FOUND.get(path, "not found"), _ERROR))
    if signed_in:
        answers["401"] = _json("no token, or one that does not verify (expired, edited, of another user pool)",
                               _ERROR)
    if method == "HEAD":   # as GET, without a body
        answers = {status: {"description": answer["description"]} for status, answer in answers.items()}
    return dict(sorted(answers.items()))


def openapi(app, version: str) -> Dict[str, Any]:
    """The OpenAPI document of `app`'s routes."""
    paths: Dict[str, Any] = {}
    for path, methods in sorted(app.routes.items()):
        operations: Dict[str, Any] = {}
        for method, entry in sorted(methods.items()):
            doc = inspect.getdoc(entry.view_function) or ""
            signed_in = entry.authorizer is not None
            op: Dict[str, Any] = {"operationId": f"{entry.view_name}_{method.lower()}",
                                  "summary": doc.split("\n\n")[0].replace("\n", " "),
                                  "security": [{BEARER: []}] if signed_in else []}
            # named as the path names them: `proxy+` is API Gateway's greedy variable (the
            # rest of the path, slashes included), which OpenAPI cannot say otherwise
            params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in re.findall(r"\{(\w+\+?)\}", path)]
            params += copy.deepcopy(_QUERIES.get(("GET" if method == "HEAD" else method, path), []))
            if params:
                op["parameters"] = params
            if (method, path) in _BODIES:
                op["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": _BODIES[(method, path)]}}}
            op["responses"] = _responses(method, path, signed_in)
            operations[method.lower()] = op
        paths[path] = operations
    return {"openapi": "3.1.0",
            "info": {"title": "Goodman Live", "version": version,
                     "description": "Reduced Goodman spectra, seconds after the shutter closes. Every route but "
                                    "/api/health and /api/auth/config needs a signed-in user's Cognito token "
                                    "(an access or ID token of the user pool GET /api/auth/config names) as "
                                    "`Authorization: Bearer <token>`."},
            "paths": paths,
            "components": {"schemas": {"File": json_schema()},
                           "securitySchemes": {BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                                        "description": "a Cognito access or ID token"}}}}
