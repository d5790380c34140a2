"""Predictions keyed by reference id: ``[{"reference_id", "label", "bbox": [x, y, w, h], "score"}]``.

The COCO results layout, but naming items by ``reference_id`` and classes by label, so it works for
any dataset (the sample data's simulated detector writes it). Parsed by DuckDB's JSON reader.
"""
from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from ..errors import ValidationError


def read_predictions_json(path: str | Path) -> pa.Table:
    """The file as a predictions table (reference_id, kind, label, x, y, width, height, confidence)."""
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"predictions file not found: {p}")
    con = duckdb.connect()
    try:
        rel = con.sql(
            """SELECT reference_id::VARCHAR AS reference_id, 'box' AS kind, label::VARCHAR AS label,
                      bbox[1]::DOUBLE AS x, bbox[2]::DOUBLE AS y, bbox[3]::DOUBLE AS width, bbox[4]::DOUBLE AS height,
                      score::DOUBLE AS confidence
               FROM read_json($path, format = 'array',
                              columns = {reference_id: 'VARCHAR', label: 'VARCHAR', bbox: 'DOUBLE[]', score: 'DOUBLE'})""",
            params={"path": str(p)})
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    except duckdb.Error as e:
        raise ValidationError(f"cannot read predictions from {p}: {e}") from None
    finally:
        con.close()
