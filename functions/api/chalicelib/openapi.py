"""The API's OpenAPI 3.1 description, generated from the app's own routes (their paths,
methods and docstrings) and the declaration of the file item (golive_data/item.py),
so it cannot drift from either. Served at GET /api/openapi.json.
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Dict

from golive_data.item import FILE_TYPES, json_schema

from .query import DEFAULT_PAGE, MAX_PAGE

_FILE = {"$ref": "#/components/schemas/File"}
_ERROR = {"type": "object", "properties": {"Code": {"type": "string"}, "Message": {"type": "string"}}}

#: What each route answers (200), beyond its path and methods, which the app gives.
_ANSWERS: Dict[str, Dict[str, Any]] = {
    "/api/files": {"type": "object", "required": ["api_version", "night", "files"], "properties": {
        "api_version": {"type": "string"}, "night": {"type": "string"},
        "next": {"type": ["string", "null"], "description": "page token of the next page (a listing)"},
        "cursor": {"type": "string", "description": "the cursor to ask `since` next (with `since`)"},
        "files": {"type": "array", "items": _FILE}}},
    "/api/files/{file_id}": _FILE,
    "/api/nights": {"type": "object", "properties": {
        "api_version": {"type": "string"},
        "nights": {"type": "array", "items": {"type": "object", "properties": {
            "night": {"type": "string"}, "files": {"type": "integer"}, "updated_at": {"type": "string"}}}}}},
    "/api/openapi.json": {"type": "object", "description": "this document"},
    "/api/health": {"type": "object", "properties": {"status": {"type": "string"}, "api_version": {"type": "string"}}},
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


def openapi(app, version: str) -> Dict[str, Any]:
    """The OpenAPI document of `app`'s routes."""
    paths: Dict[str, Any] = {}
    for path, methods in sorted(app.routes.items()):
        operations: Dict[str, Any] = {}
        for method, entry in sorted(methods.items()):
            doc = inspect.getdoc(entry.view_function) or ""
            op: Dict[str, Any] = {"operationId": f"{entry.view_name}_{method.lower()}",
                                  "summary": doc.split("\n\n")[0].replace("\n", " ")}
            params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in re.findall(r"\{(\w+)\+?\}", path)]
            if path == "/api/files":
                params += _FILES_QUERY
            if params:
                op["parameters"] = params
            answer = _ANSWERS.get(path)
            op["responses"] = {
                **({"200": {"description": "OK", "content": {"application/json": {"schema": answer}}}}
                   if answer else {}),
                **({"400": {"description": "a bad query: the reason in Message",
                            "content": {"application/json": {"schema": _ERROR}}}} if path == "/api/files" else {}),
                **({"404": {"description": "not found", "content": {"application/json": {"schema": _ERROR}}}}
                   if "{" in path else {}),
            }
            if method == "HEAD":
                op["responses"] = {"200": {"description": "as GET, without a body"}}
            operations[method.lower()] = op
        paths[path] = operations
    return {"openapi": "3.1.0",
            "info": {"title": "Goodman Live", "version": version,
                     "description": "Reduced Goodman spectra, seconds after the shutter closes."},
            "paths": paths, "components": {"schemas": {"File": json_schema()}}}
