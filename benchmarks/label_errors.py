"""Label-error finder vs FiftyOne's baseline rule on the sample data (errors known from truth.json).

Generates the synthetic dataset (default 200 images), loads the simulated detector as run ``A``
(seed+1) and a second independent simulated detector as run ``B`` (seed+2), commits both, and prints
precision@k / recall@k (k = 10, 25, 50, 100) of

* ``baseline``: unmatched prediction with confidence > 0.95 = missing, every unmatched GT = spurious;
* ``loupe (1 run)``: ``run_a.suggest_label_errors()``;
* ``loupe (2 runs)``: ``run_a.suggest_label_errors(other_runs=[run_b])``;
* ``loupe (1 run, no txt_box)``: without the text-box check (``alt_box_field=None``), as on data that
  keeps one box per object.

Usage: ``python benchmarks/label_errors.py [--n 200] [--seed 0] [--out DIR] [--json]``
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.analysis.label_error_eval import KS, evaluate_ranking, fiftyone_baseline  # noqa: E402


def build(out: Path, n: int, seed: int):
    import sample_data

    from engine.cli.demo import build_demo
    from engine.io.predictions_json import read_predictions_json

    ws, ds, run_a = build_demo(out, n, None, seed=seed)
    sample_data.detect(out, seed=seed + 2)  # a second, independent detector (rewrites predictions.json)
    run_b = ws.get_model("simulated-detector").create_run("simulated-b", ds,
                                                          read_predictions_json(out / "predictions.json"))
    run_a.commit()
    run_b.commit()
    return ws, ds, run_a, run_b


def measure(out: Path, n: int, seed: int) -> dict:
    ws, ds, run_a, run_b = build(out, n, seed)
    truth = out / "truth.json"
    methods = {}
    t0 = time.perf_counter()
    methods["baseline (FiftyOne rule)"] = fiftyone_baseline(run_a)
    t1 = time.perf_counter()
    methods["loupe (1 run)"] = run_a.suggest_label_errors()
    t2 = time.perf_counter()
    methods["loupe (2 runs)"] = run_a.suggest_label_errors(other_runs=[run_b])
    t3 = time.perf_counter()
    methods["loupe (1 run, no txt_box)"] = run_a.suggest_label_errors(alt_box_field=None)
    t4 = time.perf_counter()
    res = {name: evaluate_ranking(t, truth) for name, t in methods.items()}
    for r in res.values():
        r.pop("hits")
    timings = {"baseline (FiftyOne rule)": t1 - t0, "loupe (1 run)": t2 - t1, "loupe (2 runs)": t3 - t2,
               "loupe (1 run, no txt_box)": t4 - t3}
    ws.close()
    return {"n_images": n, "seed": seed, "methods": res, "seconds": timings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="Keep the generated data here.")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="loupe-le-") as tmp:
        r = measure(a.out or Path(tmp), a.n, a.seed)
    if a.json:
        print(json.dumps(r, indent=1))
        return
    n_err = next(iter(r["methods"].values()))["n_errors"]
    print(f"sample data: {r['n_images']} images, seed {r['seed']}, {n_err} injected errors")
    print(f"{'method':<26}" + "".join(f"  P@{k:<4} R@{k:<4}" for k in KS) + "  suggestions  seconds")
    for name, m in r["methods"].items():
        cells = "".join(f"  {row['precision']:.2f}  {row['recall']:.2f} " for row in m["at_k"])
        print(f"{name:<26}{cells}  {m['n_suggestions']:>11}  {r['seconds'][name]:.3f}")
    print("\nrecall over the whole list, per injected error reason:")
    for name, m in r["methods"].items():
        print(f"  {name:<26} " + ", ".join(f"{k} {v['found']}/{v['total']}" for k, v in m["recall_by_reason"].items()))


if __name__ == "__main__":
    main()
