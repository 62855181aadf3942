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
#: Routes whose success is not 200.
_SUCCESS = {("POST", "/api/files/reduce"): "202"}

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
#: Query parameters, by (method, path).
_QUERIES: Dict[Tuple[str, str], List[Dict[str, Any]]] = {
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
    if path in _ANSWERS:
        answers[_SUCCESS.get((ask, path), "200")] = _json("OK", _ANSWERS[path])
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
