"""A frame a careful astronomer could still reduce is reduced, on the local stack: a
simulated science frame whose OBJECT an observer typed in Latin-1, with a card astropy
must fix and a missing optional keyword, ends `reduced` (not `failed`), with the repairs
on its item, its page notes and in the HISTORY of its products."""
import io

from astropy.io import fits

from golive_data.index import file_id_for
from tests.test_headerfix import _with_card

NIGHT = "2024-05-21"  # a night of its own: no masters, the frame is reduced without them


def test_a_science_frame_with_a_repairable_header_is_reduced_with_notes(system, s3, api, sim_night):
    path = next(p for p in sorted(sim_night.glob("*.fits")) if "EG21" in p.name)
    raw = path.read_bytes()
    raw = _with_card(raw, "OBJECT", b"OBJECT  = 'EG21 Se\xf1or'           / Name of the object observed")
    raw = _with_card(raw, "RDNOISE", b"RDNOISE =                 3,89 / CCD readnoise [e-]")
    raw = _with_card(raw, "CCDSUM", b"")
    key = f"{system.raw_prefix}{NIGHT}/{path.name}"
    s3.put_object(Bucket=system.raw_bucket, Key=key, Body=raw)

    item = api.wait_for(file_id_for(system.raw_bucket, key), statuses=("reduced", "failed", "unsupported"),
                        timeout=120)
    assert item["status"] == "reduced", item
    assert item["object"] == "EG21 Senor" and item["binning"] == "2x2"
    assert item["reduced_file_name"] == "cto_" + path.name  # no masters on this night
    repairs = item["header_repairs"]
    assert repairs == [
        "OBJECT: non-ASCII text 'Señor' (read as Latin-1) written as 'Senor'",
        "RDNOISE: number '3,89' written with a decimal comma, read as 3.89",
        "CCDSUM missing: taken from the camera controller's PG5_9 and PG5_4 (serial and parallel binning): '2 2'",
    ]
    assert [n for n in item["notes"] if n.startswith("header repaired: ")] == [
        "header repaired: " + r for r in repairs]

    products = {p["kind"]: p for p in item["products"]}
    header_text = api.http.get(products["header"]["url"], timeout=10).text
    assert "OBJECT  = 'EG21 Senor'" in header_text and "HISTORY Goodman Live repaired" in header_text
    written = [p for p in item["products"] if p["content_type"] == "application/fits"]
    assert {"reduced", "extracted"} <= {p["kind"] for p in written}
    for product in written:  # the 2-D frame and every spectrum are written from the repaired header
        header = fits.getheader(io.BytesIO(api.http.get(product["url"], timeout=30).content))
        assert header["OBJECT"] == "EG21 Senor" and header["RDNOISE"] == 3.89, product["kind"]
        history = " ".join(str(h) for h in header["HISTORY"])
        assert "OBJECT: non-ASCII text 'Se\\xf1or'" in history and "decimal comma" in history, product["kind"]
