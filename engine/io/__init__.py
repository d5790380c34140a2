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
# Names are imported on first use (PEP 562): importing one format (``loupe eval`` reads COCO only) must not
# load the others (pyarrow.parquet, XML, PNG readers).
_LAZY = {"ImportSummary": "._common", "export_coco": ".coco", "import_coco": ".coco",
         "import_coco_results": ".coco", "export_parquet": ".parquet", "import_parquet": ".parquet",
         "import_pennfudan": ".pennfudan", "import_voc": ".voc", "import_yolo": ".yolo"}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'engine.io' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


__all__ = ["ImportSummary", "import_coco", "import_coco_results", "export_coco", "import_pennfudan",
           "import_voc", "import_yolo", "export_parquet", "import_parquet"]
