"""Loupe's query language: lark grammar -> typed sqlglot expressions. Never touches a database.

Example:
    >>> from queries import compile_query, OpenCatalog
    >>> compile_query('metadata.camera = "rear"', OpenCatalog()).sql()
"""
from .catalog import Catalog, MetadataSchema, OpenCatalog, RunInfo, SliceInfo, StaticCatalog
from .compiler import CompiledQuery, compile_query
from .dialects import DIALECTS, to_sql
from .errors import DSLError, DSLNameError, DSLSyntaxError, DSLTypeError
from .parser import parse

__all__ = [
    "compile_query", "CompiledQuery", "parse", "to_sql", "DIALECTS",
    "Catalog", "StaticCatalog", "OpenCatalog", "MetadataSchema", "RunInfo", "SliceInfo",
    "DSLError", "DSLSyntaxError", "DSLNameError", "DSLTypeError",
]
