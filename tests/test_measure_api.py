"""The page's measuring routes on the local stack, through real HTTP as a signed-in
user: a simulated night (bias, flats, a lamp, one star) is reduced, then its spectrum
is read as data, a line is fitted on the star's H-alpha absorption, whose truth the
simulator knows, imexam measures the star's profile across its trace, and the night's
files are listed for download. Who may see a file decides who may measure it."""
import math

import pytest
import requests

from infra.simulator.spectra import H_ALPHA
from tests.conftest import new_user

from tests.conftest import SMALL_NIGHT as NIGHT
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _post(api, path, body):
    return api.http.post(api.base + path, json=body, timeout=20)


def _credentials(spec):
    return spec.username, spec.password


@pytest.fixture(scope="module")
def night(small_night):
    return small_night


def test_the_spectrum_is_served_as_data_with_its_variance_sky_and_lamp(api, night):
    data = api.json(f"/api/files/{night['file_id']}/spectrum", target=1)
    assert data["calibrated"] and data["x_unit"] == "Angstrom" and data["target"] == 1
    n = len(data["x"])
    assert n > 500 and len(data["flux"]) == n and len(data["variance"]) == n and len(data["sky"]) == n
    assert all(b > a for a, b in zip(data["x"], data["x"][1:]))
    assert data["x"][0] < H_ALPHA < data["x"][-1]
    assert sum(1 for v in data["variance"] if v and v > 0) > 0.9 * n
    lamp = data["lamp"]
    assert lamp and len(lamp["x"]) == len(lamp["flux"]) and len(lamp["lines"]) >= 10
    assert all(lamp["x"][0] <= line["x"] <= lamp["x"][-1] for line in lamp["lines"])
    assert data["wavelength"]["rms_pixels"] < 0.5
    # the sky carries the night-sky lines the simulator put in: [OI] 5577 stands out where it falls
    if data["x"][0] < 5570 < data["x"][-1]:
        near = [s for x, s in zip(data["x"], data["sky"]) if abs(x - 5577.34) < 4 and s is not None]
        far = sorted(s for x, s in zip(data["x"], data["sky"]) if 30 < abs(x - 5577.34) < 80 and s is not None)
        assert max(near) > 3 * far[len(far) // 2]


def test_a_line_fit_on_h_alpha_finds_the_truth_and_is_kept(system, api, night):
    sigma = night["science"].target.halpha_sigma
    window = [H_ALPHA - 5 * sigma, H_ALPHA + 5 * sigma]
    resp = _post(api, f"/api/files/{night['file_id']}/linefit",
                 {"target": 1, "window": window, "model": "gaussian", "rest_wavelength": H_ALPHA})
    assert resp.status_code == 201, resp.text
    fit = resp.json()
    assert fit["kind"] == "absorption"
    assert abs(fit["centre"] - H_ALPHA) < 0.2, fit
    assert abs(fit["fwhm"] / (FWHM_PER_SIGMA * sigma) - 1) < 0.10, fit
    assert 0 < fit["centre_error"] < 0.2 and fit["equivalent_width"] > 0 and fit["flux"] < 0
    assert abs(fit["redshift"]) < 0.2 / H_ALPHA and fit["by"] == api.json("/api/me")["username"]
    assert len(fit["curve"]["x"]) == len(fit["curve"]["y"]) > 20
    listed = api.json(f"/api/files/{night['file_id']}/linefit")["fits"]
    assert listed[0]["fit_id"] == fit["fit_id"] and listed[0]["centre"] == fit["centre"]

    # someone else who may see the file cannot remove it; its author can
    member = new_user(system, "fitter", proposals=(night["item"]["proposal"],))
    other = system.signed_in(*_credentials(member)).session(api.base)
    path = f"/api/files/{night['file_id']}/linefit/{fit['fit_id']}"
    refused = other.delete(api.base + path, timeout=10)
    assert refused.status_code == 403 and "only they and staff" in refused.json()["Message"]
    assert api.http.delete(api.base + path, timeout=10).status_code == 204
    assert fit["fit_id"] not in [f["fit_id"] for f in api.json(f"/api/files/{night['file_id']}/linefit")["fits"]]


@pytest.mark.parametrize("body, says", [
    ({"target": 1, "window": [7000.0]}, "window must be [lo, hi]"),
    ({"target": 1, "window": [6000.0, 6000.0]}, "hi > lo"),
    ({"target": 1, "window": [20000.0, 20100.0]}, "window"),
    ({"target": 1, "window": [6550.0, 6575.0], "model": "lorentz"}, "model must be one of"),
    ({"target": 9, "window": [6550.0, 6575.0]}, "no target 9"),
    ({"target": 1, "window": [6550, 6575], "colour": "red"}, "unknown field"),
])
def test_a_bad_line_fit_request_says_what_is_wrong(api, night, body, says):
    resp = _post(api, f"/api/files/{night['file_id']}/linefit", body)
    assert resp.status_code in (400, 409) and says in resp.json()["Message"], resp.text


def test_imexam_on_the_trace_measures_the_star_across_it(api, night):
    item, science = night["item"], night["science"]
    preview = next(p for p in item["products"] if p["kind"] == "preview_reduced")
    ny, nx = preview["shape"]
    assert preview["factor"] >= 1 and len(preview["zscale"]) == 2 and preview["saturated_count"] >= 0
    spectrum = item["spectra"][0]
    x, y = nx // 2, int(round(spectrum["row"]))
    got = api.json(f"/api/files/{night['file_id']}/imexam", x=x, y=y + 1, box=21)
    assert got["x"] == x and got["y"] == y + 1 and got["shape"] == [ny, nx]
    source = got["source"]
    assert source["kind"] == "trace" and abs(source["y"] - spectrum["row"]) < 1.0, source
    assert abs(source["fwhm"] / science.trace.fwhm - 1) < 0.10, (source["fwhm"], science.trace.fwhm)
    assert len(got["row_cut"]["values"]) > 50 and len(got["column_cut"]["values"]) > 50
    box = got["box"]
    assert box["n"] == 21 * 21 and box["min"] <= box["median"] <= box["max"]
    # off the frame, and a frame without a reduced product, are explained
    resp = api.get(f"/api/files/{night['file_id']}/imexam", x=nx + 5, y=0)
    assert resp.status_code == 400 and "outside the frame" in resp.json()["Message"]
    assert api.get(f"/api/files/{night['file_id']}/imexam", x=1).status_code == 400


def test_the_night_downloads_as_signed_urls(api, night):
    listed = api.json(f"/api/nights/{NIGHT}/downloads")
    kinds = {(f["file_name"], f["kind"]) for f in listed["files"]}
    science = night["science"].filename
    assert (science, "raw") in kinds and (science, "calibrated") in kinds
    assert len({f["file_id"] for f in listed["files"]}) >= len(night["ids"])
    one = next(f for f in listed["files"] if f["file_name"] == science and f["kind"] == "calibrated")
    body = requests.get(one["url"], timeout=10)
    assert body.status_code == 200 and body.content[:6] == b"SIMPLE"
    text = api.get(f"/api/nights/{NIGHT}/downloads", format="text")
    assert text.status_code == 200 and text.headers["Content-Type"].startswith("text/plain")
    assert len(text.text.splitlines()) == len(listed["files"])


def test_only_those_who_may_see_a_file_may_measure_it(system, api, night):
    stranger = new_user(system, "stranger", proposals=("SO2099A-001",))
    session = system.signed_in(*_credentials(stranger)).session(api.base)
    file_id = night["file_id"]
    for path in (f"/api/files/{file_id}/spectrum", f"/api/files/{file_id}/linefit",
                 f"/api/files/{file_id}/imexam?x=10&y=10"):
        assert session.get(api.base + path, timeout=10).status_code == 404, path
    resp = session.post(api.base + f"/api/files/{file_id}/linefit", json={"window": [6500, 6600]}, timeout=10)
    assert resp.status_code == 404
    listed = session.get(api.base + f"/api/nights/{NIGHT}/downloads", timeout=10).json()
    assert file_id not in {f["file_id"] for f in listed["files"]}
    assert requests.get(api.base + f"/api/files/{file_id}/spectrum", timeout=10).status_code == 401


def test_the_night_downloads_as_one_archive(system, api, night):
    resp = _post(api, f"/api/nights/{NIGHT}/archive", {})
    assert resp.status_code == 202, resp.text
    asked = resp.json()
    assert asked["status"] == "queued" and asked["count"] >= len(night["ids"]) and "entries" not in asked
    system.wait_idle(timeout=60)
    done = api.json(f"/api/archives/{asked['archive_id']}")
    assert done["status"] == "done", done
    body = requests.get(done["url"], timeout=30)
    assert body.status_code == 200
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(body.content)) as zf:
        names = zf.namelist()
        assert len(names) == asked["count"] == done["copied"]
        science = night["science"].filename
        assert f"{NIGHT}/raw/{science}" in names
        raw = zf.read(f"{NIGHT}/raw/{science}")
        key = f"{system.raw_prefix}{NIGHT}/{science}"
        assert raw == system.stack.client("s3").get_object(Bucket=system.raw_bucket, Key=key)["Body"].read()
    # someone else does not see it; a proposal of nothing, and a bad body, are explained
    stranger = new_user(system, "curious")
    session = system.signed_in(*_credentials(stranger)).session(api.base)
    assert session.get(api.base + f"/api/archives/{asked['archive_id']}", timeout=10).status_code == 404
    nothing = _post(api, f"/api/nights/{NIGHT}/archive", {"proposal": "SO2099A-999"})
    assert nothing.status_code == 400 and "nothing of" in nothing.json()["Message"]
    assert _post(api, f"/api/nights/{NIGHT}/archive", {"format": "tar"}).status_code == 400
