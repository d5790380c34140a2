"""The query language on Spark: item and object queries and dynamic slices over a table export.

Queries compile from the DSL's own tree (``queries.compile_query`` builds sqlglot expressions against
a catalog read with Spark) and are printed by :class:`LoupeSpark`, sqlglot's Spark dialect with
Loupe's few DuckDB-only nodes given Spark equivalents — never by transpiling finished DuckDB SQL:

* ``json_type(json_extract(col, path))`` (the guard of a metadata key holding mixed types) becomes
  the type of ``variant_get(try_parse_json(col), path)`` mapped to DuckDB's type names;
* ``TRY_CAST`` stays a ``TRY_CAST`` (Spark's dialect prints a plain CAST, which fails under ANSI mode).

Queries read the base tables only (``derived=False``: no per-item count tables on Spark), and the
export's tables are registered as temporary views under their workspace names.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
from sqlglot import exp
from sqlglot.dialects.spark import Spark
from sqlglot.generators.spark import SparkGenerator

from queries import Catalog, MetadataSchema, RunInfo, SliceInfo, compile_query

from ..errors import LoupeError, NotFoundError
from .tables import TablesDir

VIEWS = ("items", "annotations", "predictions", "matches", "runs", "datasets", "models", "slices", "slice_items",
         "slice_objects")

# variant schema names (schema_of_variant) -> DuckDB json_type names, which the compiled guards test
_VARIANT_TYPES = [("BIGINT", "BIGINT"), ("INT", "BIGINT"), ("SMALLINT", "BIGINT"), ("TINYINT", "BIGINT"),
                  ("DOUBLE", "DOUBLE"), ("FLOAT", "DOUBLE"), ("STRING", "VARCHAR"), ("BOOLEAN", "BOOLEAN"),
                  ("VOID", "NULL")]


def _json_type(gen: "_LoupeSparkGenerator", arg: exp.Expression) -> str:
    """DuckDB's ``json_type`` of a JSON path, from Spark's variant type of the same value."""
    path = gen.sql(arg.expression) if isinstance(arg, (exp.JSONExtract, exp.JSONExtractScalar)) else "'$'"
    col = arg.this if isinstance(arg, (exp.JSONExtract, exp.JSONExtractScalar)) else arg
    value = exp.Anonymous(this="variant_get", expressions=[
        exp.Anonymous(this="try_parse_json", expressions=[col.copy()]), exp.Literal.string(_path_text(path))])
    s = exp.Anonymous(this="schema_of_variant", expressions=[value])
    ifs = [exp.If(this=exp.Like(this=s.copy(), expression=exp.Literal.string("DECIMAL%")),
                  true=exp.Literal.string("DOUBLE"))]
    ifs += [exp.If(this=exp.EQ(this=s.copy(), expression=exp.Literal.string(v)), true=exp.Literal.string(d))
            for v, d in _VARIANT_TYPES]
    ifs += [exp.If(this=exp.Like(this=s.copy(), expression=exp.Literal.string(p + "%")), true=exp.Literal.string(d))
            for p, d in (("OBJECT", "OBJECT"), ("ARRAY", "ARRAY"))]
    return gen.sql(exp.Case(ifs=ifs))


def _path_text(sql_literal: str) -> str:
    """The path text of the generated JSONPath literal ('$.a' -> $.a)."""
    s = sql_literal.strip()
    if len(s) >= 2 and s[0] == "'" and s[-1] == "'":
        s = s[1:-1].replace("\\'", "'")
    return s


class _LoupeSparkGenerator(SparkGenerator):
    TRANSFORMS = {**SparkGenerator.TRANSFORMS, exp.TryCast: lambda self, e: self.trycast_sql(e)}

    def with_sql(self, expression: exp.With) -> str:
        """One definition per CTE name: a slice inlined into a query may repeat an identical CTE, which
        DuckDB accepts and Spark rejects (DUPLICATED_CTE_NAMES); differing definitions are left to fail."""
        seen: dict[str, str] = {}
        keep = []
        for cte in expression.expressions:
            body = cte.this.sql()
            if seen.get(cte.alias) == body:
                continue
            seen.setdefault(cte.alias, body)
            keep.append(cte)
        if len(keep) != len(expression.expressions):
            expression = expression.copy()
            expression.set("expressions", [c.copy() for c in keep])
        return super().with_sql(expression)

    def div_sql(self, expression: exp.Div) -> str:
        """a / b with DuckDB's IEEE answers for a zero divisor (±inf, NaN for 0 / 0) where Spark gives NULL
        or fails under ANSI mode: a * inf, negated for a divisor of -0.0."""
        if expression.meta.get("loupe_plain"):
            return super().div_sql(expression)
        plain = expression.copy()
        plain.meta["loupe_plain"] = True
        e = plain
        a, b = e.this, e.expression
        inf = exp.Cast(this=exp.Literal.string("Infinity"), to=exp.DataType.build("double"))
        neg = exp.Like(this=exp.Cast(this=b.copy(), to=exp.DataType.build("string")),
                       expression=exp.Literal.string("-%"))
        sign = exp.Case(ifs=[exp.If(this=neg, true=exp.Literal.number(-1))], default=exp.Literal.number(1))
        at_zero = exp.Mul(this=exp.Mul(this=exp.Paren(this=a.copy()), expression=inf), expression=sign)
        case = exp.Case(ifs=[exp.If(this=exp.EQ(this=b.copy(), expression=exp.Literal.number(0)), true=at_zero)],
                        default=plain)
        return self.sql(exp.Paren(this=case))

    def anonymous_sql(self, expression: exp.Anonymous) -> str:
        if str(expression.this).lower() == "json_type" and len(expression.expressions) == 1:
            return _json_type(self, expression.expressions[0])
        return super().anonymous_sql(expression)


class LoupeSpark(Spark):
    """Spark SQL for compiled DSL trees."""

    generator_class = _LoupeSparkGenerator


def to_spark_sql(expression: exp.Expression) -> str:
    return expression.sql(dialect=LoupeSpark)


class SparkCatalog(Catalog):
    """Names a query may use, read from the export with Spark (labels, metadata types, runs, slices)."""

    def __init__(self, spark: Any, dataset_id: int):
        self.spark = spark
        self.dataset_id = dataset_id
        self._memo: dict[str, Any] = {}

    def _sql(self, query: str) -> list[Any]:
        return self.spark.sql(query).collect()

    def _get(self, key: str, load) -> Any:
        if key not in self._memo:
            self._memo[key] = load()
        return self._memo[key]

    def labels(self) -> frozenset[str]:
        ds = int(self.dataset_id)
        return self._get("labels", lambda: frozenset(r[0] for r in self._sql(
            f"""SELECT DISTINCT label FROM annotations WHERE dataset_id = {ds} AND valid_to IS NULL
                UNION SELECT DISTINCT label FROM predictions
                WHERE run_id IN (SELECT run_id FROM runs WHERE dataset_id = {ds})""")))

    def item_metadata(self) -> MetadataSchema:
        ds = int(self.dataset_id)
        return self._get("item", lambda: self._schema(
            f"SELECT DISTINCT metadata FROM items WHERE dataset_id = {ds} AND metadata IS NOT NULL"))

    def object_metadata(self) -> MetadataSchema:
        ds = int(self.dataset_id)
        return self._get("object", lambda: self._schema(
            f"""SELECT DISTINCT metadata FROM annotations WHERE dataset_id = {ds} AND valid_to IS NULL
                  AND metadata IS NOT NULL
                UNION SELECT DISTINCT metadata FROM predictions
                WHERE run_id IN (SELECT run_id FROM runs WHERE dataset_id = {ds}) AND metadata IS NOT NULL"""))

    def _schema(self, query: str) -> MetadataSchema:
        """Paths and JSON types of the distinct metadata values, walked on the workers (small output)."""
        out = "path STRING, type STRING"

        def walk(batches):
            for b in batches:
                types = MetadataSchema.from_values(v for v in b.column(0).to_pylist() if v is not None)
                rows = [(json.dumps(list(p)), t) for p in types.paths() for t in sorted(types.types(p))]
                yield pa.RecordBatch.from_pydict({"path": [r[0] for r in rows], "type": [r[1] for r in rows]})

        rows = self.spark.sql(query).mapInArrow(walk, out).distinct().collect()
        acc: dict[tuple, set[str]] = {}
        for r in rows:
            acc.setdefault(tuple(json.loads(r["path"])), set()).add(r["type"])
        return MetadataSchema(acc)

    def runs(self) -> Mapping[str, RunInfo]:
        return self._get("runs", self._load_runs)

    def _load_runs(self) -> dict[str, RunInfo]:
        ds = int(self.dataset_id)
        rows = self._sql(
            f"""SELECT r.name, r.run_id, r.params, r.label_version <=> d.label_version AS current,
                       (SELECT collect_set(m.iou_threshold) FROM matches m WHERE m.run_id = r.run_id) AS thresholds
                FROM runs r JOIN datasets d ON d.dataset_id = r.dataset_id WHERE r.dataset_id = {ds}""")
        from engine.execution.catalog import _threshold

        return {r["name"]: RunInfo(r["name"], int(r["run_id"]), _threshold(r["params"], r["thresholds"] or []),
                                   bool(r["current"])) for r in rows}

    def slices(self) -> Mapping[str, SliceInfo]:
        ds = int(self.dataset_id)
        return self._get("slices", lambda: {r[0]: SliceInfo(r[0], int(r[1]), r[2], r[3], r[4]) for r in self._sql(
            f"""SELECT s.name, s.slice_id, s.kind, s.query, r.name FROM slices s
                LEFT JOIN runs r ON r.run_id = s.run_id WHERE s.dataset_id = {ds}""")})


class SparkQueries:
    """DSL queries over a table export: ``items(dataset, dsl)``, ``objects(dataset, dsl, run=...)``,
    ``slice(dataset, name)`` (a dynamic slice re-evaluated on Spark). Results are ``pyarrow.Table``s."""

    def __init__(self, spark: Any, tables_dir: str | Path, cache: bool = False):
        """``cache`` keeps the tables in Spark's memory (many queries over a small export)."""
        self.spark = spark
        self.src = TablesDir.open(tables_dir)
        for name in VIEWS:
            p = self.src.root / name
            path = p if p.is_dir() else self.src.root / f"{name}.parquet"
            if path.exists():
                df = spark.read.parquet(str(path))
                (df.cache() if cache else df).createOrReplaceTempView(name)
        self._catalogs: dict[int, SparkCatalog] = {}

    def catalog(self, dataset: str) -> SparkCatalog:
        ds_id, _ = self.src.dataset(dataset)
        if ds_id not in self._catalogs:
            self._catalogs[ds_id] = SparkCatalog(self.spark, ds_id)
        return self._catalogs[ds_id]

    def sql(self, dataset: str, dsl: str, target: str = "items", run: str | None = None,
            order_by: str | None = None, limit: int | None = None, offset: int | None = None) -> str:
        """The Spark SQL of a query (compiled from the DSL tree against the export's catalog)."""
        cat = self.catalog(dataset)
        if run is not None and run not in cat.runs():
            raise NotFoundError(f"no run named '{run}' on dataset '{dataset}' in {self.src.root}")
        from engine.execution.runner import dsl_errors

        compiled = dsl_errors(compile_query)(dsl, cat, target=target, run=run, order_by=order_by, limit=limit,
                                             offset=offset)
        return to_spark_sql(compiled.expression)

    def _run(self, sql: str) -> pa.Table:
        try:
            return self.spark.sql(sql).toArrow()
        except Exception as e:  # Spark analysis / runtime errors
            raise LoupeError(f"query failed on Spark: {str(e).splitlines()[0]}") from None

    def items(self, dataset: str, dsl: str, run: str | None = None, order_by: str | None = None,
              limit: int | None = None, offset: int | None = None) -> pa.Table:
        return self._run(self.sql(dataset, dsl, "items", run, order_by, limit, offset))

    def objects(self, dataset: str, dsl: str, run: str | None = None, order_by: str | None = None,
                limit: int | None = None, offset: int | None = None) -> pa.Table:
        return self._run(self.sql(dataset, dsl, "objects", run, order_by, limit, offset))

    def slice(self, dataset: str, name: str) -> pa.Table:
        """A dynamic slice's rows (items or objects), its stored query evaluated on Spark."""
        s = self.catalog(dataset).slices().get(name)
        if s is None:
            raise NotFoundError(f"no slice named '{name}' on dataset '{dataset}'")
        if s.query is None:
            raise LoupeError(f"slice '{name}' is static (stored ids); only dynamic slices are evaluated on Spark")
        return (self.objects if s.kind == "objects" else self.items)(dataset, s.query, run=s.run)


__all__ = ["LoupeSpark", "SparkCatalog", "SparkQueries", "to_spark_sql"]
