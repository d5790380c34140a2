"""CLI: ``python -m sample_data OUT_DIR [--n N] [--seed S] [--detector-seed D] [--no-predictions] [--pool N]``."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .detector import detect
from .generate import generate
from .pool import generate_pool


def main(argv: list[str] | None = None) -> int:
    """Generate the dataset (and simulated predictions) and print its summary."""
    ap = argparse.ArgumentParser(prog="python -m sample_data", description=__doc__)
    ap.add_argument("out_dir")
    ap.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    ap.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    ap.add_argument("--detector-seed", type=int, default=1, help="simulated detector seed (default 1)")
    ap.add_argument("--no-predictions", action="store_true", help="skip predictions.json")
    ap.add_argument("--pool", type=int, default=0, help="also write an unlabeled pool of N images to OUT_DIR/pool")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    info = generate(args.out_dir, n_images=args.n, seed=args.seed)
    t1 = time.perf_counter()
    n_pred = None if args.no_predictions else len(detect(args.out_dir, seed=args.detector_seed))
    if args.pool:
        pool = generate_pool(args.out_dir, n_generated=args.pool, seed=args.seed)
        if not args.no_predictions:
            detect(pool, seed=args.detector_seed)
    summary = dict(info.summary, predictions=n_pred, seconds=round(time.perf_counter() - t0, 2),
                   generate_seconds=round(t1 - t0, 2), out_dir=str(info.out_dir))
    json.dump(summary, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
