"""A seeded little world for DSL tests: a workspace built through the API and the same data as Python records.

Tests compute expected answers from the records with plain Python (never from our SQL), run the DSL
query, and compare. The data exercises the hard cases: labels with spaces and hyphens, nested and
missing metadata keys, a key holding numbers on some items and strings on others, JSON nulls, deleted
(versioned) annotations, category annotations, a committed run (matches rows written here, as a commit
would) and an uncommitted one.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import engine

LABELS = ["pedestrian", "car", "truck", "bus", "traffic light", "stop-sign"]
CAMERAS = ["front", "rear", "left", "rear view"]


@dataclass
class World:
    ws: Any
    ds: Any
    items: list[dict] = field(default_factory=list)  # reference_id, item_id, width, height, meta, anns, preds
    gt: list[dict] = field(default_factory=list)  # current GT objects with their match fields (run r1)
    preds: list[dict] = field(default_factory=list)  # r1 predictions with their match fields

    def refs(self, pred) -> list[str]:
        """reference_ids of items where ``pred(item)`` is True (None counts as not matching), dataset order."""
        return [it["reference_id"] for it in self.items if pred(it) is True]


def meta(it: dict, *path: str) -> Any:
    """The metadata value at ``path`` (None when missing or JSON null)."""
    v: Any = it["meta"]
    for p in path:
        if not isinstance(v, dict) or p not in v:
            return None
        v = v[p]
    return v


def num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def cmp(a: Any, op: str, b: Any) -> bool | None:
    """SQL comparison: NULL in, NULL out."""
    if a is None or b is None:
        return None
    return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def and3(*xs: bool | None) -> bool | None:
    if any(x is False for x in xs):
        return False
    return None if any(x is None for x in xs) else True


def or3(*xs: bool | None) -> bool | None:
    if any(x is True for x in xs):
        return True
    return None if any(x is None for x in xs) else False


def not3(x: bool | None) -> bool | None:
    return None if x is None else not x


def build(seed: int = 7, n_items: int = 120) -> World:
    rng = random.Random(seed)
    ws = engine.connect()
    ds = ws.create_dataset("world")
    w = World(ws, ds)
    items = []
    for k in range(n_items):
        m: dict[str, Any] = {"frame": k}
        if rng.random() < 0.9:
            m["camera"] = rng.choice(CAMERAS)
        r = rng.random()
        if r < 0.75:
            m["speed"] = rng.choice([rng.randint(0, 90), round(rng.uniform(0, 90), 2)])
        elif r < 0.85:
            m["speed"] = rng.choice(["fast", "slow", "50"])  # same key, string values
        if rng.random() < 0.8:
            m["weather"] = {"rain": None if rng.random() < 0.1 else round(rng.random(), 3), "fog": rng.random() < 0.3}
        if rng.random() < 0.5:
            m["time of day"] = rng.choice(["day", "dusk", "night"])
        if k % 17 == 0:
            m["tags"] = ["a", "b"]
        items.append(engine.DatasetItem(image_location=f"/img/{k:03d}.png", reference_id=f"it{k:03d}",
                                        metadata=m if k % 23 else None, width=640, height=480))
        w.items.append({"reference_id": f"it{k:03d}", "width": 640, "height": 480,
                        "meta": m if k % 23 else None, "anns": [], "preds": []})
    ds.append(items, check_images=False)

    anns = []
    for it in w.items:
        for j in range(rng.choice([0, 0, 1, 2, 3, 4, 5, 6, 8])):
            lab = rng.choices(LABELS, weights=[5, 4, 2, 1, 1, 1])[0]
            x, y = rng.uniform(0, 500), rng.uniform(0, 350)
            bw, bh = rng.uniform(4, 120), rng.uniform(4, 120)
            aid = f"{it['reference_id']}-g{j}"
            md = {"occluded": rng.random() < 0.3} if rng.random() < 0.5 else None
            anns.append(engine.BoxAnnotation(lab, it["reference_id"], annotation_id=aid, x=x, y=y, width=bw,
                                             height=bh, metadata=md))
            it["anns"].append({"annotation_id": aid, "kind": "box", "label": lab, "x": x, "y": y, "width": bw,
                               "height": bh, "area": bw * bh, "metadata": md, "iscrowd": False})
        if rng.random() < 0.15:
            aid = f"{it['reference_id']}-c"
            anns.append(engine.CategoryAnnotation("night", it["reference_id"], annotation_id=aid))
            it["anns"].append({"annotation_id": aid, "kind": "category", "label": "night", "x": None, "y": None,
                               "width": None, "height": None, "area": None, "metadata": None, "iscrowd": False})
    ds.annotate(anns)
    # a later label version deletes some annotations: they must disappear from every count
    doomed = [a["annotation_id"] for it in w.items for a in it["anns"] if a["kind"] == "box"][::11]
    ds.delete_annotations(doomed, reason="test")
    for it in w.items:
        it["anns"] = [a for a in it["anns"] if a["annotation_id"] not in set(doomed)]

    store = ws.store
    ids = dict(store.con.execute("SELECT reference_id, item_id FROM items WHERE dataset_id = ?", [ds.id]).fetchall())
    keys = dict(store.con.execute("SELECT annotation_id, ann_key FROM annotations WHERE valid_to IS NULL").fetchall())
    for it in w.items:
        it["item_id"] = ids[it["reference_id"]]
        for a in it["anns"]:
            a["ann_key"] = keys[a["annotation_id"]]

    # run r1: predictions, then a simulated commit (matches rows), r2 stays uncommitted
    model = ws.add_model("det")
    preds = []
    for it in w.items:
        boxes = [a for a in it["anns"] if a["kind"] == "box"]
        for j, a in enumerate(boxes):
            if rng.random() < 0.7:
                pid = f"{it['reference_id']}-p{j}"
                conf = round(rng.random(), 4)
                preds.append(engine.BoxPrediction(a["label"], it["reference_id"], annotation_id=pid,
                                                  x=a["x"], y=a["y"], width=a["width"], height=a["height"],
                                                  confidence=conf))
                it["preds"].append({"annotation_id": pid, "label": a["label"], "confidence": conf, "gt": a,
                                    "x": a["x"], "y": a["y"], "width": a["width"], "height": a["height"]})
        for j in range(rng.choice([0, 0, 1, 2])):
            pid = f"{it['reference_id']}-f{j}"
            conf = round(rng.random(), 4)
            lab = rng.choice(LABELS)
            bw, bh = rng.uniform(5, 50), rng.uniform(5, 50)
            preds.append(engine.BoxPrediction(lab, it["reference_id"], annotation_id=pid, x=1.0, y=2.0,
                                              width=bw, height=bh, confidence=conf))
            it["preds"].append({"annotation_id": pid, "label": lab, "confidence": conf, "gt": None,
                                "x": 1.0, "y": 2.0, "width": bw, "height": bh})
    model.create_run("r1", ds, preds)
    model.create_run("r2", ds, preds[: len(preds) // 2])
    pkeys = dict(store.con.execute(
        "SELECT p.annotation_id, p.pred_key FROM predictions p JOIN runs r USING (run_id) WHERE r.name = 'r1'").fetchall())
    rows = []
    for it in w.items:
        matched = {}
        for p in it["preds"]:
            p["pred_key"] = pkeys[p["annotation_id"]]
            p["area"] = p["width"] * p["height"]
            if p["gt"] is not None:
                p.update(status="tp", iou=round(rng.uniform(0.5, 1.0), 6), error_type=None, partner=p["gt"]["ann_key"])
                matched[p["gt"]["ann_key"]] = p
            else:
                p.update(status="fp", iou=None, error_type=rng.choice(["background", "localization"]), partner=None)
            rows.append((1, 0.5, "prediction", p["partner"], p["pred_key"], it["item_id"], p["iou"], p["iou"],
                         p["partner"], p["status"], p["error_type"]))
            w.preds.append(dict(p, reference_id=it["reference_id"], item_id=it["item_id"], source="prediction"))
        for a in it["anns"]:
            pm = matched.get(a["ann_key"])
            if a["kind"] != "box":  # not matched by the commit: no matches row
                a.update(status=None, iou=None, error_type=None)
            elif pm is not None:
                a.update(status="tp", iou=pm["iou"], error_type=None)
                rows.append((1, 0.5, "gt", a["ann_key"], pm["pred_key"], it["item_id"], pm["iou"], pm["iou"],
                             pm["pred_key"], "tp", None))
            else:
                a.update(status="fn", iou=None, error_type="missed")
                rows.append((1, 0.5, "gt", a["ann_key"], None, it["item_id"], None, None, None, "fn", "missed"))
            w.gt.append(dict(a, reference_id=it["reference_id"], item_id=it["item_id"], source="gt"))
    run_id = store.scalar("SELECT run_id FROM runs WHERE name = 'r1'")
    store.con.executemany("INSERT INTO matches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          [(run_id,) + r[1:] for r in rows])
    store.con.execute("UPDATE runs SET committed_at = now()::TIMESTAMP, label_version = ? WHERE run_id = ?",
                      [ds.label_version, run_id])
    return w
