"""The API against its own OpenAPI description (GET /api/openapi.json), by schemathesis:
requests generated from the description, sent to the running local API as a staff user
and as an observer, and every answer checked: never a 5xx, only documented statuses and
content types, bodies that match the documented schema, and routes that declare the
bearer token refuse a request without it.

A generated id rarely names anything, so the generation is steered (hooks below) to use,
more often than not, the ids of a night of this module's own: its files, its proposal,
its night, an existing user, so that answers of success and their bodies are checked
too, not only 404s. Bounded and deterministic: at most MAX_EXAMPLES generated requests
per operation and mode, derandomized, no example database, only this machine's API.

schemathesis' own pytest loader (`schemathesis.pytest.from_fixture(...).parametrize()`)
cannot run under pytest 9 in the version pinned (it sets `request.node._nodeid`, which
pytest 9 no longer has), so each operation's strategy (`APIOperation.as_strategy`) is
driven with Hypothesis' `@given` here, the way schemathesis documents for tests of one's
own.
"""
from __future__ import annotations

import secrets
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (content_type_conformance, ignored_auth, response_schema_conformance,
                                               status_code_conformance)

from golive_data.index import file_id_for
from tests.conftest import comps_and_flats, new_user
from tests.test_authorization import goodman_frame

MAX_EXAMPLES = 6
SEED = 20180203
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          ignored_auth]
PROPOSAL = f"SO2097A-{secrets.token_hex(3).upper()}"


@pytest.fixture(scope="module")
def known(system, s3, api):
    """What the generation may name: a night with a comp, a flat and a science frame of
    a proposal, an observer of that proposal, and a user of no proposal (whom POST
    /members may add and DELETE remove)."""
    night = "2092-%02d-%02d" % (uuid.uuid4().int % 12 + 1, uuid.uuid4().int % 28 + 1)   # no other test's year
    files = [f["file_id"] for f in comps_and_flats(system, s3, api, night, 2)]
    key = f"{system.raw_prefix}{night}/0003_science.fits"
    s3.put_object(Bucket=system.raw_bucket, Key=key,
                  Body=goodman_frame("OBJECT", PROPOSAL, datetime.now(timezone.utc) - timedelta(days=1)))
    files.append(api.wait_for(file_id_for(system.raw_bucket, key))["file_id"])
    observer = new_user(system, "fuzz-observer", proposals=[PROPOSAL])
    outsider = new_user(system, "fuzz-outsider")
    return {"night": night, "file_id": files, "proposal": [PROPOSAL], "username": [outsider.username],
            "observer": observer}


@pytest.fixture(scope="module", params=["staff", "observer"])
def user(request, system, known):
    if request.param == "staff":
        return system.operator()
    spec = known["observer"]
    return system.signed_in(spec.username, spec.password)


def _steered(known: dict):
    """Hooks that swap, now and then, a generated value for one that names something."""

    def sometimes(values: dict, names) -> st.SearchStrategy:
        if not isinstance(values, dict):
            return st.just(values)
        choices = []
        for name in names:
            if name in values:
                options = known[name] if isinstance(known[name], list) else [known[name]]
                choices += [{**values, name: option} for option in options]
        return st.sampled_from(choices + [values])     # the first choices are the likeliest

    def flatmap_path_parameters(context, path_parameters):
        return sometimes(path_parameters, ("file_id", "proposal"))

    def flatmap_query(context, query):
        return sometimes(query, ("night", "username"))

    def flatmap_body(context, body):
        return sometimes(body, ("file_id", "username"))

    return flatmap_path_parameters, flatmap_query, flatmap_body


@pytest.fixture(scope="module")
def api_schema(system, known):
    """The description as the running API serves it (to a signed-in user), with the
    generation steered towards the known ids."""
    config = schemathesis.Config.from_dict({
        "seed": SEED, "base-url": system.url,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none", "deterministic": True},
    })
    schema = schemathesis.openapi.from_url(system.url + "/api/openapi.json", config=config,
                                           headers=system.operator().headers(), timeout=20)
    for hook in _steered(known):
        schema.hook(hook)
    return schema


def test_the_description_is_valid_openapi(system):
    from openapi_spec_validator import validate

    resp = requests.get(system.url + "/api/openapi.json", headers=system.operator().headers(), timeout=20)
    assert resp.status_code == 200
    validate(resp.json())


def _operations(schema):
    """Every operation of the description but API Gateway's catch-all `/{proxy+}` (any
    path no route names: a 404, which tests/test_api_defects.py covers)."""
    for result in schema.get_all_operations():
        operation = result.ok()     # a description schemathesis cannot read fails here
        if operation.path != "/{proxy+}":
            yield operation


def _takes_input(operation) -> bool:
    return bool(operation.path_parameters or operation.query or operation.body)


def test_the_api_keeps_its_description(api_schema, user):
    """Each operation, MAX_EXAMPLES requests of valid input and (where it takes input)
    MAX_EXAMPLES of invalid input; every failure of every operation is reported."""
    failures, seen, started = {}, {}, time.monotonic()
    for operation in _operations(api_schema):
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if _takes_input(operation) else [])
        for mode in modes:
            label = f"{operation.label} ({mode.value})"

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case):
                response = case.call_and_validate(headers=user.headers(), checks=CHECKS, timeout=20)
                statuses = seen.setdefault(label, {})
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

            try:
                run()
            except (Exception, FailureGroup) as exc:   # every operation's failure is reported
                failures[label] = exc
    sent = sum(sum(s.values()) for s in seen.values())
    print(f"\nschemathesis as {user.username}: {sent} requests, {len(seen)} operations x modes, "
          f"{time.monotonic() - started:.1f} s\n" + "\n".join(f"  {label}: {dict(sorted(statuses.items()))}"
                                                          for label, statuses in sorted(seen.items())))
    assert not failures, "\n\n".join(f"== {label}\n{exc}" for label, exc in failures.items())
    # the steering reached real things, so answers of success were checked as well
    assert seen["GET /api/files/{file_id} (positive)"].get(200)
    assert seen["GET /api/files (positive)"].get(200)
    assert seen["GET /api/proposals/{proposal}/members (positive)"].get(200)
    assert seen["POST /api/files/reduce (positive)"].get(202)
