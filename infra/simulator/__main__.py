"""Command line: write a simulated night into a folder, one line per file as it closes.

    python -m infra.simulator --out DIR [--seed 1] [--night 2024-03-14] [--cadence 2.0]
        [--write-seconds 0.5] [--n-bias 10] [--n-flat 10] [--n-comp 2] [--n-science 3]
        [--lamp 400M2_GG455_HgArNe] [--tilt 0.0]

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
    parser.add_argument("--tilt", type=float, default=0.0, help="line tilt, unbinned px per 100 rows")
    args = parser.parse_args(argv)
    try:
        plan = make_night(seed=args.seed, night=args.night, lamp=args.lamp, n_bias=args.n_bias,
                          n_flat=args.n_flat, n_comp=args.n_comp, n_science=args.n_science, tilt=args.tilt)
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
