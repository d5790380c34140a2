"""The PennFudan walk-through as one function: ingest → slices → run → commit → metrics → patches →
insights → label-error suggestions → corrected labels → re-evaluation → before/after table.

Two modes:

* **sample** (no path): generates the built-in synthetic street set (``sample_data``), whose
  ``truth.json`` knows every injected label error, uses its simulated detector as the model, and
  applies the truth file's corrections as the "corrected labels" (a new label version).
* **pennfudan** (a PennFudan-layout folder): the real images with OpenCV's HOG people detector as
  the model (``pip install 'loupe[hog]'``). There is no truth file, so the truth-based steps
  (suggestion precision, corrections, corrected metrics) are skipped and the report says so.

Every step prints one progress line; a step whose feature is not available in this build prints
``skipped: <feature> not available`` and the walk-through goes on, so it works as features land.
The result is a self-contained HTML report (:mod:`engine.report.html`) and the workspace file, which
stays for further exploration (``loupe sql --db ...``).
"""
from __future__ import annotations

import html
import importlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import LoupeError, NotFoundError
from engine.report.html import HtmlReport

Echo = Callable[[str], None]
ProgressFactory = Callable[[str], Callable[[int, int], None]]

TEST_FRACTION = 0.3
CROWDED_QUERY = "annotations.pedestrian >= 4"
STAT_KEYS = ("AP", "AP50", "AP75", "AR100")
SUGGESTIONS_TOP = 25
PATCH_LIMIT = 24
MARK = "loupe tutorial"      # datasets the tutorial made (and may replace) carry created_by = MARK


@dataclass
class Step:
    """One step of the walk-through: ``status`` is ``ok``, ``skipped`` or ``n/a`` (not for this mode)."""

    name: str
    status: str = "ok"
    detail: str = ""
    seconds: float = 0.0


@dataclass
class TutorialResult:
    """What :func:`run_tutorial` produced."""

    mode: str
    out_dir: Path
    report: Path
    db: str
    dataset: str
    run: str
    steps: list[Step] = field(default_factory=list)
    before_after: list[dict[str, Any]] = field(default_factory=list)
    label_versions: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> list[Step]:
        return [s for s in self.steps if s.status == "skipped"]


class Skip(Exception):
    """A step's feature is missing in this build."""


def feature(name: str, attr: str | None = None, obj: Any = None) -> Any:
    """A feature looked up at call time; raises :class:`Skip` (naming it) when this build lacks it.

    ``feature("engine.curation.corrections", "apply_truth_corrections")`` imports the module ``name`` and
    returns its ``attr``; with ``obj``, returns ``obj.attr`` and ``name`` is only the display name.
    """
    if obj is not None:
        f = getattr(obj, attr, None)
        if f is None:
            raise Skip(name)
        return f
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise Skip(f"{name}{'.' + attr if attr else ''}") from None
        raise
    if attr is None:
        return mod
    f = getattr(mod, attr, None)
    if f is None:
        raise Skip(f"{name}.{attr}")
    return f


def split_train_test(reference_ids: Sequence[str], seed: int = 0,
                     test_fraction: float = TEST_FRACTION) -> tuple[list[str], list[str]]:
    """A seeded random split of reference ids (sorted first, so the split depends only on the set)."""
    refs = np.array(sorted(map(str, reference_ids)), dtype=object)
    perm = np.random.default_rng(seed).permutation(len(refs))
    n_test = int(round(test_fraction * len(refs)))
    test = sorted(refs[perm[:n_test]].tolist())
    train = sorted(refs[perm[n_test:]].tolist())
    return train, test


def suggestion_patches(sug: pa.Table) -> pa.Table:
    """Suggestions as a patches-like table for :func:`engine.crops`: the object in question and the box
    the finder proposes (or the prediction behind it) as its partner; the reason stands in the caption."""
    n = sug.num_rows
    col = lambda c: sug.column(c) if c in sug.column_names else pa.nulls(n)  # noqa: E731
    on_gt = pc.is_valid(col("annotation_id"))
    short = {"missing_annotation": "missing", "spurious_gt": "spurious", "wrong_label": "wrong label",
             "loose_box": "loose box", "inconsistent_labeling": "inconsistent"}
    reasons = [short.get(r, r) for r in col("reason").to_pylist()]
    same_box = pa.array(np.ones(n, bool))
    for c in ("x", "y", "width", "height"):
        same_box = pc.and_(same_box, pc.fill_null(pc.equal(col(c), col(f"suggested_{c}")), False))
    partner = pc.and_(on_gt, pc.invert(same_box))
    pick = lambda c: pc.if_else(partner, col(f"suggested_{c}"), pa.nulls(n, pa.float64()))  # noqa: E731
    return pa.table({
        "source": pc.if_else(on_gt, "gt", "prediction"), "status": pa.array(reasons, pa.string()),
        "x": col("x"), "y": col("y"), "width": col("width"), "height": col("height"),
        "partner_x": pick("x"), "partner_y": pick("y"), "partner_width": pick("width"), "partner_height": pick("height"),
        "partner_status": pa.array(["fp"] * n, pa.string()), "image_location": col("image_location"),
        "reference_id": col("reference_id"), "annotation_id": pc.coalesce(col("annotation_id"), col("prediction_id")),
        "label": col("label"), "partner_label": col("suggested_label"), "iou": col("iou"),
        "confidence": col("confidence"),
    })


class Tutorial:
    """Runs the walk-through step by step, printing progress and filling an :class:`HtmlReport`."""

    def __init__(self, path: str | Path | None = None, out_dir: str | Path = "loupe-tutorial",
                 db: str | Path | None = None, n_images: int = 200, limit: int | None = None, seed: int = 0,
                 echo: Echo = print, progress: ProgressFactory | None = None):
        self.mode = "sample" if path is None else "pennfudan"
        self.path = Path(path) if path is not None else None
        self.out = Path(out_dir)
        self.db = str(db) if db is not None else str(self.out / "tutorial.duckdb")
        self.n_images = int(n_images)
        self.limit = limit
        self.seed = int(seed)
        self.echo = echo
        self.progress = progress
        self.dataset_name = "sample" if self.mode == "sample" else "pennfudan"
        self.run_name = "simulated" if self.mode == "sample" else "hog"
        self.steps: list[Step] = []
        self.report = HtmlReport(
            "Loupe walk-through: " + ("built-in sample data" if self.mode == "sample" else f"PennFudan ({self.path})"),
            "Where does the model fail, and why? How do we fix the dataset?")
        # state filled by the steps
        self.ws: Any = None
        self.ds: Any = None
        self.run: Any = None
        self.data_dir: Path | None = None
        self.train: list[str] = []
        self.test: list[str] = []
        self.slices: dict[str, Any] = {}
        self.baseline_version: int | None = None
        self.corrected_version: int | None = None
        self.before_after: list[dict[str, Any]] = []
        self.missing: list[str] = []
        self._compare_raw: pa.Table | None = None
        self.pool_dir: Path | None = None
        self.pool_refs: list[str] = []
        self.pool_scores: dict[str, Any] = {}

    # -- driver ------------------------------------------------------------------------------
    def steps_plan(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("data", self.step_data), ("ingest", self.step_ingest), ("slices", self.step_slices),
            ("model run", self.step_run), ("commit", self.step_commit), ("metrics", self.step_metrics),
            ("patches", self.step_patches), ("insights", self.step_insights),
            ("label-error suggestions", self.step_label_errors), ("corrected labels", self.step_corrections),
            ("re-commit", self.step_recommit), ("before/after", self.step_before_after),
            ("unlabeled pool: similar scenes", self.step_pool_similar),
            ("unlabeled pool: duplicates", self.step_pool_duplicates),
        ]

    def run_all(self) -> TutorialResult:
        import engine

        self.out.mkdir(parents=True, exist_ok=True)
        self.ws = engine.connect(self.db)
        plan = self.steps_plan()
        try:
            self._intro()
            for i, (name, fn) in enumerate(plan, 1):
                self.echo(f"[{i}/{len(plan)}] {name} ...")
                t0 = time.perf_counter()
                step = Step(name)
                try:
                    step.detail = fn() or ""
                except Skip as s:
                    step.status, step.detail = "skipped", f"{s} not available"
                    self.report.skipped(f"Skipped: {s} is not available in this build.")
                except _NotApplicable as s:
                    step.status, step.detail = "n/a", str(s)
                step.seconds = time.perf_counter() - t0
                self.steps.append(step)
                if step.status == "skipped":
                    self.echo(f"      skipped: {step.detail}")
                elif step.status == "n/a":
                    self.echo(f"      not applicable: {step.detail}")
                elif step.detail:
                    self.echo(f"      {step.detail} ({step.seconds:.1f} s)")
            self._outro()
            report = self.report.write(self.out / "report.html")
        finally:
            self.ws.close()
        self.echo(f"report: {report.resolve()}")
        self.echo(f"workspace: {self.db} (try: loupe sql --db {self.db} -c \"SELECT status, count(*) FROM matches "
                  f"GROUP BY ALL\")")
        return TutorialResult(self.mode, self.out, report, self.db, self.dataset_name, self.run_name, self.steps,
                              self.before_after, {k: v for k, v in (("baseline", self.baseline_version),
                                                                     ("corrected", self.corrected_version))
                                                  if v is not None}, self.missing)

    def _skip_part(self, what: str, why: str = "") -> None:
        """A part of a step that this build cannot do: say so on the console and in the report."""
        self.missing.append(what)
        self.echo(f"      skipped: {what} not available" + (f" ({why})" if why else ""))
        self.report.skipped(f"Skipped: {what} is not available" + (f" ({why})." if why else "."))

    def _progress(self, what: str) -> Callable[[int, int], None] | None:
        return self.progress(what) if self.progress is not None else None

    def _intro(self) -> None:
        r = self.report
        r.section("About this report")
        if self.mode == "sample":
            r.paragraph(f"Built-in synthetic street scenes ({self.n_images} images, seed {self.seed}) in PennFudan "
                        "layout, with label errors injected on purpose and recorded in truth.json, and a simulated "
                        "detector as the model. Because the truth is known, the report can check the label-error "
                        "suggestions and show how correcting the labels moves the metrics.")
        else:
            sub = f" (first {self.limit} images)" if self.limit else ""
            r.paragraph(f"Real PennFudan images from {self.path}{sub}, with OpenCV's HOG people detector "
                        "(Dalal & Triggs) as the model. There is no truth file for real data, so the steps that "
                        "need one (suggestion precision, applying corrections, corrected metrics) are skipped.")
        r.paragraph(f"Workspace: <code>{html.escape(self.db)}</code>. Every table below comes from the Python API calls shown "
                    "with it; the same numbers are available from the <code>loupe</code> CLI.", raw=True)

    def _outro(self) -> None:
        r = self.report
        r.section("Steps")
        r.table([{"step": s.name, "status": s.status, "detail": s.detail, "seconds": round(s.seconds, 2)}
                 for s in self.steps], max_rows=None)

    # -- 1. data -------------------------------------------------------------------------------
    def step_data(self) -> str:
        r = self.report
        r.section("1. Data")
        if self.mode == "sample":
            import sample_data

            self.data_dir = self.out / "sample_data"
            if self._sample_is_current():
                what = "reused"
            else:
                sample_data.generate(self.data_dir, n_images=self.n_images, seed=self.seed,
                                     progress=self._progress("render"))
                sample_data.detect(self.data_dir, seed=self.seed + 1)
                what = "generated"
            summary = json.loads((self.data_dir / "truth.json").read_text())["summary"]
            r.code(f"import sample_data\nsample_data.generate({str(self.data_dir)!r}, n_images={self.n_images}, "
                   f"seed={self.seed})\nsample_data.detect({str(self.data_dir)!r}, seed={self.seed + 1})")
            r.table([{"what": k, "count": v} for k, v in summary.items() if not isinstance(v, dict)],
                    caption="truth.json summary")
            r.table([{"error": k, "count": v} for k, v in summary.get("errors", {}).items()],
                    caption="label errors injected into the annotations")
            return f"{what} {self.n_images} images in {self.data_dir}"
        if self.path is None or not (self.path / "PNGImages").is_dir():
            raise LoupeError(f"{self.path} is not a PennFudan-layout folder (no PNGImages/)")
        self.data_dir = self._pennfudan_subset() if self.limit else self.path
        n = len(list((self.data_dir / "PNGImages").glob("*.png")))
        r.paragraph(f"PennFudan folder {self.path}: {n} images" + (f" (the first {self.limit}, linked from "
                    f"{self.data_dir})" if self.limit else "") + ".")
        return f"{n} images in {self.data_dir}"

    def _sample_is_current(self) -> bool:
        d = self.data_dir
        try:
            truth = json.loads((d / "truth.json").read_text())
        except (OSError, ValueError):
            return False
        return (truth.get("n_images") == self.n_images and truth.get("seed") == self.seed
                and (d / "predictions.json").is_file())

    def _pennfudan_subset(self) -> Path:
        """A folder of symlinks to the first ``limit`` images (sorted by name), masks and annotations."""
        names = sorted(p.stem for p in (self.path / "PNGImages").glob("*.png"))[: self.limit]
        sub = self.out / "pennfudan_subset"
        for d in ("PNGImages", "PedMasks", "Annotation"):
            (sub / d).mkdir(parents=True, exist_ok=True)
            for f in (sub / d).iterdir():
                f.unlink()
        for n in names:
            for d, fname in (("PNGImages", f"{n}.png"), ("PedMasks", f"{n}_mask.png"), ("Annotation", f"{n}.txt")):
                src = (self.path / d / fname).resolve()
                if src.exists():
                    os.symlink(src, sub / d / fname)
        return sub

    # -- 2. ingest -----------------------------------------------------------------------------
    def step_ingest(self) -> str:
        ws, r = self.ws, self.report
        if self.dataset_name in ws.list_datasets().column("name").to_pylist():
            old = ws.get_dataset(self.dataset_name)
            made_by = ws.store.scalar("SELECT metadata->>'created_by' FROM datasets WHERE dataset_id = ?", [old.id])
            if made_by != MARK:  # never delete a user's own dataset
                raise LoupeError(f"workspace {self.db} already has a dataset '{self.dataset_name}' that the tutorial "
                                 "did not create; pass another --db")
            ws.delete_dataset(self.dataset_name)
        self.ds = ws.create_dataset(self.dataset_name, metadata={"created_by": MARK})
        s = ws.import_pennfudan(self.data_dir, dataset=self.dataset_name, progress=self._progress("import"))
        self.baseline_version = self.ds.label_version
        info = self.ds.info()
        r.section("2. Ingest")
        r.code(f"import engine\nws = engine.connect({self.db!r})\n"
               f"ws.import_pennfudan({str(self.data_dir)!r}, dataset={self.dataset_name!r})")
        r.paragraph("Boxes are the tight boxes of the instance masks; the masks are kept as COCO RLE.")
        r.table([{"items": info["items"], "annotations": info["annotations"],
                  **{f"label {k}": v for k, v in info["labels"].items()}, "label version": info["label_version"]}])
        r.table(self.ds.annotations_per_item(), caption="annotations per item")
        return f"{s.items} items, {s.annotations} annotations (label version {self.baseline_version})"

    # -- 3. slices -----------------------------------------------------------------------------
    def step_slices(self) -> str:
        r = self.report
        self.train, self.test = split_train_test(self.ds.items().column("reference_id").to_pylist(), self.seed)
        r.section("3. Slices")
        r.paragraph(f"A seeded random split of the reference ids: {len(self.train)} train, {len(self.test)} test "
                    f"({TEST_FRACTION:.0%}); and a dynamic slice of crowded scenes from a query.")
        create = feature("Dataset.create_slice", "create_slice", obj=self.ds)
        self.slices["train"] = create("train", reference_ids=self.train)
        self.slices["test"] = create("test", reference_ids=self.test)
        r.code("ds.create_slice('train', reference_ids=train)\nds.create_slice('test', reference_ids=test)\n"
               f"ds.create_slice('crowded', query={CROWDED_QUERY!r})")
        try:
            self.slices["crowded"] = create("crowded", query=CROWDED_QUERY)
        except LoupeError as e:  # the query language may be missing in a partial build
            self._skip_part("the dynamic slice (query language)", str(e))
        r.table([{"slice": n, "kind": "dynamic" if getattr(s, "dynamic", False) else "static", "items": len(s)}
                 for n, s in self.slices.items()])
        return ", ".join(f"{n} {len(s)}" for n, s in self.slices.items())

    def _scope(self, name: str) -> Any:
        """What ``run.metrics(slice=...)`` takes for a slice: its name, or the ids when slices are missing."""
        if name in self.slices:
            return name
        return {"train": self.train, "test": self.test}.get(name)

    # -- 4. model run --------------------------------------------------------------------------
    def step_run(self) -> str:
        r = self.report
        r.section("4. Model run")
        if self.mode == "sample":
            from engine.io.predictions_json import read_predictions_json

            preds = read_predictions_json(self.data_dir / "predictions.json")
            model = self._model("simulated-detector", "simulated detector")
            self.run = model.create_run(self.run_name, self.ds, preds)
            r.code("from engine.io.predictions_json import read_predictions_json\n"
                   "model = ws.add_model('simulated detector', 'simulated-detector')\n"
                   f"run = model.create_run({self.run_name!r}, ds, read_predictions_json('predictions.json'))")
            return f"run '{self.run_name}': {preds.num_rows} predictions"
        hog = feature("engine.detectors.hog")
        try:
            hog.require_cv2()
        except LoupeError:
            raise Skip("the HOG detector (OpenCV: pip install 'loupe[hog]')") from None
        self.run, s = hog.run_hog(self.ds, self.run_name, progress=self._progress("hog"))
        r.code("from engine.detectors.hog import run_hog\n"
               f"run, summary = run_hog(ds, {self.run_name!r})   # OpenCV HOG + linear SVM people detector\n"
               f"# CLI: loupe predict hog {self.path} --db {self.db} --dataset {self.dataset_name} "
               f"--run {self.run_name}")
        r.paragraph(f"{s['predictions']} detections on {s['images']} images in {s['seconds']:.1f} s. "
                    "Confidence = logistic(SVM weight), in (0, 1); boxes are the detection windows without the "
                    "INRIA margin, clipped to the image.")
        return f"run '{self.run_name}': {s['predictions']} HOG detections on {s['images']} images in {s['seconds']:.1f} s"

    def _model(self, ref: str, name: str) -> Any:
        try:
            return self.ws.get_model(ref)
        except NotFoundError:
            return self.ws.add_model(name, ref)

    # -- 5. commit -----------------------------------------------------------------------------
    def step_commit(self) -> str:
        self._need_run()
        c = self.run.commit()
        self.report.section("5. Commit")
        self.report.code("run.commit(iou_threshold=0.5)   # match, index every object as TP / FP / FN")
        self.report.table([{k: c[k] for k in ("predictions", "ground_truth", "tp", "fp", "fn", "ignored")}])
        return f"TP {c['tp']}, FP {c['fp']}, FN {c['fn']}; AP {c['stats']['AP']:.3f}"

    def _need_run(self) -> None:
        if self.run is None:
            raise Skip("a model run (previous step)")

    # -- 6. metrics ----------------------------------------------------------------------------
    def metric_row(self, scope: str, label_version: int | None = None) -> dict[str, Any]:
        sl = None if scope == "all" else self._scope(scope)
        m = self.run.metrics(slice=sl, label_version=label_version)
        return {"scope": scope, **{k: m["stats"][k] for k in STAT_KEYS}, **m["counts"]}

    def step_metrics(self) -> str:
        self._need_run()
        r = self.report
        r.section("6. Metrics")
        r.code("run.metrics()                    # the 12 COCO stats (pycocotools-exact), per class, counts\n"
               "run.metrics(slice='test')\nrun.error_types()")
        scopes = ["all", "train", "test"] + (["crowded"] if "crowded" in self.slices else [])
        rows = [self.metric_row(s) for s in scopes]
        r.table(rows, caption="COCO stats overall and per slice (TP/FP/FN at IoU 0.5)", table_id="metrics")
        m = self.run.metrics()
        r.table(m["per_class"], caption="per class")
        r.table(self.run.error_types(), caption="error types (TIDE-style)")
        self._pr_chart()
        return f"AP {rows[0]['AP']:.3f} overall, " + ", ".join(f"{x['scope']} {x['AP']:.3f}" for x in rows[1:])

    def _pr_chart(self) -> None:
        try:
            Figure, Canvas = feature("engine.analysis.plots", "_matplotlib")()
        except (Skip, LoupeError):
            self._skip_part("PR-curve chart (matplotlib)", "pip install 'loupe[plots]'")
            return
        t = self.run.pr_curves().to_pylist()
        fig = Figure(figsize=(5, 3.6), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        for label in sorted({x["label"] for x in t}):
            for thr, style in ((0.5, "-"), (0.75, "--")):
                pts = [(x["recall"], x["precision"]) for x in t if x["label"] == label and abs(x["iou_threshold"] - thr) < 1e-9]
                if pts:
                    ax.plot(*zip(*pts), style, label=f"{label} @IoU {thr}")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall")
        ax.legend(fontsize=8)
        path = self.out / "charts" / "pr_curves.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Canvas(fig).print_png(str(path))
        self.report.image(path, "PR curves (101 recall points, pycocotools' interpolation)", width=500)

    # -- 7. patches ----------------------------------------------------------------------------
    def step_patches(self) -> str:
        self._need_run()
        r = self.report
        r.section("7. Patches: where the model fails")
        patches = feature("ModelRun.patches", "patches", obj=self.run)
        crops = feature("engine.analysis", "crops")
        r.paragraph("Crops show the object and its partner. Colours: GT green (missed GT orange), TP prediction "
                    "blue, FP prediction red, ignored grey.")
        views = [
            ("worst-IoU true positives", "tp_worst_iou", dict(status="tp", sort="iou", descending=False)),
            ("most confident false positives", "fp_top_confidence", dict(status="fp", sort="confidence", descending=True)),
            ("largest missed objects (false negatives)", "fn_largest", dict(status="fn", sort="area", descending=True)),
        ]
        said = []
        for title, folder, kw in views:
            t = patches(limit=PATCH_LIMIT, **kw)
            r.heading(f"{title} ({t.num_rows})")
            args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
            r.code(f"p = run.patches({args}, limit={PATCH_LIMIT})\nengine.crops(p, 'patches/{folder}')")
            if t.num_rows == 0:
                r.paragraph("(none)")
                continue
            written = crops(t, self.out / "patches" / folder)
            for s in written.filter(pc.equal(written.column("kind"), "sheet")).column("path").to_pylist():
                r.image(s, f"{title}: contact sheet")
            cols = [c for c in ("status", "error_type", "label", "partner_label", "iou", "best_iou", "confidence",
                                "area", "reference_id", "annotation_id") if c in t.column_names]
            r.table(t.select(cols), max_rows=10)
            said.append(f"{t.num_rows} {kw['status'].upper()}")
        return "crops and contact sheets: " + ", ".join(said)

    # -- 8. insights ---------------------------------------------------------------------------
    def step_insights(self) -> str:
        self._need_run()
        r = self.report
        r.section("8. Insights")
        insights = feature("Dataset.insights", "insights", obj=self.ds)
        tables = insights(run=self.run)
        r.code("tables = ds.insights(run=run)\nfrom engine.analysis.plots import save_charts\n"
               "save_charts(tables, 'charts')")
        for name in ("summary", "labels", "size_buckets", "per_class"):
            if name in tables:
                r.table(tables[name], caption=name, max_rows=20)
        try:
            save_charts = feature("engine.analysis.plots", "save_charts")
            paths = save_charts(tables, self.out / "charts")
        except (Skip, LoupeError) as e:
            self._skip_part("insight charts (matplotlib)", str(e))
            return f"{len(tables)} tables (charts skipped: matplotlib not available)"
        for p in paths:
            r.image(p, p.stem.replace("_", " "), width=540)
        return f"{len(tables)} tables, {len(paths)} charts"

    # -- 9. label errors -----------------------------------------------------------------------
    def step_label_errors(self) -> str:
        self._need_run()
        r = self.report
        r.section("9. Likely label errors")
        suggest = feature("ModelRun.suggest_label_errors", "suggest_label_errors", obj=self.run)
        sug = suggest()
        top = sug.slice(0, SUGGESTIONS_TOP)
        r.code(f"run.suggest_label_errors(limit={SUGGESTIONS_TOP})   # ranked by score, with a reason each")
        cols = [c for c in ("rank", "score", "reason", "reference_id", "annotation_id", "label", "suggested_label",
                            "confidence", "iou", "explanation") if c in top.column_names]
        r.table(top.select(cols), caption=f"top {top.num_rows} of {sug.num_rows} suggestions", max_rows=None)
        try:
            crops = feature("engine.analysis", "crops")
            written = crops(suggestion_patches(top), self.out / "patches" / "label_errors")
            for path in written.filter(pc.equal(written.column("kind"), "sheet")).column("path").to_pylist():
                r.image(path, "suggested label errors: the object in question (green GT / red prediction) and "
                              "the box the finder proposes")
        except (Skip, LoupeError, KeyError) as e:
            self._skip_part("suggestion crops", str(e))
        if self.mode != "sample":
            r.note("No truth file for real data: review these suggestions by eye, then correct the labels with "
                   "ds.correct(...) / ds.add_missing(...) (history is kept) and re-commit.")
            return f"{sug.num_rows} suggestions (no truth to score them against)"
        ev = feature("engine.analysis.label_error_eval")
        truth = self.data_dir / "truth.json"
        ours = ev.evaluate_ranking(sug, truth, ks=(10, SUGGESTIONS_TOP))
        base = ev.evaluate_ranking(ev.fiftyone_baseline(self.run), truth, ks=(10, SUGGESTIONS_TOP))
        rows = [{"ranking": name, **{f"{m}@{x['k']}": x[m] for x in res["at_k"] for m in ("precision", "recall")}}
                for name, res in (("suggest_label_errors", ours), ("FiftyOne rule (baseline)", base))]
        r.code("from engine.analysis.label_error_eval import evaluate_ranking, fiftyone_baseline\n"
               "evaluate_ranking(run.suggest_label_errors(), 'sample_data/truth.json')")
        r.table(rows, caption=f"against the {ours['n_errors']} errors injected into the labels (truth.json)",
                table_id="suggestion-score")
        r.json_block("suggestion-score-data", rows)
        at = {x["k"]: x for x in ours["at_k"]}[SUGGESTIONS_TOP]
        return f"top {SUGGESTIONS_TOP}: precision {at['precision']:.2f}, recall {at['recall']:.2f} vs truth.json"

    # -- 10. corrections -----------------------------------------------------------------------
    def step_corrections(self) -> str:
        r = self.report
        r.section("10. Corrected labels")
        if self.mode != "sample":
            r.skipped("Not applicable on real data: there is no truth file to take corrections from.")
            raise _NotApplicable("no truth file for real data")
        apply = feature("engine.curation.corrections", "apply_truth_corrections")
        res = apply(self.ds, self.data_dir / "truth.json")
        self.corrected_version = int(res.get("label_version", self.ds.label_version))
        r.code("from engine.curation.corrections import apply_truth_corrections\n"
               "apply_truth_corrections(ds, 'sample_data/truth.json')   # one new label version; history kept")
        r.table(self.ds.label_versions(), caption="label versions")
        changes = getattr(self.ds, "label_changes", None)
        if changes is not None:
            log = changes(self.corrected_version)
            cols = [c for c in ("reference_id", "annotation_id", "action", "fields", "old_label", "new_label", "reason")
                    if c in log.column_names]
            r.table(log.select(cols), caption=f"changes in version {self.corrected_version}", max_rows=15)
        counts = {k: v for k, v in res.items() if isinstance(v, int) and k != "label_version"}
        return f"label version {self.baseline_version} → {self.corrected_version} " + json.dumps(counts)

    # -- 11. re-commit -------------------------------------------------------------------------
    def step_recommit(self) -> str:
        r = self.report
        r.section("11. Re-commit against the corrected labels")  # numbered like the console's steps
        if self.corrected_version is None:
            r.skipped("Not applicable: there are no corrected labels to commit against.")
            raise _NotApplicable("no corrected labels")
        c = self.run.commit(label_version=self.corrected_version)
        r.code(f"run.commit(label_version={self.corrected_version})")
        r.table([{k: c[k] for k in ("predictions", "ground_truth", "tp", "fp", "fn", "ignored")}])
        return f"TP {c['tp']}, FP {c['fp']}, FN {c['fn']}; AP {c['stats']['AP']:.3f}"

    # -- 12. before/after ----------------------------------------------------------------------
    def step_before_after(self) -> str:
        self._need_run()
        r = self.report
        r.section("12. Before / after")
        versions = [("baseline labels", self.baseline_version)]
        if self.corrected_version is not None:
            versions.append(("corrected labels", self.corrected_version))
        scopes = (("test", "test set"), ("all", "train+test"))
        raw = self._compare(versions)
        rows = []
        for name, v in versions:
            row: dict[str, Any] = {"labels": name, "label_version": v}
            for scope, title in scopes:
                m = raw[(scope, name)] if raw is not None else self.metric_row(scope, label_version=v)
                for k in ("AP", "AP50", "AR100"):
                    row[f"{title} {k}"] = m[k]
            rows.append(row)
        self.before_after = rows
        if raw is not None:
            r.code("engine.compare(ds, run, label_versions={'baseline labels': %s, 'corrected labels': %s},\n"
                   "               slices=['test', None])   # None = all items (train+test)"
                   % (self.baseline_version, self.corrected_version))
        else:
            r.code("for v in (baseline, corrected):\n"
                   "    run.metrics(slice='test', label_version=v); run.metrics(label_version=v)")
        r.table(rows, table_id="before-after", max_rows=None, digits=4)
        r.json_block("before-after-data", rows)
        if raw is not None:
            r.table(self._compare_raw, max_rows=None, digits=4,
                    caption="engine.compare(...) as returned: every (slice, label state), deltas to the baseline")
        if len(rows) == 1:
            r.skipped("Only the baseline row: the corrected-labels row needs a truth file (sample data).")
        else:
            d = rows[1]["train+test AP"] - rows[0]["train+test AP"]
            r.paragraph(f"Correcting the labels moves AP on train+test by {d:+.4f}: the model was right about "
                        "objects the labels got wrong (missing pedestrians, wrong classes), which the baseline "
                        "labels counted as its errors.")
        return " | ".join(f"{x['labels']}: test AP {x['test set AP']:.3f}, all AP {x['train+test AP']:.3f}"
                          for x in rows)

    def _compare(self, versions: list[tuple[str, int | None]]) -> dict[tuple[str, str], dict[str, Any]] | None:
        """``{(scope, labels): stats}`` from ``engine.compare`` (its full table goes in the report), or None
        when this build has no ``engine.compare`` (the step then calls ``run.metrics`` itself)."""
        compare = getattr(importlib.import_module("engine"), "compare", None)
        if compare is None:
            self._skip_part("engine.compare", "the table is computed with run.metrics")
            return None
        test = "test" if "test" in self.slices else ("test", self.test)
        t = compare(self.ds, self.run, label_versions=dict(versions), slices=[test, None],
                    metrics=("AP", "AP50", "AR100"))
        self._compare_raw = t.drop_columns([c for c in ("run",) if c in t.column_names])
        return {(row["slice"], row["labels"]): row for row in t.to_pylist()}


    # -- 13. unlabeled pool: similar scenes ---------------------------------------------------------
    def pool_size(self) -> int:
        """Generated pool images: as many as labeled ones, between 10 and 300."""
        return int(min(300, max(10, self.n_images)))

    def step_pool_similar(self) -> str:
        if self.mode != "sample":
            raise _NotApplicable("the unlabeled pool is part of the sample data")
        self._need_run()
        import sample_data

        from engine.report import pool_scenario as ps

        feature("Dataset.similar", "similar", obj=self.ds)
        compute = feature("Dataset.compute_embeddings", "compute_embeddings", obj=self.ds)
        r = self.report
        r.section("13. The unlabeled pool: find more crowded scenes from one example")
        self.pool_dir = sample_data.generate_pool(self.data_dir, n_generated=self.pool_size(), seed=self.seed,
                                                  test_ids=self.test, progress=self._progress("pool"))
        model = self._model("simulated-detector", "simulated detector")
        self.pool_refs, pool_run = ps.add_pool(self.ds, self.pool_dir, model, detector_seed=self.seed + 1)
        truth = ps.pool_truth(self.pool_dir)
        positives = set(truth["crowded"])
        meta = json.loads((self.data_dir / "metadata.json").read_text())
        sets = {}
        try:
            compute(model="efficientnet-lite0", name="effnet", progress=self._progress("embed") or False)
            sets["effnet"] = "EfficientNet-Lite0"
        except LoupeError as e:
            self._skip_part("the EfficientNet-Lite0 embedder", str(e))
        compute(model="phash", name="phash", progress=self._progress("phash") or False)
        sets["phash"] = "pHash"
        crowded_train = [x for x in self.train if meta[x]["crowd"] >= truth["crowded_threshold"]]
        examples = ps.crowded_examples(meta, crowded_train or self.train, 3)
        n = len(self.pool_refs)
        rankings: dict[str, list[str]] = {}
        for name, title in sets.items():
            rankings[f"similar to {examples[0]} ({title})"] = ps.similarity_ranking(self.ds, examples[0], name, n)
        if "effnet" in sets and len(examples) > 1:
            rankings[f"similar to {len(examples)} crowded images (EfficientNet-Lite0)"] = ps.similarity_ranking(
                self.ds, examples, "effnet", n)
        rankings[f"DSL: {ps.PREDICTION_QUERY} (by predicted pedestrians)"] = ps.prediction_count_ranking(self.ds, pool_run)
        rows = ps.rank_scores(rankings, self.pool_refs, positives, seed=self.seed)
        if "effnet" in sets and crowded_train:  # every crowded train image as the one example, averaged
            each = [ps.precision_at(ps.similarity_ranking(self.ds, q, "effnet", n), positives) for q in crowded_train]
            rows.insert(len(sets), {"ranking": f"similar to one crowded image, mean over {len(each)} (EfficientNet-Lite0)",
                                    "ranked": n, **{f"precision@{k}": float(np.mean([e[k] for e in each]))
                                                    for k in ps.KS}})
        self.pool_scores["crowded"] = rows
        r.paragraph(f"{n} unlabeled street images join the dataset ({truth['summary']['generated']} generated, "
                    f"{len(positives)} of them crowded, i.e. at least {truth['crowded_threshold']} people; and "
                    f"{truth['summary']['duplicates']} planted near-duplicates of labeled images). Starting from "
                    f"the most crowded labeled training image, {examples[0]}, we rank the pool by similarity and "
                    "count how many of the top 20 / 50 are really crowded (the pool's truth.json knows).")
        r.code(f"sample_data.generate_pool('sample_data', n_generated={self.pool_size()}, test_ids=test)\n"
               "ds.append(pool_items); ds.create_slice('pool', reference_ids=pool_ids)\n"
               "ds.compute_embeddings('efficientnet-lite0', name='effnet')\n"
               f"ds.similar({examples[0]!r}, k=50, embeddings='effnet', slice='pool')\n"
               f"ds.query('slice(\"pool\") AND {ps.PREDICTION_QUERY}', run=pool_run, "
               "order_by='predictions.pedestrian DESC')")
        r.table(rows, caption="precision@k for 'crowded' among the pool's top-ranked items", table_id="pool-crowded",
                max_rows=None, digits=3)
        r.json_block("pool-crowded-data", rows)
        best = rows[0]
        return (f"{n} pool items; {best['ranking']}: P@20 {best['precision@20']:.2f}, P@50 {best['precision@50']:.2f} "
                f"(random {rows[-2]['precision@20']:.2f})")

    # -- 14. unlabeled pool: duplicates --------------------------------------------------------------
    def step_pool_duplicates(self) -> str:
        if self.mode != "sample":
            raise _NotApplicable("the unlabeled pool is part of the sample data")
        if self.pool_dir is None:
            raise Skip("the unlabeled pool (previous step)")
        from engine.report import pool_scenario as ps

        find = feature("Dataset.find_duplicates", "find_duplicates", obj=self.ds)
        r = self.report
        r.section("14. The unlabeled pool: near-duplicates of labeled images")
        truth = ps.pool_truth(self.pool_dir)
        planted = ps.planted_pairs(truth)
        leaks = feature("Dataset.leaky_splits", "leaky_splits", obj=self.ds)
        methods = [("pHash, Hamming <= 10", dict(method="phash", max_hamming=10))]
        if "effnet" in self.ds.embeddings().column("name").to_pylist():
            methods += [(f"EfficientNet-Lite0, cosine distance <= {d}", dict(method=None, embeddings="effnet",
                                                                            max_distance=d))
                        for d in ps.EFFNET_DUP_DISTANCES]
        rows, leak_rows = [], []
        for what, kw in methods:
            groups = find(**kw)
            rows.append({"method": what, **ps.duplicate_scores(groups, planted),
                         "missed": ps.missed_transforms(ps.duplicate_pairs(groups), truth)})
            pairs = leaks("test", "pool", **kw)
            leak_rows.append({"method": what, **ps.leak_scores(pairs, truth),
                              "missed": ps.missed_transforms(ps.leak_pairs(pairs), truth, split="test")})
        self.pool_scores["duplicates"] = rows
        self.pool_scores["leaks"] = leak_rows
        r.paragraph(f"{len(planted)} near-duplicates of labeled images were planted in the pool (JPEG re-encoded, "
                    "half size, cropped to 85 %, brightened, mirrored); "
                    f"{truth['summary']['duplicates_of_test']} of them copy test images, so labeling them into "
                    "the training set would leak the test set. Precision: found pairs that were planted; "
                    "recall: planted pairs found.")
        r.code("ds.find_duplicates(method='phash', max_hamming=10)\n"
               f"ds.find_duplicates(embeddings='effnet', max_distance={ps.EFFNET_DUP_DISTANCES[-1]})\n"
               "ds.leaky_splits('test', 'pool', method='phash', max_hamming=10)")
        r.table(rows, caption="duplicate groups over the whole dataset against the planted pairs",
                table_id="pool-duplicates", max_rows=None, digits=3)
        r.json_block("pool-duplicates-data", rows)
        r.table(leak_rows, caption="leak check test vs pool against the planted copies of test images",
                table_id="pool-leaks", max_rows=None, digits=3)
        r.json_block("pool-leaks-data", leak_rows)
        return " | ".join(f"{x['method']}: precision {x['precision']:.2f}, recall {x['recall']:.2f}" for x in rows)


class _NotApplicable(Exception):
    """A step that does not apply to this mode (e.g. truth-based steps on real data)."""


def run_tutorial(path: str | Path | None = None, out_dir: str | Path = "loupe-tutorial", db: str | Path | None = None,
                 n_images: int = 200, limit: int | None = None, seed: int = 0, echo: Echo = print,
                 progress: ProgressFactory | None = None) -> TutorialResult:
    """Run the whole walk-through and write ``out_dir/report.html``.

    Args:
        path: a PennFudan-layout folder (HOG detector as the model); None = the built-in sample data.
        out_dir: where the sample data, crops, charts, the report and (by default) the workspace go.
        db: workspace file (default ``out_dir/tutorial.duckdb``); its tutorial dataset is replaced.
        n_images: sample images to generate (sample mode).
        limit: only the first N PennFudan images (sorted by name).
        seed: sample-data seed and train/test split seed.

    Example:
        >>> res = run_tutorial(out_dir="tut", n_images=60)
        >>> res.report, [s.name for s in res.skipped]
    """
    if limit is not None and limit < 1:
        raise LoupeError("limit must be >= 1")
    if n_images < 1:
        raise LoupeError("n_images must be >= 1")
    return Tutorial(path, out_dir, db, n_images, limit, seed, echo, progress).run_all()
