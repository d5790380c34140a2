"""Importers and exporters, one module per format, all feeding the same Arrow ingest path.

Each reader builds pyarrow tables column-wise and hands them to ``ds.append`` / ``ds.annotate`` /
``model.create_run`` inside one transaction (:func:`engine.io._common.write_import`), so a bad record
anywhere leaves the workspace unchanged.

    coco       COCO instances + results JSON (import and export)
    pennfudan  PennFudan layout (PNGImages/, PedMasks/, Annotation/); also the sample data
    voc        Pascal VOC XML
    yolo       YOLO txt (+ predictions with a confidence column)
    parquet    Parquet export of items / annotations / a run, and import back
"""
from ._common import ImportSummary
from .coco import export_coco, import_coco, import_coco_results
from .parquet import export_parquet, import_parquet
from .pennfudan import import_pennfudan
from .voc import import_voc
from .yolo import import_yolo

__all__ = ["ImportSummary", "import_coco", "import_coco_results", "export_coco", "import_pennfudan",
           "import_voc", "import_yolo", "export_parquet", "import_parquet"]
