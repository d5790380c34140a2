"""The two sides of an object query (ground truth, a run's predictions) as :class:`sqlbuild.Side` pieces.

Each side's filter was compiled with the object row under a stand-in alias; here it is pointed at the
table that side's first phase scans, and every output column gets its expression.
"""
from __future__ import annotations

from sqlglot import exp

from .scopes import OBJ, Context, ObjectScope
from .sqlbuild import Side, cast, col, in_subquery, run_id_expr, table, threshold_expr


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
