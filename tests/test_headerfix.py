"""Real Goodman headers made wrong the ways real files are wrong: what a careful
astronomer could still read is repaired, with a note per repair; what describes no
pixels still fails with the reason."""
import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from functions.core.classify import classify
from functions.core.fitsheader import (
    BLOCK, BadFrame, check_complete, header_end, read_primary_header, repair_file,
)
from functions.core.headerfix import HISTORY_PREFIX, repair_header, transliterate
from tests.conftest import FIXTURES, real_fits

HEADERS = FIXTURES / "real_headers"
BLUE = "quickreduce_testdata__0129_feige110.hdr"     # Blue camera, PG3/PG4 controller block
RED = "dragons_soar_testdata__goodman_red_spec.hdr"  # Red camera, PG2/PG5 controller block
OLD = "dragons_soar_testdata__goodman_2016.hdr"      # 2016, PARAMnn controller block


def _raw(name: str) -> bytes:
    raw = (HEADERS / name).read_bytes()
    return raw[:header_end(raw)]


def _with_card(raw: bytes, keyword: str, card: bytes) -> bytes:
    """`raw` with the card of `keyword` replaced by `card` (b"" leaves a blank card: the
    keyword is then missing and the header keeps its size)."""
    offset = next(i for i in range(0, len(raw), 80) if raw[i:i + 8].rstrip() == keyword.encode())
    return raw[:offset] + card.ljust(80)[:80] + raw[offset + 80:]


def _history(header: fits.Header) -> str:
    return " ".join(str(v) for v in header["HISTORY"]) if "HISTORY" in header else ""


@pytest.mark.parametrize("path", sorted(HEADERS.glob("*.hdr")), ids=lambda p: p.stem)
def test_a_clean_real_header_comes_out_card_for_card(path):
    raw = path.read_bytes()
    repaired = repair_header(raw[:header_end(raw)])
    assert repaired.repairs == ()
    assert repaired.header.tostring().encode("ascii") == raw[:header_end(raw)]


@pytest.mark.parametrize("encoded, encoding", [
    (b"OBJECT  = 'Se\xf1or'           / Name of the object observed", "Latin-1"),
    ("OBJECT  = 'Señor'           / Name of the object observed".encode("utf-8"), "UTF-8"),
])
def test_a_non_ascii_object_is_transliterated_and_noted(encoded, encoding):
    repaired = repair_header(_with_card(_raw(BLUE), "OBJECT", encoded))
    assert repaired.header["OBJECT"] == "Senor"
    assert repaired.header.comments["OBJECT"] == "Name of the object observed"
    assert repaired.repairs == (f"OBJECT: non-ASCII text 'Señor' (read as {encoding}) written as 'Senor'",)
    # the header itself says so, in ASCII (FITS cards can hold nothing else)
    assert f"{HISTORY_PREFIX}OBJECT: non-ASCII text 'Se\\xf1or'" in _history(repaired.header)
    repaired.header.tostring().encode("ascii")
    assert classify(repaired.header)["object"] == "Senor"


def test_transliteration_keeps_letters_and_marks_what_it_cannot_spell():
    assert transliterate("Señor Müller Øresund Straße São") == "Senor Muller Oresund Strasse Sao"
    assert transliterate("45°\x01") == "45??"


def test_control_characters_are_replaced_and_noted():
    repaired = repair_header(_with_card(_raw(BLUE), "OBJECT", b"OBJECT  = 'Feige\t110\x00'"))
    assert repaired.header["OBJECT"] == "Feige 110?"
    assert repaired.repairs[0].startswith("OBJECT: characters that are not printable")


@pytest.mark.parametrize("keyword, card, value, note", [
    ("GAIN", b"gain    =             2.670000 / CCD gain [e-/ADU]", 2.67,
     "GAIN: keyword 'gain' is not upper case: fixed by astropy as GAIN = 2.67"),
    ("OBJECT", b"OBJECT  = Feige 110 / target", "Feige 110",
     "OBJECT: invalid value string: 'Feige 110 / target': fixed by astropy as OBJECT = 'Feige 110'"),
    ("OBJECT", b"OBJECT  = 'Feige 110        / target", "Feige 110",
     "OBJECT: string \"'Feige 110        / target\" has no closing quote, read as 'Feige 110'"),
    ("EXPTIME", b"EXPTIME =            30,5 / integration time", 30.5,
     "EXPTIME: number '30,5' written with a decimal comma, read as 30.5"),
    ("RDNOISE", b"RDNOISE      5.12 / CCD readnoise [e-]", 5.12,
     "RDNOISE: card 'RDNOISE      5.12 / CCD readnoise [e-]' has its keyword or '=' out of place, "
     "read as RDNOISE = 5.12"),
    ("GAIN", b"  GAIN = 2.67 / CCD gain", 2.67,
     "GAIN: card '  GAIN = 2.67 / CCD gain' has its keyword or '=' out of place, read as GAIN = 2.67"),
    ("AIRMASS", b"AIRMASS =  1.1.0 / airmass", "1.1.0",
     "AIRMASS: invalid value string: '1.1.0 / airmass': fixed by astropy as AIRMASS = '1.1.0'"),
])
def test_a_card_astropy_must_fix_is_fixed_and_noted(keyword, card, value, note):
    repaired = repair_header(_with_card(_raw(BLUE), keyword, card))
    assert repaired.header[keyword] == value
    assert repaired.repairs == (note,)
    assert "HISTORY" in repaired.header
    info = classify(repaired.header)
    assert info["gain"] == 2.67 and info["rdnoise"] == 5.12 and info["binning"] == "2x2"


def test_a_junk_card_is_kept_as_a_comment_and_noted():
    repaired = repair_header(_with_card(_raw(BLUE), "NOTES", b"this is no card: written by a script"))
    assert "NOTES" not in repaired.header
    assert "unreadable card: this is no card: written by a script" in repaired.header["COMMENT"]
    assert len(repaired.repairs) == 1
    assert "'this is no card: written by a script' is not a keyword = value card: kept as a COMMENT" \
        in repaired.repairs[0]
    fits.PrimaryHDU(header=repaired.header).writeto(io.BytesIO(), output_verify="exception")


@pytest.mark.parametrize("name, keyword, value, source", [
    (BLUE, "DATE-OBS", "2018-10-01T03:16:41.749", "DATE and the start time in TIME"),
    (BLUE, "CCDSUM", "2 2", "PG3_2 and PG3_6"),
    (RED, "CCDSUM", "1 2", "PG5_9 and PG5_4"),
    (OLD, "CCDSUM", "1 1", "PARAM18 and PARAM22"),
    (BLUE, "EXPTIME", 30.0, "PG4_0"),
    (RED, "EXPTIME", 120.0, "PG2_0"),
    (OLD, "EXPTIME", 120.0, "PARAM24"),
    (BLUE, "GRT_ANG", 5.85, "GRT_TARG"),
])
def test_a_missing_keyword_with_a_second_source_is_derived_and_noted(name, keyword, value, source):
    repaired = repair_header(_with_card(_raw(name), keyword, b""))
    assert repaired.header[keyword] == value
    assert len(repaired.repairs) == 1
    assert repaired.repairs[0].startswith(f"{keyword} missing: taken from ") and source in repaired.repairs[0]


def test_date_obs_falls_back_to_ut_and_the_night_follows():
    raw = _with_card(_with_card(_raw(BLUE), "DATE-OBS", b""), "TIME", b"")
    repaired = repair_header(raw)
    assert repaired.header["DATE-OBS"] == "2018-10-01T03:16:39.437"
    assert classify(repaired.header)["date_obs"][:10] == "2018-10-01"


def test_a_missing_keyword_without_a_second_source_is_noted_not_invented():
    repaired = repair_header(_with_card(_raw(BLUE), "OBJECT", b""))
    assert "OBJECT" not in repaired.header
    assert repaired.repairs == ("OBJECT missing: the frame has no target name",)
    assert classify(repaired.header)["object"] == ""


def test_several_repairs_are_noted_in_order():
    raw = _with_card(_raw(BLUE), "OBJECT", b"OBJECT  = 'Se\xf1or'")
    raw = _with_card(raw, "EXPTIME", b"EXPTIME =            30,0")
    raw = _with_card(raw, "CCDSUM", b"")
    notes = repair_header(raw).repairs
    assert [n.split(":")[0] for n in notes] == ["OBJECT", "EXPTIME", "CCDSUM missing"]


# ---- what must still fail --------------------------------------------------------------
@pytest.mark.parametrize("keyword, card, reason", [
    ("NAXIS1", b"NAXIS1  =                 20,71", "NAXIS1 = 20.71 cannot be read as an integer"),
    ("NAXIS2", b"NAXIS2  = many", "NAXIS2 = 'many' cannot be read as an integer"),
    ("BITPIX", b"", "BITPIX missing"),
    ("NAXIS2", b"", "NAXIS2 missing"),
    ("BZERO", b"BZERO   = 'a lot'", "BZERO = 'a lot' cannot be read as a number"),
])
def test_a_structural_card_that_needs_a_guess_fails(keyword, card, reason):
    raw = _with_card(_raw(BLUE), keyword, card)
    with pytest.raises(BadFrame, match=reason):
        read_primary_header(raw, len(raw))


@pytest.mark.parametrize("cut, reason", [(BLOCK, "truncated: the header has no END card"),
                                         (-1, "truncated: the header needs")])
def test_a_truncated_header_fails(cut, reason):
    raw = _with_card(_raw(BLUE), "OBJECT", b"OBJECT  = 'Se\xf1or'")[:cut]
    with pytest.raises(BadFrame, match=reason):
        read_primary_header(raw, len(raw))


def test_a_header_without_end_fails():
    raw = _raw(BLUE).replace(b"END" + b" " * 77, b" " * 80) + b" " * BLOCK
    with pytest.raises(BadFrame, match="no END card"):
        read_primary_header(raw, len(raw))


def test_bytes_that_are_not_fits_fail():
    data = "observing log: Señor Pérez, clouds at 02:00\n".encode("latin-1") * 100
    with pytest.raises(BadFrame, match="not a FITS file"):
        read_primary_header(data, len(data))


# ---- the whole file, as the reduction reads it ------------------------------------------
def test_a_clean_file_is_read_as_it_is():
    raw = real_fits("goodman_red_comp.fits")
    assert repair_file(raw) is raw


def test_a_repaired_file_keeps_its_pixels_and_can_be_written_again():
    raw = real_fits("goodman_red_comp.fits")
    bad = _with_card(raw, "OBJECT", b"OBJECT  = 'Se\xf1or'")
    bad = _with_card(bad, "RDNOISE", b"RDNOISE =  3,89 / CCD readnoise [e-]")
    fixed = repair_file(bad)
    repaired, nbytes = read_primary_header(bad, len(bad))
    check_complete(repaired.header, nbytes, len(bad))
    with fits.open(io.BytesIO(raw)) as before, fits.open(io.BytesIO(fixed)) as after:
        assert np.array_equal(before[0].data, after[0].data)
        header = after[0].header
        assert header["OBJECT"] == "Senor" and header["RDNOISE"] == 3.89
        assert "OBJECT: non-ASCII text" in _history(header)
        out = io.BytesIO()
        fits.PrimaryHDU(data=after[0].data.astype("float32"), header=header).writeto(out, output_verify="exception")
    assert fits.getheader(io.BytesIO(out.getvalue()))["OBJECT"] == "Senor"
