"""A process killed (SIGKILL) while committing leaves a workspace that reopens with a whole index."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import engine
from tests.oracle.coco_random import random_pair

LOOP = textwrap.dedent("""
    import sys, engine
    ws = engine.connect(sys.argv[1])
    run = ws.get_run("r")
    print("ready", flush=True)
    i = 0
    while True:
        run.commit(iou_threshold=(0.5, 0.75, 0.3)[i % 3])
        i += 1
""")


def test_kill_during_commit_then_reopen(tmp_path):
    gt, dets = random_pair(5, n_images=60, max_gt=10, max_dt=30)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(dets))
    db = tmp_path / "w.duckdb"
    with engine.connect(db) as ws:
        ws.import_coco(tmp_path / "gt.json", dataset="d", results=tmp_path / "res.json", run="r", clip="keep")
        ws.get_run("r").commit()
        n_objects = ws.sql("SELECT (SELECT count(*) FROM predictions) + (SELECT count(*) FROM annotations) AS n"
                           ).column("n")[0].as_py()
    for delay in (0.3, 0.9, 1.7):
        p = subprocess.Popen([sys.executable, "-c", LOOP, str(db)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        with engine.connect(db) as ws:  # reopens (WAL replayed or discarded), never half-written
            rows = ws.sql("SELECT iou_threshold, count(*) AS n FROM matches GROUP BY ALL").to_pylist()
            assert len(rows) == 1 and rows[0]["n"] == n_objects
            params = json.loads(ws.sql("SELECT params::VARCHAR AS p FROM runs").column("p")[0].as_py())
            assert params["iou_threshold"] == rows[0]["iou_threshold"]
            assert ws.sql("SELECT count(*) AS n FROM evaluations").column("n")[0].as_py() == 1
            state = ws.sql("SELECT n_rows FROM match_count_state").column("n_rows").to_pylist()
            thr = ws.sql("SELECT DISTINCT iou_threshold FROM item_match_counts").column("iou_threshold").to_pylist()
            assert state == [n_objects] and thr == [rows[0]["iou_threshold"]]  # the counts of that same index
