"""Query execution: the DSL's catalog over DuckDB (``catalog``), compile-and-run (``runner``), and the
in-memory Arrow copies that answer repeated queries (``copies``, ``item_cache``, ``object_cache``,
``object_scan``). The language itself lives in the top-level ``queries`` package."""
