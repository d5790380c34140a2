"""Assemble sqlglot SELECTs over the workspace tables from compiled pieces.

Only our own constants become identifiers here (table, column and alias names); user values arrive as
already-built literal expressions. Nothing is parsed from text.

Shapes:
    items:   WITH <per-item aggregates> SELECT <item columns> FROM items i LEFT JOIN <aggregates> ...
             WHERE i.dataset_id = D AND <filter> ORDER BY ..., i.item_id
    objects: SELECT <object columns> FROM (<GT branch> UNION ALL <prediction branch>) o JOIN items i
             ORDER BY ..., o.item_id, o.source, o.seq
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from sqlglot import exp

from .catalog import RunInfo
from .metadata import LOOKUP_TYPES


# -- small constructors -------------------------------------------------------------------------
def col(name: str, table: str | None = None) -> exp.Column:
    """A column of our own (name and alias are Loupe's constants: plain identifiers, never user text)."""
    if table is None:
        return exp.Column(this=_ident(name))
    return exp.Column(this=_ident(name), table=_ident(table))


def _ident(name: str) -> exp.Identifier:
    return exp.Identifier(this=name, quoted=False)  # our own constant names only


def table(name: str, alias: str | None = None) -> exp.Expression:
    t = exp.Table(this=_ident(name))
    if alias is not None and alias != name:
        t.set("alias", exp.TableAlias(this=_ident(alias)))
    return t


def subquery(select: exp.Expression, alias: str) -> exp.Subquery:
    return exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier(alias)))


def eq(a: exp.Expression, b: exp.Expression) -> exp.EQ:
    return exp.EQ(this=a, expression=b)


def and_all(parts: list[exp.Expression]) -> exp.Expression:
    parts = [p for p in parts if p is not None]
    return exp.and_(*parts, copy=False) if len(parts) > 1 else parts[0]


def placeholder_or(value: Any, name: str) -> exp.Expression:
    """A literal id, or ``$name`` when compiling without a workspace."""
    return exp.Placeholder(this=name) if value is None else exp.convert(value)


def alias(e: exp.Expression, name: str) -> exp.Alias:
    return exp.Alias(this=e, alias=_ident(name))


def output(e: exp.Expression, name: str, first: bool = True) -> exp.Expression:
    """A union branch's output column ``name``: only the first branch names its columns (UNION ALL pairs
    them by position) and a plain column already called ``name`` needs no alias (a smaller tree to build
    and print)."""
    if not first or (type(e) is exp.Column and e.name == name):
        return e
    return alias(e, name)


NESTED = (exp.Select, exp.Subquery, exp.Union)


def outer_columns(e: exp.Expression) -> list[exp.Column]:
    """Columns of ``e`` outside nested SELECTs (Loupe's subqueries are never correlated)."""
    out, stack = [], [e]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Column):
            out.append(node)
        elif not isinstance(node, NESTED):
            stack.extend(node.iter_expressions())
    return out


def in_subquery(e: exp.Expression, select: exp.Expression) -> exp.In:
    return exp.In(this=e, query=exp.Subquery(this=select))


def with_ctes(select: exp.Select, ctes: list[tuple[str, exp.Expression]]) -> exp.Select:
    if ctes:
        select.set("with_", exp.With(expressions=[
            exp.CTE(this=q, alias=exp.TableAlias(this=exp.to_identifier(n))) for n, q in ctes]))
    return select


def left_join(select: exp.Select, right: exp.Expression, on: exp.Expression) -> exp.Select:
    select.append("joins", exp.Join(this=right, on=on, side="LEFT"))
    return select


def inner_join(select: exp.Select, right: exp.Expression, on: exp.Expression) -> exp.Select:
    select.append("joins", exp.Join(this=right, on=on))
    return select


def cast(e: exp.Expression, to: str) -> exp.Cast:
    """CAST without sqlglot's type-string parser (to: BIGINT, DOUBLE, VARCHAR, BOOLEAN)."""
    return exp.Cast(this=e, to=exp.DataType(this=exp.DataType.Type[to]))


def ordered(e: exp.Expression, desc: bool) -> exp.Ordered:
    return exp.Ordered(this=e, desc=desc, nulls_first=False)


def run_id_expr(run: RunInfo) -> exp.Expression:
    return placeholder_or(run.run_id, "run_id")


def threshold_expr(run: RunInfo) -> exp.Expression:
    return placeholder_or(run.iou_threshold, "iou_threshold")


# -- per-item aggregates -----------------------------------------------------------------------
MATCH_COUNTS_CTE = "__mcounts"  # the counts read from item_match_counts, one column per count
@dataclass
class _Cte:
    name: str
    kind: str  # ann | pred | match | mcount
    run: RunInfo | None
    aggs: dict[str, tuple[str, exp.Expression, exp.Expression | None]] = field(default_factory=dict)
    joins: set[str] = field(default_factory=set)  # match CTE: 'p' and/or 'a' for label-qualified counts
    count: tuple[str, str, str | None] | None = None  # mcount: the (source, status, label) it reads


class Aggregates:
    """Per-item statistics a query needs, gathered into one CTE per source table.

    ``ann`` counts current ground truth: with ``counts``, read from ``item_count_columns`` when the query has
    several counts and each has a column there (``slots``: one row per item, one column per count), else from the
    ``item_counts`` rollup (one row per item for each count, so no GROUP BY), else one GROUP BY over the boxes; ``pred`` aggregates a run's
    predictions; ``match`` counts a run's matches rows (tp / fp / fn, IoU); ``mcount`` reads one tp / fp / fn
    count per item from ``item_match_counts`` (see :meth:`match_count`), all gathered in one CTE. Each CTE is
    joined to the items once.
    """

    def __init__(self, dataset_id: exp.Expression, counts: bool = False,
                 slots: Mapping[tuple[str | None, str | None], int] | None = None):
        self.dataset_id = dataset_id
        self.counts = counts  # ground-truth counts read the maintained item_counts rollup
        self.slots = dict(slots or {})  # (label, kind) -> its column in item_count_columns (when current)
        self._ctes: dict[tuple, _Cte] = {}
        self._lookups: dict[tuple[str, str], str] = {}  # (metadata path, type) -> CTE name

    def _cte(self, kind: str, run: RunInfo | None) -> _Cte:
        key = (kind, None if run is None else run.name)
        if key not in self._ctes:
            n = sum(1 for k in self._ctes if k[0] == kind)
            name = f"__{kind}" + (str(n) if kind != "ann" else "")
            self._ctes[key] = _Cte(name, kind, run)
        return self._ctes[key]

    def add(self, kind: str, run: RunInfo | None, func: str, arg: exp.Expression | None = None,
            cond: exp.Expression | None = None, joins: tuple[str, ...] = ()) -> tuple[str, exp.Expression]:
        """Register an aggregate; returns (cte name, the item-level value: counts default to 0)."""
        cte = self._cte(kind, run)
        cte.joins.update(joins)
        agg = _agg(func, arg)
        filtered = exp.Filter(this=agg, expression=exp.Where(this=cond)) if cond is not None else agg
        key = filtered.sql()
        if key not in cte.aggs:
            cte.aggs[key] = (f"c{len(cte.aggs)}", agg, cond)
        ref = col(cte.aggs[key][0], cte.name)
        value = exp.Coalesce(this=ref, expressions=[exp.convert(0)]) if func == "count" else ref
        return cte.name, value

    def match_count(self, run: RunInfo, source: str, status: str, label: str | None) -> tuple[str, exp.Expression]:
        """Per item, the run's matches rows of one source and status (of one label: the GT's for source 'gt',
        the prediction's otherwise); returns (cte name, the item-level value, 0 when none).

        When ``run.match_counts`` (the catalog vouches that ``item_match_counts`` reflects the run's matches
        rows) the count is read from that table: see :meth:`_build_match_counts`. Otherwise it joins the
        ``match`` aggregates (a GROUP BY over the run's matches rows).
        """
        if not run.match_counts:
            conds = [eq(col("source", "m"), exp.convert(source)), eq(col("status", "m"), exp.convert(status))]
            joins: tuple[str, ...] = ()
            if label is not None:
                side = "a" if source == "gt" else "p"
                conds.append(eq(col("label", side), exp.convert(label)))
                joins = (side,)
            return self.add("match", run, "count", cond=exp.and_(*conds, copy=False), joins=joins)
        key = ("mcount", run.name, source, status, label)
        if key not in self._ctes:
            n = sum(1 for k in self._ctes if k[0] == "mcount")
            self._ctes[key] = _Cte(f"{MATCH_COUNTS_CTE}_{n}", "mcount", run, count=(source, status, label))
        k = [c for c in self._ctes.values() if c.kind == "mcount"].index(self._ctes[key])  # its column: c<k>
        return MATCH_COUNTS_CTE, exp.Coalesce(this=col(f"c{k}", MATCH_COUNTS_CTE), expressions=[exp.convert(0)])

    def lookup(self, path: str, want: str) -> tuple[str, exp.Expression]:
        """An item metadata value pre-extracted in item_metadata_values (one row per item and path, so the
        CTE joins like an aggregate without a GROUP BY); returns (cte name, the item-level value)."""
        key = (path, want)
        if key not in self._lookups:
            self._lookups[key] = f"__meta{len(self._lookups)}"
        return self._lookups[key], col("c0", self._lookups[key])

    def ctes(self) -> list[tuple[str, exp.Expression]]:
        counts = [c for c in self._ctes.values() if c.kind == "mcount"]
        return [(c.name, self._build(c)) for c in self._ctes.values() if c.kind != "mcount"] + [
            (name, self._build_lookup(path, want)) for (path, want), name in self._lookups.items()] + (
            self._build_match_counts(counts) if counts else [])

    def names(self) -> list[str]:
        names = [c.name for c in self._ctes.values() if c.kind != "mcount"] + list(self._lookups.values())
        return names + ([MATCH_COUNTS_CTE] if any(c.kind == "mcount" for c in self._ctes.values()) else [])

    def _build_lookup(self, path: str, want: str) -> exp.Select:
        column = LOOKUP_TYPES[want]
        where = and_all([eq(col("dataset_id", "v"), self.dataset_id.copy()), eq(col("path", "v"), exp.convert(path))])
        return exp.select(col("item_id", "v"), alias(col(column, "v"), "c0")).from_(
            table("item_metadata_values", "v"), copy=False).where(where, copy=False)

    def _build_match_counts(self, counts: list[_Cte]) -> list[tuple[str, exp.Expression]]:
        """The counts read from item_match_counts, as one CTE (``__mcounts``: item_id, c0, c1, ...).

        Each count is a filtered scan with at most one row per item (``SELECT item_id, n ... WHERE run,
        threshold, source, status, label`` — label NULL: all labels); several are FULL JOINed on item_id
        so the items meet one CTE. On 100k items / 1.4M matches rows this measured best overall: one LEFT
        JOIN per count was 2-2.6x slower when the filter combines counts with OR, + or < (each join carries
        the wide item rows; only for an AND of counts was it faster, 13 vs 25 ms), one GROUP BY with
        conditional sums 1.2-1.5x slower.
        """
        scans = [(c.name, self._scan_match_count(c)) for c in counts]
        if len(scans) == 1:
            return [(MATCH_COUNTS_CTE, scans[0][1])]
        joined = full_join_on_item([(table(name), name, "c0", f"c{k}") for k, (name, _) in enumerate(scans)])
        return scans + [(MATCH_COUNTS_CTE, joined)]

    def _scan_match_count(self, c: _Cte) -> exp.Select:
        source, status, label = c.count  # type: ignore[misc]
        where = [eq(col("run_id", "mc"), run_id_expr(c.run)), eq(col("iou_threshold", "mc"), threshold_expr(c.run)),
                 eq(col("source", "mc"), exp.convert(source)), eq(col("status", "mc"), exp.convert(status)),
                 exp.Is(this=col("label", "mc"), expression=exp.null()) if label is None
                 else eq(col("label", "mc"), exp.convert(label))]
        return exp.select(col("item_id", "mc"), alias(col("n", "mc"), "c0")).from_(
            table("item_match_counts", "mc"), copy=False).where(and_all(where), copy=False)

    def _build(self, c: _Cte) -> exp.Select:
        if c.kind == "ann" and self.counts:
            return self._build_counts(c)
        base = {"ann": "a", "pred": "p", "match": "m"}[c.kind]
        conds = [cond for _, _, cond in c.aggs.values()]
        narrow = None
        if conds and all(x is not None for x in conds):
            narrow = conds[0] if len(conds) == 1 else exp.or_(*[exp.Paren(this=x.copy()) for x in conds], copy=False)
        single = len(c.aggs) == 1 and narrow is not None
        cols: list[exp.Expression] = [col("item_id", base)]
        for alias_, agg, cond in c.aggs.values():
            e = agg.copy() if single or cond is None else exp.Filter(this=agg.copy(), expression=exp.Where(this=cond.copy()))
            cols.append(alias(e, alias_))
        if c.kind == "ann":
            src = table("annotations", "a")
            where = [eq(col("dataset_id", "a"), self.dataset_id.copy()), exp.Is(this=col("valid_to", "a"), expression=exp.null())]
        elif c.kind == "pred":
            src = table("predictions", "p")
            where = [eq(col("run_id", "p"), run_id_expr(c.run))]
        else:
            src = table("matches", "m")
            where = [eq(col("run_id", "m"), run_id_expr(c.run)), eq(col("iou_threshold", "m"), threshold_expr(c.run))]
        if narrow is not None:
            where.append(exp.Paren(this=narrow.copy()) if isinstance(narrow, exp.Or) else narrow.copy())
        sel = exp.select(*cols).from_(src, copy=False)
        if c.kind == "match":
            if "p" in c.joins:
                sel = left_join(sel, table("predictions", "p"), eq(col("pred_key", "p"), col("pred_key", "m")))
            if "a" in c.joins:
                sel = left_join(sel, table("annotations", "a"), eq(col("ann_key", "a"), col("ann_key", "m")))
        return sel.where(and_all(where), copy=False).group_by(col("item_id", base), copy=False)

    def _build_counts(self, c: _Cte) -> exp.Select:
        """Ground-truth counts: several, one scan of ``item_count_columns`` when each has a column there (see
        :meth:`_columns_scan`), else from ``item_counts``, one row per item for each: a filtered scan per count.
        A single count reads ``item_counts`` (its rows of one label only; joined with a metadata lookup,
        the 1M-row column scan led DuckDB to join the wide item rows first: 58 -> 130 ms at 1M items).

        Several counts (``annotations.truck + annotations.bus``) are FULL JOINed on item_id inside the one
        CTE: its single LEFT JOIN to the items lets DuckDB turn that join into an inner one when the filter
        rejects items with no row (one CTE per count would keep every item; a GROUP BY costs more).
        """
        parts = list(c.aggs.values())
        columns = self._count_columns([cond for _, _, cond in parts]) if len(parts) > 1 else None
        if columns is not None:
            return self._columns_scan([(alias_, k) for (alias_, _, _), k in zip(parts, columns)])
        if len(parts) == 1:
            alias_, _, cond = parts[0]
            return self._count_scan(cond, alias_)
        return full_join_on_item([(subquery(self._count_scan(cond, "n"), f"t{k}"), f"t{k}", "n", alias_)
                                  for k, (alias_, _, cond) in enumerate(parts)])

    def _count_columns(self, conds: list[exp.Expression | None]) -> list[int] | None:
        """The ``item_count_columns`` column of each count, or None when one of them has none."""
        out = []
        for cond in conds:
            key = _count_key(cond)
            if key not in self.slots:
                return None
            out.append(self.slots[key])
        return out

    def _columns_scan(self, columns: list[tuple[str, int]]) -> exp.Select:
        """``SELECT item_id, n<k> AS c0, ... FROM item_count_columns``: every count of the CTE from one row per
        item, so arithmetic over counts is one scan with no join (1M items, ``annotations.truck +
        annotations.bus >= 3``: 35 -> ~3 ms of SQL). Items with no annotation have no row (NULL, read as 0).
        Which count a column holds is in ``count_column_slots``."""
        cols = [alias(col(f"n{k}", "w"), name) for name, k in columns]
        return exp.select(col("item_id", "w"), *cols).from_(table("item_count_columns", "w"), copy=False).where(
            eq(col("dataset_id", "w"), self.dataset_id.copy()), copy=False)

    def _count_scan(self, cond: exp.Expression | None, name: str) -> exp.Select:
        """``SELECT item_id, n FROM item_counts`` narrowed to one count's rows: a label's (kind NULL), a kind's
        (label NULL) or the item totals (both NULL). ``cond`` is ``a.label = 'x'``, ``a.kind = 'k'`` or None."""
        on = cond.this.name if cond is not None else None
        if on not in (None, "label", "kind"):
            raise ValueError(f"item_counts holds label and kind counts, not {cond.sql()}")
        where = [eq(col("dataset_id", "a"), self.dataset_id.copy())]
        for column in ("label", "kind"):
            where.append(cond.copy() if column == on else exp.Is(this=col(column, "a"), expression=exp.null()))
        return exp.select(col("item_id", "a"), alias(col("n", "a"), name)).from_(
            table("item_counts", "a"), copy=False).where(and_all(where), copy=False)


def _count_key(cond: exp.Expression | None) -> tuple[str | None, str | None]:
    """(label, kind) of a ground-truth count's condition (``a.label = 'x'``, ``a.kind = 'k'`` or None: all)."""
    if cond is None:
        return (None, None)
    if not (isinstance(cond, exp.EQ) and isinstance(cond.this, exp.Column) and isinstance(cond.expression, exp.Literal)
            and cond.expression.is_string and cond.this.name in ("label", "kind")):
        raise ValueError(f"item_counts holds label and kind counts, not {cond.sql()}")
    value = cond.expression.this
    return (value, None) if cond.this.name == "label" else (None, value)


def full_join_on_item(sources: list[tuple[exp.Expression, str, str | None, str | None]]) -> exp.Select:
    """Per-item values from several scans with at most one row per item, side by side:
    ``SELECT COALESCE(t0.item_id, t1.item_id, ...) AS item_id, t0.v AS a0, ... FROM t0 FULL JOIN t1 ...``.

    ``sources``: (FROM expression, its alias, value column, output name; value column None: item_id only).
    An item missing from a scan gets NULL there (callers COALESCE counts to 0). Measured faster than one
    LEFT JOIN per count or one GROUP BY.
    """
    keys = [col("item_id", t) for _, t, _, _ in sources]

    def any_of(ids: list[exp.Expression]) -> exp.Expression:  # the item of a row of the joins so far
        first, *rest = [i.copy() for i in ids]
        return exp.Coalesce(this=first, expressions=rest) if rest else first

    sel = exp.select(alias(any_of(keys), "item_id"),
                     *[alias(col(v, t), out) for _, t, v, out in sources if v is not None])
    sel = sel.from_(sources[0][0], copy=False)
    for k in range(1, len(sources)):
        sel.append("joins", exp.Join(this=sources[k][0], on=eq(keys[k].copy(), any_of(keys[:k])), side="FULL"))
    return sel


def _agg(func: str, arg: exp.Expression | None) -> exp.Expression:
    if func == "count":
        return exp.Count(this=exp.Star())
    cls = {"max": exp.Max, "min": exp.Min, "avg": exp.Avg}[func]
    return cls(this=arg)


def join_aggregates(select: exp.Select, names: list[str], item_id: exp.Expression) -> exp.Select:
    for n in names:
        select = left_join(select, table(n, n), eq(col("item_id", n), item_id.copy()))
    return select


# -- items --------------------------------------------------------------------------------------
ITEM_OUTPUT = ("reference_id", "image_location", "width", "height", "metadata")


def item_projection(projection: str) -> list[exp.Expression]:
    if projection in ("ids", "keys"):
        return [col("item_id", "i")]
    return [col(c, "i") if c != "metadata" else alias(cast(col("metadata", "i"), "VARCHAR"), "metadata")
            for c in ITEM_OUTPUT]


def items_query(where: exp.Expression | None, order: list[tuple[exp.Expression, bool]], limit: int | None,
                offset: int | None, aggs: Aggregates, used: list[str], projection: str = "rows") -> exp.Select:
    """The item-level SELECT (``projection``: rows = the ``ds.items()`` columns, ids = item_id in any order,
    keys = item_id in the rows' order, candidates = like ids, but read from the per-item tables the filter
    reads when an item without a row there cannot match; the caller checks every id is an item)."""
    if projection == "candidates":
        short = _from_item_tables(where, used, limit, offset, aggs)
        if short is not None:
            return short
        projection = "ids"
    sel = exp.select(*item_projection(projection)).from_(table("items", "i"), copy=False)
    sel = join_aggregates(sel, used, col("item_id", "i"))
    conds = [eq(col("dataset_id", "i"), aggs.dataset_id.copy())]
    if where is not None:
        conds.append(where)
    sel = sel.where(and_all(conds), copy=False)
    if projection != "ids" or limit is not None or offset:
        keys = [ordered(e, d) for e, d in order] + [ordered(col("item_id", "i"), False)]
        sel = sel.order_by(*keys, copy=False)
    sel = _limit(sel, limit, offset)
    return with_ctes(sel, aggs.ctes())


def _from_item_tables(where: exp.Expression | None, used: list[str], limit: int | None, offset: int | None,
                      aggs: Aggregates) -> exp.Select | None:
    """``SELECT t0.item_id FROM t0 [FULL JOIN t1 ...] WHERE <filter>`` when the filter reads per-item CTEs
    only and is not true for an item none of them has a row for (``annotations.car >= 2``,
    ``metadata.camera = "rear" AND annotations.count > 8``): no join with every item (on 100k items label
    arithmetic 11 -> 7 ms, two metadata keys 12 -> 9 ms). Items missing from some CTEs get NULLs there,
    as with the LEFT JOINs from ``items``."""
    from .arrow_eval import never_true_without, only_reads  # pyarrow, only needed here

    if where is None or not used:
        return None
    item_ids = [c for c in outer_columns(where) if c.table == "i" and c.name == "item_id"]
    if any(c.table not in used for c in outer_columns(where) if not (c.table == "i" and c.name == "item_id")):
        return None
    if item_ids or next(where.find_all(*NESTED), None) is not None:
        # the item id (in a slice, ...) and uncorrelated subqueries: safe when one conjunct needs a row
        # (``slice("test") AND predictions.pedestrian.fn > 0``: 1M items, 25 -> ~10 ms)
        if not any(only_reads(c, used) and never_true_without(c) for c in _conjuncts(where)):
            return None
    elif not never_true_without(where):
        return None
    sel = full_join_on_item([(table(t), t, None, None) for t in used])
    where = where.copy()
    item_id = sel.expressions[0].this  # the joined rows' item id
    for c in [c for c in outer_columns(where) if c.table == "i" and c.name == "item_id"]:
        c.replace(item_id.copy())
    sel = sel.where(where, copy=False)
    if limit is not None or offset:
        sel = sel.order_by(ordered(col("item_id"), False), copy=False)
    return with_ctes(_limit(sel, limit, offset), aggs.ctes())


def _limit(sel: exp.Select, limit: int | None, offset: int | None) -> exp.Select:
    if limit is not None:
        sel = sel.limit(exp.convert(int(limit)), copy=False)
    if offset:
        sel = sel.offset(exp.convert(int(offset)), copy=False)
    return sel


# -- objects ------------------------------------------------------------------------------------
OBJECT_OUTPUT = ("source", "reference_id", "annotation_id", "kind", "label", "x", "y", "width", "height", "area",
                 "iscrowd", "confidence", "iou", "best_iou", "status", "error_type", "metadata",
                 "ann_key", "pred_key", "partner_key")
ROW_COLUMNS = tuple(c for c in OBJECT_OUTPUT if c not in ("reference_id", "ann_key", "pred_key"))
TIE_BREAK = ("item_id", "source", "ann_key", "pred_key")  # default order after the user's keys
CARRIED = {"iou": "DOUBLE", "best_iou": "DOUBLE", "status": "VARCHAR", "error_type": "VARCHAR",
           "partner_key": "BIGINT"}  # match columns phase 1 hands to phase 2 (see Side.carries)


@dataclass
class Side:
    """One side of an object query (ground truth or a run's predictions), compiled.

    ``driver`` is the table the first phase scans: ``base`` (annotations / predictions, LEFT JOIN
    matches) or ``matches`` (the filter and sort read only match columns and cannot hold for
    unmatched rows, so scanning the run's matches rows is enough).
    """

    side: str
    alias: str
    driver: str
    where: exp.Expression | None
    sort: list[exp.Expression]
    column: Callable[[str], exp.Expression]  # an output column's expression, built when asked for
    base_conds: list[exp.Expression]
    match_on: exp.Expression | None
    match_conds: list[exp.Expression]
    uses_items: bool
    uses_matches: bool
    aggs: list[str]

    @property
    def key(self) -> str:
        return "ann_key" if self.side == "gt" else "pred_key"

    def _keys(self, t: str, first: bool) -> list[exp.Expression]:
        null = cast(exp.null(), "BIGINT")
        gt = self.side == "gt"
        return [output(col("ann_key", t) if gt else null, "ann_key", first),
                output(null.copy() if gt else col("pred_key", t), "pred_key", first)]

    @property
    def carries(self) -> bool:
        """Phase 1 reads the matches row anyway: it hands the match columns on, so phase 2 need not join it."""
        return self.match_on is not None and (self.driver == "matches" or self.uses_matches)

    def _match_column(self, name: str) -> exp.Expression:
        """A fresh ``m`` column for a carried match column."""
        if name == "partner_key":
            return col("pred_key" if self.side == "gt" else "ann_key", "m")
        return col(name, "m")

    def copy(self) -> "Side":
        """The same side with its own expression nodes (a tree takes ownership of the nodes put in it)."""
        def fresh(e: exp.Expression | None) -> exp.Expression | None:
            return None if e is None else e.copy()
        return replace(self, where=fresh(self.where), sort=[e.copy() for e in self.sort],
                       base_conds=[e.copy() for e in self.base_conds], match_on=fresh(self.match_on),
                       match_conds=[e.copy() for e in self.match_conds])

    def boundable(self) -> bool:
        """Phase 1 reads the side's own table and its first sort key is a number column of it
        (``ORDER BY confidence DESC``): see :meth:`bound`."""
        key = self.sort[0] if self.sort else None
        return (self.driver == "base" and type(key) is exp.Column and key.table == self.alias
                and key.name in BOUNDABLE)

    def bound(self, desc: bool, k: int) -> exp.Select:
        """The first sort key's boundary for a top-n: ``b``, the k-th value in query order of the side's
        rows that pass the conjuncts of the filter on its own columns (one single-key top-k, which DuckDB
        cuts short with its dynamic filter), or -inf / inf when fewer than k rows have a value.

        Phase 1 with ``key >= b`` (``<=`` ascending) keeps every row that ranks before the k-th candidate,
        ties included, so its top n is the query's whenever it finds n rows (the caller checks and runs
        the plain query otherwise). It spares the join with ``matches`` for every row the base filter
        lets through (FPs by confidence on 1M items: 1.4M rows built into a hash table)."""
        key = self.sort[0].copy()
        own = [c.copy() for c in _conjuncts(self.where) if _reads_only(c, self.alias)]
        top = exp.select(alias(key, "c")).from_(table(_BASE[self.side], self.alias), copy=False)
        top = top.where(and_all([c.copy() for c in self.base_conds] + own), copy=False)
        top = _limit(top.order_by(ordered(col("c"), desc), copy=False), k, None)
        edge = (exp.Min if desc else exp.Max)(this=col("c"))
        b = exp.Case(ifs=[exp.If(this=eq(exp.Count(this=col("c")), exp.convert(k)), true=edge)],
                     default=cast(exp.Literal.string("-inf" if desc else "inf"), "DOUBLE"))
        return exp.select(alias(b, "b")).from_(subquery(top, "__c"), copy=False)

    def hits(self, first: bool = True, bound: bool | None = None) -> exp.Select:
        """Phase 1: source, item_id, ann_key, pred_key, sort keys (and the match columns, or typed NULLs
        when this side does not read matches here) of the matching objects (``first``: the union's first
        branch, which names the columns; ``bound``: the first sort key is descending (True) or ascending
        (False) and limited to the boundary in ``__bound``, see :meth:`bound`)."""
        t = "m" if self.driver == "matches" else self.alias
        proj = [output(exp.convert(self.side), "source", first), output(col("item_id", t), "item_id", first)]
        proj += self._keys(t, first)
        proj += [output(e, f"__s{k}", first) for k, e in enumerate(self.sort)]
        proj += [output(self._match_column(c) if self.carries else cast(exp.null(), typ), f"__m_{c}", first)
                 for c, typ in CARRIED.items()]
        if self.driver == "matches":
            sel = exp.select(*proj).from_(table("matches", "m"), copy=False)
            conds = list(self.match_conds)
        else:
            sel = exp.select(*proj).from_(table(_BASE[self.side], self.alias), copy=False)
            conds = list(self.base_conds)
            if self.uses_matches and self.match_on is not None:
                sel = left_join(sel, table("matches", "m"), self.match_on.copy())
        return self._finish(sel, t, conds, bound)

    def rows(self, hits: str | None = None, first: bool = True) -> exp.Select:
        """Every output column: of the filtered rows (one phase) or of the hits' rows (phase 2)."""
        carried = hits is not None and self.carries
        proj = [output(col(f"__m_{c}", "h") if carried and c in CARRIED else self.column(c), c, first)
                for c in ROW_COLUMNS]
        if hits is None:
            proj += [output(col("item_id", self.alias), "item_id", first)] + self._keys(self.alias, first)
            proj += [output(e, f"__s{k}", first) for k, e in enumerate(self.sort)]
            sel = exp.select(*proj).from_(table(_BASE[self.side], self.alias), copy=False)
        else:
            proj += [col(c, "h") for c in ("item_id", "ann_key", "pred_key")]
            proj += [col(f"__s{k}", "h") for k in range(len(self.sort))]
            sel = exp.select(*proj).from_(table(hits, "h"), copy=False)
            sel = inner_join(sel, table(_BASE[self.side], self.alias), eq(col(self.key, self.alias), col(self.key, "h")))
            if self.carries:
                return sel
        if self.match_on is not None:
            sel = left_join(sel, table("matches", "m"), self.match_on)
        if hits is not None:
            return sel
        return self._finish(sel, self.alias, list(self.base_conds))

    def _finish(self, sel: exp.Select, t: str, conds: list[exp.Expression],
                bound: bool | None = None) -> exp.Select:
        if bound is not None:
            edge = exp.Subquery(this=exp.select(col("b")).from_(table(BOUND_CTE), copy=False))
            cmp = exp.GTE if bound else exp.LTE
            conds.append(cmp(this=self.sort[0].copy(), expression=edge))
        if self.uses_items:
            sel = inner_join(sel, table("items", "i"), eq(col("item_id", "i"), col("item_id", t)))
        sel = join_aggregates(sel, self.aggs, col("item_id", t))
        if self.where is not None:
            conds.append(self.where)  # hits() or rows(), never both
        return sel.where(and_all(conds), copy=False)


_BASE = {"gt": "annotations", "prediction": "predictions"}
BOUND_CTE = "__bound"
BOUNDABLE = ("confidence", "area", "x", "y", "width", "height")  # number columns of annotations / predictions


def _conjuncts(e: exp.Expression | None) -> list[exp.Expression]:
    if e is None:
        return []
    while isinstance(e, exp.Paren):
        e = e.this
    if isinstance(e, exp.And):
        return _conjuncts(e.this) + _conjuncts(e.expression)
    return [e]


def _reads_only(e: exp.Expression, alias_: str) -> bool:
    """Whether ``e`` reads columns of table ``alias_`` only (no subquery, no other table)."""
    if next(e.find_all(*NESTED), None) is not None:
        return False
    return all(c.table == alias_ for c in e.find_all(exp.Column))


def _order_keys(desc: list[bool], t: str) -> list[exp.Ordered]:
    keys = [ordered(col(f"__s{k}", t), d) for k, d in enumerate(desc)]
    return keys + [ordered(col(c, t), False) for c in TIE_BREAK]


def _union(parts: list[exp.Select]) -> exp.Expression:
    out: exp.Expression = parts[0]
    for p in parts[1:]:
        out = exp.Union(this=out, expression=p, distinct=False)
    return out


def bound_size(sides: list[Side], limit: int | None, offset: int | None) -> int | None:
    """How many candidates a bounded phase 1 takes (:meth:`Side.bound`), or None when the query does not
    get one: one side, boundable, a LIMIT of at most MAX_BOUNDED rows."""
    if limit is None or len(sides) != 1 or not sides[0].boundable():
        return None
    wanted = limit + (offset or 0)
    return max(MIN_CANDIDATES, CANDIDATES_PER_ROW * wanted) if 0 < wanted <= MAX_BOUNDED else None


MAX_BOUNDED = 10_000  # LIMIT + OFFSET up to this
MIN_CANDIDATES, CANDIDATES_PER_ROW = 1000, 20  # 20 candidates per row wanted: a filter passing 5% still finds them


def objects_query(sides: list[Side], desc: list[bool], limit: int | None, offset: int | None,
                  aggs: Aggregates, projection: str = "rows", bound: int | None = None) -> exp.Select:
    """The object-level SELECT (``projection``: rows = OBJECT_OUTPUT, ids = item_id, ann_key, pred_key).

    With LIMIT, or a filter on item-level values, a first phase finds the top (or matching) rows from the
    narrowest scan and only those rows are joined to their full columns; otherwise each side is read once
    with all its columns. ``bound`` (from :func:`bound_size`): phase 1 reads only the rows up to the
    first sort key's boundary among that many candidates; exact when it returns ``limit`` rows.
    """
    ctes = aggs.ctes()
    bounded = None
    if bound is not None:
        bounded = desc[0]
        ctes.append((BOUND_CTE, sides[0].bound(desc[0], bound)))
    limited = limit is not None or bool(offset)
    # item-level filters (item fields, item metadata, per-item statistics) are joins DuckDB applies after
    # reading every wide row the base filter lets through: find the keys first, then read only their rows
    item_filtered = any(s.where is not None and (s.uses_items or s.aggs) for s in sides)
    if projection == "ids" or limited or item_filtered:
        hits = exp.select(exp.Star()).from_(
            subquery(_union([s.hits(k == 0, bounded) for k, s in enumerate(sides)]), "h"), copy=False)
        if limited:
            hits = _limit(hits.order_by(*_order_keys(desc, "h"), copy=False), limit, offset)
        if projection == "ids":
            ids = exp.select(col("item_id", "h"), col("ann_key", "h"), col("pred_key", "h")).from_(
                subquery(hits, "h"), copy=False)
            return with_ctes(ids, ctes)
        ctes.append(("__hits", hits))
        body = _union([s.rows("__hits", k == 0) for k, s in enumerate(sides)])
    else:
        body = _union([s.rows(None, k == 0) for k, s in enumerate(sides)])
    proj = [col("reference_id", "i") if c == "reference_id" else col(c, "o") for c in OBJECT_OUTPUT]
    sel = exp.select(*proj).from_(subquery(body, "o"), copy=False)
    sel = inner_join(sel, table("items", "i"), eq(col("item_id", "i"), col("item_id", "o")))
    sel = sel.order_by(*_order_keys(desc, "o"), copy=False)
    return with_ctes(sel, ctes)


def object_branches(select: exp.Select) -> tuple[list[str], list[tuple[str, exp.Select]]]:
    """The sides of a one-phase object query (no LIMIT, no item-level filter: ``""`` for instance) as
    separate SELECTs, each ordered by item_id and its key; with the column names (the first branch's: a
    UNION ALL pairs the others' columns by position). Used to copy every object of a run into memory."""
    body = select.args["from_"].this.this
    branches = []
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Union):
            stack += [node.expression, node.this]
        else:
            branches.append(node)
    names = branches[0].named_selects
    out = []
    for b in branches:
        b = b.copy()
        first = b.expressions[0]
        side = (first.this if isinstance(first, exp.Alias) else first).this
        key = "ann_key" if side == "gt" else "pred_key"
        b = b.order_by(*[exp.Ordered(this=exp.Literal.number(names.index(c) + 1), nulls_first=False)
                         for c in ("item_id", key)], copy=False)
        out.append((side, b))
    return names, out
