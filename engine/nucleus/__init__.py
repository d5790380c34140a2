"""Scale Nucleus client compatibility: run ``nucleus-python-client`` code unchanged, offline.

``from engine import nucleus`` gives ``NucleusClient`` and the client's record classes with the same names,
argument names and order; everything is stored in a local Loupe workspace (the API key is ignored).
Features that exist only as a Scale service raise :class:`NotAvailableOffline`. See docs/nucleus.md.

Example:
    >>> from engine import nucleus
    >>> client = nucleus.NucleusClient(api_key="unused", path="pennfudan.duckdb")
    >>> ds = client.create_dataset("PennFudan")
    >>> ds.append([nucleus.DatasetItem(image_location="img/1.png", reference_id="1")])
"""
from .client import NucleusClient
from .dataset import Dataset, DatasetInfo, Slice, UploadResponse
from .model import Model, ModelRun
from .offline import NotAvailableOffline
from .records import (BoxAnnotation, BoxPrediction, CategoryAnnotation, CategoryPrediction, DatasetItem, Keypoint,
                      KeypointsAnnotation, KeypointsPrediction, Point, PolygonAnnotation, PolygonPrediction, Segment,
                      SegmentationAnnotation, SegmentationPrediction)

__all__ = [
    "NucleusClient", "Dataset", "DatasetInfo", "Slice", "UploadResponse", "Model", "ModelRun",
    "NotAvailableOffline", "DatasetItem", "Point", "Keypoint", "Segment", "BoxAnnotation", "PolygonAnnotation",
    "KeypointsAnnotation", "SegmentationAnnotation", "CategoryAnnotation", "BoxPrediction", "PolygonPrediction",
    "KeypointsPrediction", "SegmentationPrediction", "CategoryPrediction",
]
