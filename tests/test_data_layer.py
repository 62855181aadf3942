"""The data layer the workers and the API share (golive_data/): how the API gets it,
locally and packaged, that it keeps the API light, and the declared file item."""
import json
import os
import subprocess
import sys
import zipfile

import pytest
from jsonschema import Draft202012Validator

from golive_data import item
from golive_data.index import FileIndex, public_view
from tests.conftest import ROOT

API_DIR = ROOT / "functions" / "api"
ENV = {"RAW_BUCKET": "r", "PRODUCTS_BUCKET": "p", "INDEX_TABLE": "t", "AWS_DEFAULT_REGION": "us-east-1"}


def test_the_api_imports_light_in_a_fresh_interpreter():
    """The API as Lambda runs it: its folder and the vendored package on sys.path and
    nothing of the repository; no numpy or astropy is imported."""
    probe = (
        "import sys, time\n"
        f"sys.path[:0] = [{str(API_DIR)!r}, {str(API_DIR / 'vendor')!r}]\n"
        "t = time.perf_counter()\n"
        "import app\n"
        "took = time.perf_counter() - t\n"
        "import golive_data, json\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'astropy', 'scipy', 'functions'))\n"
        "print(json.dumps({'seconds': took, 'heavy': heavy, 'golive_data': golive_data.__file__}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([sys.executable, "-I", "-c", probe], cwd="/", env={**env, **ENV},
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"API cold import: {result['seconds'] * 1000:.0f} ms")
    assert result["heavy"] == []
    assert result["golive_data"].startswith(str(API_DIR / "vendor")), result


def test_chalice_package_puts_the_vendored_data_layer_at_the_top(tmp_path):
    """`chalice package` copies vendor/'s contents to the top of the deployment package,
    following the symlink (its packager walks vendor/ with followlinks=True)."""
    from chalice.deploy.packager import BaseLambdaDeploymentPackager
    from chalice.utils import OSUtils

    packager = BaseLambdaDeploymentPackager(OSUtils(), None, None)
    with zipfile.ZipFile(tmp_path / "api.zip", "w") as z:
        packager._add_vendor_files(z, str(API_DIR / "vendor"))
    names = set(zipfile.ZipFile(tmp_path / "api.zip").namelist())
    for module in sorted((ROOT / "golive_data").glob("*.py")):
        assert f"golive_data/{module.name}" in names


# ---- the declared file item ---------------------------------------------------------

def test_a_write_of_an_undeclared_field_is_refused():
    index = FileIndex(client=None, table="t")    # refused before any request is made
    with pytest.raises(item.UndeclaredField, match="spectra_stat"):
        index.update_file("abc", {"spectra_stat": "calibrated"})
    with pytest.raises(item.UndeclaredField, match="nite"):
        index.record_file({"file_id": "abc", "nite": "2024-01-01", "night": "2024-01-01", "file_name": "a.fits"})


def test_the_api_serves_only_public_fields():
    stored = {"pk": "FILE#abc", "sk": "FILE", "night_pk": "NIGHT#n", "claim_token": "x", "file_id": "abc",
              "night": "n", "file_name": "a.fits", "status": "indexed", "stray": 1}
    assert public_view(stored) == {"file_id": "abc", "night": "n", "file_name": "a.fits", "status": "indexed",
                                   "error": None, "products": []}


def test_the_declaration_is_whole():
    names = [f.name for f in item.FILE_ITEM + item.SERVED]
    assert len(names) == len(set(names))
    assert not {f.name for f in item.SERVED} & set(item.FIELDS)    # served only: no writer may store them
    for f in item.FILE_ITEM + item.SERVED:
        assert f.type in ("string", "integer", "number", "boolean", "array", "object"), f
        assert (f.items is not None) == (f.type == "array"), f
        assert f.meaning and f.writer, f
    assert set(item.REQUIRED) <= item.PUBLIC_FIELDS


def test_the_schema_is_valid_and_takes_a_served_item():
    schema = item.json_schema()
    Draft202012Validator.check_schema(schema)
    served = {"file_id": "abc", "night": "2024-01-01", "file_name": "a.fits", "status": "reduced", "error": None,
              "products": [{"kind": "header", "file_name": "a.header.txt", "url": "https://x"}],
              "obstype": "OBJECT", "exptime": 30.0, "spectra_status": "calibrated", "spectra_reason": None,
              "proposal": "SO2024A-001", "proposal_source": "header", "versions": []}
    assert not list(Draft202012Validator(schema).iter_errors(served))
    assert list(Draft202012Validator(schema).iter_errors({**served, "stray": 1}))
    assert list(Draft202012Validator(schema).iter_errors({**served, "status": "done"}))


def test_the_readme_documents_every_field():
    readme = (ROOT / "README.md").read_text()
    assert item.markdown_table() in readme, "README.md's field table: paste golive_data.item.markdown_table()"


def test_openapi_lists_every_route_with_the_file_schema(monkeypatch):
    from chalice.test import Client
    from infra.local.server import load_api_app

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    app = load_api_app()
    with Client(app) as client:
        assert client.http.get("/api/openapi.json").status_code == 401     # signed-in users only
    from chalicelib.openapi import openapi

    doc = openapi(app, "test")
    assert set(doc["paths"]) == set(app.routes)
    assert doc["components"]["schemas"]["File"] == item.json_schema()
    detail = doc["paths"]["/api/files/{file_id}"]["get"]
    assert detail["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/File"}
    assert [p["name"] for p in detail["parameters"]] == ["file_id"]
    assert "night" in [p["name"] for p in doc["paths"]["/api/files"]["get"]["parameters"]]


def test_every_field_the_page_reads_is_served():
    """The page (static_site/assets/app.js) reads a file's fields as `f.<field>`."""
    import re

    script = (ROOT / "static_site" / "assets" / "app.js").read_text()
    read = set(re.findall(r"\bf\.([a-z_][a-z0-9_]*)\b", script))
    assert read and read <= item.PUBLIC_FIELDS, sorted(read - item.PUBLIC_FIELDS)
