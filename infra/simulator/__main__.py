"""Command line: write a simulated night into a folder, one line per file as it closes.

    python -m infra.simulator --out DIR [--seed 1] [--night 2024-03-14] [--cadence 2.0]
        [--write-seconds 0.5] [--n-bias 10] [--n-flat 10] [--n-comp 2] [--n-science 3]
        [--lamp 400M2_GG455_HgArNe] [--tilt 0.0]
        [--binning '2 2'] [--lamp-binning B] [--flat-binning B] [--bias-binning B ...]
        [--roi full|'Spectroscopic ZZ Ceti'|FIRST:N] [--lamp-roi R] [--flat-roi R]
        [--slit 1.0] [--lamp-slit S] [--flat-slit S] [--lamp-offset 0.0] [--standard LTT3218]

Binnings as CCDSUM ('1 1', '3 3') or 1x1; an ROI as a preset name or FIRST:N unbinned rows
from the first row of the full window; slits in arcsec; the lamp offset in unbinned px.

Each line: file name, OBSTYPE, OBJECT, EXPTIME, size in bytes, close time (unix s),
tab separated, flushed as soon as the file is closed (so a pipe sees the stream live).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .plan import make_night
from .writer import write_night


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--night", default="2024-03-14", help="night date YYYY-MM-DD (evening, UTC date)")
    parser.add_argument("--cadence", type=float, default=0.0, help="seconds from one file's close to the next")
    parser.add_argument("--write-seconds", type=float, default=0.0, help="seconds each file takes to be written")
    parser.add_argument("--n-bias", type=int, default=10)
    parser.add_argument("--n-flat", type=int, default=10)
    parser.add_argument("--n-comp", type=int, default=2)
    parser.add_argument("--n-science", type=int, default=3)
    parser.add_argument("--lamp", default="400M2_GG455_HgArNe", help="goodman-pipeline reference lamp name")
    parser.add_argument("--tilt", type=float, default=0.0, help="line tilt, unbinned px per 100 rows of the 2x2 frame")
    parser.add_argument("--binning", default="2 2", help="science binning, CCDSUM 'serial parallel' (1..3 each)")
    parser.add_argument("--lamp-binning", default=None, help="comparison lamps' binning (default: --binning)")
    parser.add_argument("--flat-binning", default=None, help="flats' binning (default: --binning)")
    parser.add_argument("--bias-binning", action="append", default=None,
                        help="a binning to take n-bias biases at (repeatable; default: every readout used)")
    parser.add_argument("--roi", default=None, help="science ROI: 'full', 'Spectroscopic ZZ Ceti' or FIRST:N")
    parser.add_argument("--lamp-roi", default=None, help="lamps' ROI (default: --roi)")
    parser.add_argument("--flat-roi", default=None, help="flats' ROI (default: --roi)")
    parser.add_argument("--slit", type=float, default=None, help="science slit, arcsec (default: the reference lamp's 0.45)")
    parser.add_argument("--lamp-slit", type=float, default=None, help="lamps' slit, arcsec (default: --slit)")
    parser.add_argument("--flat-slit", type=float, default=None, help="flats' slit, arcsec (default: --slit)")
    parser.add_argument("--lamp-offset", type=float, default=0.0,
                        help="constant shift of lamps and science from the reference lamp, unbinned px (|x| <= 40)")
    parser.add_argument("--standard", default=None,
                        help="a spectrophotometric standard (esofil_info.txt name): a night with absolute fluxes")
    args = parser.parse_args(argv)

    def roi(text):
        if text is None or ":" not in text:
            return text
        first, n = text.split(":", 1)
        return int(first), int(n)

    try:
        plan = make_night(seed=args.seed, night=args.night, lamp=args.lamp, n_bias=args.n_bias,
                          n_flat=args.n_flat, n_comp=args.n_comp, n_science=args.n_science, tilt=args.tilt,
                          binning=args.binning, lamp_binning=args.lamp_binning, flat_binning=args.flat_binning,
                          bias_binning=args.bias_binning, roi=roi(args.roi), lamp_roi=roi(args.lamp_roi),
                          flat_roi=roi(args.flat_roi), slit=args.slit, lamp_slit=args.lamp_slit,
                          flat_slit=args.flat_slit, lamp_offset=args.lamp_offset, standard=args.standard)
    except ValueError as exc:
        parser.error(str(exc))
    frames = {f.filename: f for f in plan.frames}

    def report(path: Path, closed: float) -> None:
        f = frames[path.name]
        print(f"{path.name}\t{f.obstype}\t{f.object}\t{f.exptime:g}\t{path.stat().st_size}\t{closed:.3f}", flush=True)

    write_night(args.out, plan, cadence=args.cadence, write_seconds=args.write_seconds, on_close=report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
