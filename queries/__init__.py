"""Loupe's query language: lark grammar -> typed sqlglot expressions. Never touches a database.

Example:
    >>> from queries import compile_query, OpenCatalog
    >>> compile_query('metadata.camera = "rear"', OpenCatalog()).sql()
"""
# Names are imported on first use (PEP 562): a module that needs one small part (``queries.fields``, read
# by a commit) must not load the compiler (lark, sqlglot's DuckDB dialect): name -> submodule.
_LAZY = {
    **dict.fromkeys(("Catalog", "MetadataSchema", "OpenCatalog", "RunInfo", "SliceInfo", "StaticCatalog"), ".catalog"),
    **dict.fromkeys(("CompiledQuery", "compile_query"), ".compiler"),
    **dict.fromkeys(("DIALECTS", "to_sql"), ".dialects"),
    **dict.fromkeys(("DSLError", "DSLNameError", "DSLSyntaxError", "DSLTypeError"), ".errors"),
    "parse": ".parser",
}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'queries' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "compile_query", "CompiledQuery", "parse", "to_sql", "DIALECTS",
    "Catalog", "StaticCatalog", "OpenCatalog", "MetadataSchema", "RunInfo", "SliceInfo",
    "DSLError", "DSLSyntaxError", "DSLNameError", "DSLTypeError",
]
