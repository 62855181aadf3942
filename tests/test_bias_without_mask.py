"""A bias is a bias whatever the mask: bias frames read with no slit mask, no grating or
WAVMODE 'Imaging' are spectroscopic biases when their readout fits the spectroscopic
regions, and a master never mixes raw shapes.

The headers are real (tests/fixtures/real_headers); the no-mask bias is a real Blue
2x2 header with the cards a bias taken without mask and grating has (the afternoon's
science setup otherwise), because no such header is committed yet.
"""
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.io import fits

from functions import reduction
from functions.core import calibrations as cal
from functions.core import reduce as R
from functions.core.classify import classify
from functions.core.masters import make_master_bias
from tests.conftest import FIXTURES

HEADERS = FIXTURES / "real_headers"
NO_MASK = {"OBSTYPE": "BIAS", "OBJECT": "Bias", "EXPTIME": 0.0, "SLIT": "<NO MASK>", "GRATING": "<NO GRATING>",
           "WAVMODE": "Imaging"}


def real(name: str) -> fits.Header:
    return fits.Header.fromstring((HEADERS / name).read_bytes().decode("ascii"))


def no_mask_bias(base="quickreduce_testdata__0129_feige110.hdr", **cards) -> fits.Header:
    header = real(base)
    for key, value in {**NO_MASK, **cards}.items():
        header[key] = value
    return header


def test_a_bias_without_mask_or_grating_is_a_spectroscopic_bias():
    info = classify(no_mask_bias())
    assert info["obstype"] == "BIAS" and info["technique"] == "Spectroscopy"
    assert info["slit"] == "NO_MASK" and info["grating"] is None
    assert cal.reason_not_reducible(info) is None
    assert any("without a slit mask" in n and "used as a spectroscopic bias" in n for n in info["notes"]), info["notes"]
    # It serves the science frames of its readout, under today's group name.
    science = classify(real("quickreduce_testdata__0129_feige110.hdr"))
    assert cal.bias_group(info) == cal.bias_group(science) == "BLUE_SP_2x2_R05.12_G02.67"


@pytest.mark.parametrize("cards", [{"WAVMODE": "400WD", "GRATING": "SYZY_400"},   # mask out, grating in
                                   {"SLIT": '1.0" long slit'},                       # grating out
                                   {"ROI": "Imaging 2x2"}])                          # ROI name says imaging
def test_any_imaging_setup_card_is_fine_for_a_bias(cards):
    info = classify(no_mask_bias(**cards))
    assert info["technique"] == "Spectroscopy" and cal.reason_not_reducible(info) is None
    assert any("used as a spectroscopic bias" in n for n in info["notes"])


def test_a_bias_read_out_as_an_image_is_not_usable_and_says_why():
    # The real Red imaging header (SLIT '<NO MASK>', ROI 'Imaging 2x2') as a bias, with
    # the shape of that readout (3096 unbinned columns at 2x2).
    header = no_mask_bias("dragons_soar_testdata__goodman_red_imag.hdr", NAXIS1=1548, NAXIS2=1548)
    info = classify(header)
    why = cal.reason_not_reducible(info)
    assert why and "1548x1548" in why and "trim" in why
    assert any("not usable as a spectroscopic bias" in n for n in info["notes"])


@pytest.mark.parametrize("name", ["dragons_soar_testdata__goodman_blue_bias.hdr",
                                  "dragons_soar_testdata__goodman_red_bias.hdr"])
def test_a_bias_whose_shape_does_not_fit_is_unsupported_not_left_to_break_the_master(name):
    info = classify(real(name))  # committed as 10x10 stubs
    assert "10x10" in cal.reason_not_reducible(info)


def test_the_full_readout_keeps_its_group_name_other_shapes_get_theirs():
    zz_ceti = classify(real("jsreding_930_20180203__0280_Zero_ZZCeti.hdr"))         # 2071x200, 2x2
    assert cal.bias_group(zz_ceti) == "RED_SP_2x2_R05.27_G01.45_2071x200"
    full = classify(real("quickreduce_testdata__0325_obj1208.hdr"))                  # 2071x948, 2x2
    assert cal.bias_group(full) == "BLUE_SP_2x2_R05.12_G02.67"
    simulated = {"camera": "RED", "binning": "2x2", "gain": 1.48, "rdnoise": 3.89}   # no shape known
    assert cal.bias_group(simulated) == "RED_SP_2x2_R03.89_G01.48"
    # The dragons-soar Blue afternoon: a user-defined 500-row ROI at 1x1.
    user = {**classify(real("dragons_soar_testdata__goodman_blue_bias.hdr")), "naxis1": 4142, "naxis2": 500}
    assert cal.bias_group(user) == "BLUE_SP_1x1_R03.99_G02.06_4142x500"
    assert cal.reason_not_reducible(user) is None
    other_rows = {**user, "naxis2": 600}
    assert cal.bias_group(other_rows) != cal.bias_group(user)


class _Index:
    def __init__(self, files):
        self.files = files

    def list_files(self, night, obstype=None, limit=100, token=None):
        return [f for f in self.files if f["night"] == night and f["obstype"] == obstype], None


def _bias(n, rows, cols=2071):
    return {"file_id": f"id{n:02d}", "file_name": f"{n:04d}_bias.fits", "night": "2024-05-01", "obstype": "BIAS",
            "status": "indexed", "camera": "RED", "binning": "2x2", "gain": 1.48, "rdnoise": 3.89,
            "naxis1": cols, "naxis2": rows}


def test_the_members_of_a_master_never_mix_raw_shapes():
    # Full frame and ZZ Ceti biases of one night: a master of each.
    files = [_bias(n, 948) for n in range(12)] + [_bias(n, 200) for n in range(12, 22)]
    assert len({cal.bias_group(f) for f in files}) == 2
    services = SimpleNamespace(index=_Index(files))
    members = reduction._members(cal.BIAS, "2024-05-01", cal.bias_group(files[0]), services)
    assert len(members) == 12 and {m["naxis2"] for m in members} == {948}
    members = reduction._members(cal.BIAS, "2024-05-01", cal.bias_group(files[-1]), services)
    assert len(members) == 10 and {m["naxis2"] for m in members} == {200}
    same = [_bias(n, 948) for n in range(10)]
    assert len(reduction._members(cal.BIAS, "2024-05-01", cal.bias_group(same[0]),
                                  SimpleNamespace(index=_Index(same)))) == 10


# ---- through the reduction core, on small synthetic frames --------------------------------------
SHAPE = (40, 2071)  # a short Blue 2x2 readout: the spectroscopic regions need the width, not the rows


def _frame(rng, header, level=1000.0, signal=0.0):
    data = level + rng.normal(0, 3.0, SHAPE)
    data[:, 200:210] += 25.0  # a fixed bias pattern the master must remove
    data[:, 20:2055] += signal
    h = header.copy()
    h["NAXIS1"], h["NAXIS2"] = SHAPE[1], SHAPE[0]
    return data.astype("float32"), h


def test_a_bias_without_mask_reduces_and_its_master_calibrates_science():
    rng = np.random.default_rng(7)
    bias_header = no_mask_bias()
    assert R._is_imaging(bias_header)
    data, header = _frame(rng, bias_header)
    settings = R.ReductionSettings(cosmic_ray_rejection="none", ignore_flats=True)
    frame, report = R.reduce_frame(data, header, "BIAS", "BLUE", (2, 2), R.Calibrations(), settings)
    assert report["steps_run"] == ["overscan", "trim"] and report["prefix"] == "to_"
    with pytest.raises(R.UnsupportedFrame):  # an imaging *science* frame is still not reduced
        R.reduce_frame(data, header, "OBJECT", "BLUE", (2, 2), R.Calibrations(), settings)

    biases = [_frame(rng, bias_header) for _ in range(5)]
    master = make_master_bias(biases, names=[f"{n:04d}_bias.fits" for n in range(5)])
    science_data, science_header = _frame(rng, real("quickreduce_testdata__0129_feige110.hdr"), signal=50.0)
    reduced, report = R.reduce_frame(science_data, science_header, "OBJECT", "BLUE", (2, 2),
                                     R.Calibrations(master_bias=master, master_bias_name="master_bias_nomask.fits"),
                                     settings)
    assert "bias" in report["steps_run"] and reduced.header["GSP_BIAS"] == "master_bias_nomask.fits"
    # The bias pattern is gone: the columns that carried it read like their neighbours.
    pattern = reduced.data[:, 200 - 25:210 - 25].mean()
    around = reduced.data[:, 150:190].mean()
    assert abs(pattern - around) < 2.0, (pattern, around)


# ---- through the local stack: ingest, index, master bias ----------------------------------------
def _fits_bytes(data, header) -> bytes:
    import io

    h = header.copy()
    for key in ("BZERO", "BSCALE"):
        h.remove(key, ignore_missing=True)
    buf = io.BytesIO()
    fits.PrimaryHDU(data=data, header=h).writeto(buf)
    return buf.getvalue()


def test_a_night_of_biases_without_mask_builds_its_master_bias(system, s3, api):
    import time
    import uuid

    from golive_data.index import file_id_for

    night = "2097-06-%02d" % (uuid.uuid4().int % 28 + 1)
    rng = np.random.default_rng(11)
    ids = []
    for n in range(10):
        data, header = _frame(rng, no_mask_bias())
        key = f"{system.raw_prefix}{night}/{n:04d}_bias.fits"
        s3.put_object(Bucket=system.raw_bucket, Key=key, Body=_fits_bytes(data, header))
        ids.append(file_id_for(system.raw_bucket, key))
    items = [api.wait_for(i) for i in ids]
    for item in items:
        assert item["status"] == "indexed", item
        assert item["technique"] == "Spectroscopy" and item["slit"] == "NO_MASK"
        assert any("used as a spectroscopic bias" in note for note in item["notes"])
    deadline, masters = time.monotonic() + 60, []
    while not masters and time.monotonic() < deadline:
        masters = api.json("/api/files", night=night, type="MASTER_BIAS")["files"]
        time.sleep(0.3)
    # 40 rows is not one of Goodman's spectroscopic ROIs: the shape is in the name.
    assert [m["file_name"] for m in masters] == [f"master_bias_BLUE_SP_2x2_R05.12_G02.67_2071x40_{night}_n10.fits"]
