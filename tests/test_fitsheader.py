import pytest

from functions.core.fitsheader import (
    BLOCK, HEADER_PROBE_BYTES, BadFrame, NeedMoreBytes, check_complete, data_size, parse_primary_header,
)
from tests.conftest import real_fits


def test_reads_a_real_goodman_header_and_its_length():
    raw = real_fits("goodman_red_comp.fits")
    header, nbytes = parse_primary_header(raw, len(raw))
    assert header["INSTCONF"] == "Red" and header["OBSTYPE"] == "COMP"
    assert nbytes % BLOCK == 0 and nbytes + data_size(header) == len(raw)
    check_complete(header, nbytes, len(raw))


def test_a_short_prefix_asks_for_more_bytes():
    raw = real_fits("goodman_red_comp.fits")
    with pytest.raises(NeedMoreBytes) as more:
        parse_primary_header(raw[:BLOCK], len(raw))
    assert more.value.needed > BLOCK


@pytest.mark.parametrize("cut", [BLOCK * 3, -BLOCK, -1])
def test_truncated_files_are_refused_with_the_sizes(cut):
    raw = real_fits("goodman_red_comp.fits")[:cut]
    with pytest.raises(BadFrame, match="truncated"):
        header, nbytes = parse_primary_header(raw[:HEADER_PROBE_BYTES], len(raw))
        check_complete(header, nbytes, len(raw))


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"hello, this is a log file\n" * 200, "not a FITS file"),
    # Non-ASCII bytes alone are repaired (test_headerfix.py); bytes that hold no
    # BITPIX/NAXIS describe no pixels.
    ((b"SIMPLE  =                    T".ljust(80) + b"\xff" * 800 + b"END".ljust(80)).ljust(BLOCK), "BITPIX missing"),
])
def test_non_fits_objects_are_refused_with_a_reason(data, reason):
    with pytest.raises(BadFrame, match=reason):
        parse_primary_header(data, len(data))
