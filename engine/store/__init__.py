"""The store: the workspace file and its connections (``database``), the schema (``schema.sql``), the UDFs
registered on every connection (``udf_registry``) and the derived tables kept beside the data in the same
transactions (``label_counts``, ``item_values``, ``match_counts``, refreshed by ``derived``).

The store publishes ``generation`` (moved by every write); caches elsewhere check it, the store imports none.
"""
from .database import Store

__all__ = ["Store"]
