"""The two sides of an object query (ground truth, a run's predictions) as :class:`sqlbuild.Side` pieces.

Each side's filter was compiled with the object row under a stand-in alias; here it is pointed at the
table that side's first phase scans, and every output column gets its expression.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from .scopes import OBJ, Context, ObjectScope
from .sqlbuild import (Aggregates, Side, cast, col, in_subquery, join_aggregates, outer_columns, NESTED, run_id_expr,
                       table, threshold_expr, with_ctes)


def retarget(e: exp.Expression, to: str) -> exp.Expression:
    """Point the object-row stand-in alias at the branch's driver table (in place)."""
    for c in e.find_all(exp.Column):
        if c.table == OBJ:
            c.set("table", exp.to_identifier(to))
    return e


def build_side(scope: ObjectScope, ctx: Context, driver: str, where: exp.Expression | None,
          sort: list[exp.Expression]) -> Side:
    t = scope.alias
    gt = scope.side == "gt"
    run = scope.run
    target = "m" if driver == "matches" else t
    where = None if where is None else retarget(where, target)
    sort = [retarget(e, target) for e in sort]
    match_on = None
    if scope.matched:
        key = "ann_key" if gt else "pred_key"
        match_on = exp.and_(
            exp.EQ(this=col("run_id", "m"), expression=run_id_expr(run)),
            exp.EQ(this=col("iou_threshold", "m"), expression=threshold_expr(run)),
            exp.EQ(this=col("source", "m"), expression=exp.convert(scope.side)),
            exp.EQ(this=col(key, "m"), expression=col(key, t)), copy=False)

    def column(name: str) -> exp.Expression:  # built only for the columns a query prints
        if name == "partner_key":
            return col("pred_key" if gt else "ann_key", "m") if match_on is not None else cast(exp.null(), "BIGINT")
        if name == "metadata":
            return cast(col("metadata", t), "VARCHAR")
        return scope.column(name, track=False).sql
    if gt:
        base = [exp.EQ(this=col("dataset_id", t), expression=ctx.aggs.dataset_id.copy()),
                exp.Is(this=col("valid_to", t), expression=exp.null())]
    else:
        base = [exp.EQ(this=col("run_id", t), expression=run_id_expr(run))]
    mconds: list[exp.Expression] = []
    if driver == "matches":
        mconds = [exp.EQ(this=col("run_id", "m"), expression=run_id_expr(run)),
                  exp.EQ(this=col("iou_threshold", "m"), expression=threshold_expr(run)),
                  exp.EQ(this=col("source", "m"), expression=exp.convert(scope.side))]
        if gt and not run.labels_current:  # labels changed since the commit: keep current GT only
            current = exp.select(col("ann_key", "a")).from_(table("annotations", "a"), copy=False).where(
                exp.and_(*[b.copy() for b in base], copy=False), copy=False)
            mconds.append(in_subquery(col("ann_key", "m"), current))
    return Side(scope.side, t, driver, where, sort, column, base, match_on, mconds, _reads_items(scope, where, sort),
                scope.uses_matches, list(scope.item.used_ctes))


def _reads_items(scope: ObjectScope, where: exp.Expression | None, sort: list[exp.Expression]) -> bool:
    """Whether the filter or sort reads a column of ``items`` (metadata served from item_metadata_values
    does not: then the first phase need not join items)."""
    if not scope.uses_items:
        return False
    return any(c.table == "i" for e in [where, *sort] if e is not None for c in e.find_all(exp.Column))


@dataclass(frozen=True)
class ObjectPlan:
    """An object query as its parts, for running it without SQL (engine/execution/object_scan.py).

    ``sides``: per side ("gt", "prediction") its filter (None: every row) and sort expressions, over the
    aliases ``a`` / ``p`` (the object), ``m`` (its matches row) and ``i`` (its item), exactly as in the SQL;
    rows are ordered by the sort keys (NULLs last), then item_id, source, ann_key, pred_key.
    """

    sides: tuple[tuple[str, exp.Expression | None, tuple[exp.Expression, ...]], ...]
    desc: tuple[bool, ...]
    limit: int | None
    offset: int | None
    aggs: Aggregates  # the dataset and the per-item CTEs the filter's item-level parts read

    def item_values(self, parts: list[exp.Expression]) -> exp.Expression:
        """The item-level parts of the filter and sort keys (queries/arrow_eval.item_parts) per item, as
        columns item_id, v0, v1, ... (in no particular order; the object's item_id in a part is the item's).

        When every part reads one per-item CTE only (``item.metadata.camera``, ``predictions.fp``...):
        ``SELECT item_id, <parts> FROM <cte> UNION ALL SELECT NULL, <parts with the CTE's columns NULL>``,
        the last row being the value for items the CTE has no row for (cheaper than joining every item).
        Otherwise ``SELECT i.item_id, <parts> FROM items i LEFT JOIN <CTEs> WHERE i.dataset_id = D``.
        """
        parts = [p.copy() for p in parts]
        used: list[str] = []
        on_items = False
        for part in parts:
            on_items |= next(part.find_all(*NESTED), None) is not None
            for c in outer_columns(part):
                if c.name == "item_id" and c.table in ("a", "p", "m", "i"):
                    c.replace(col("item_id", "i"))
                    on_items = True
                elif c.table.startswith("__"):
                    used.append(c.table) if c.table not in used else None
                else:
                    on_items = True
        names = [exp.to_identifier(f"v{k}") for k in range(len(parts))]
        if len(used) == 1 and not on_items:
            cte = used[0]
            rows = exp.select(col("item_id", cte), *[exp.Alias(this=p, alias=n) for p, n in zip(parts, names)])
            rows = rows.from_(table(cte), copy=False)
            empty = []
            for p in parts:
                p = p.copy()
                for c in list(p.find_all(exp.Column)):
                    if c.table == cte:
                        c.replace(exp.null())
                empty.append(p)
            default = exp.select(cast(exp.null(), "BIGINT"), *empty)
            return with_ctes(exp.Union(this=rows, expression=default, distinct=False), self.aggs.ctes())
        cols: list[exp.Expression] = [col("item_id", "i")] + [exp.Alias(this=p, alias=n) for p, n in zip(parts, names)]
        sel = exp.select(*cols).from_(table("items", "i"), copy=False)
        sel = join_aggregates(sel, used, col("item_id", "i"))
        sel = sel.where(exp.EQ(this=col("dataset_id", "i"), expression=self.aggs.dataset_id.copy()), copy=False)
        return with_ctes(sel, self.aggs.ctes())


def plan_of(sides: list[Side], desc: list[bool], limit: int | None, offset: int | None,
            aggs: Aggregates) -> ObjectPlan:
    return ObjectPlan(tuple((s.side, s.where, tuple(s.sort)) for s in sides), tuple(desc), limit, offset, aggs)
