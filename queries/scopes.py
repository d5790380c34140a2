"""Name resolution: what ``annotations.car``, ``metadata.camera``, ``status`` or ``item.width`` mean.

An :class:`ItemScope` resolves item-level names (one row per item); an :class:`ObjectScope` resolves
object-level names on one side of an object query (ground truth or predictions) and hands
``item.<name>`` to an item scope. Names are checked against the catalog; SQL names are our constants.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from sqlglot import exp

from .catalog import BOOLEAN, NUMBER, STRING, Catalog, RunInfo, SliceInfo
from .errors import DSLNameError, unknown
from .fields import (ANNOTATION_AGGREGATES, ITEM_ALIASES, ITEM_COLUMNS, KINDS, LABEL_STATS, MATCH_COUNTS,
                     OBJECT_FIELDS, PREDICTION_AGGREGATES, item_field_names, object_field_names)
from .metadata import MetaRef, resolve as resolve_metadata
from .sqlbuild import Aggregates, col, in_subquery, inner_join, table
from .values import ALL, Pos, Val, literal, typed_null

Segments = list[tuple[str, bool]]  # (text, quoted)


@dataclass
class Context:
    """State shared by every scope of one compilation."""

    catalog: Catalog
    aggs: Aggregates
    strict: bool = True
    default_run: RunInfo | None = None
    stack: tuple[str, ...] = ()  # slices being compiled, to refuse cycles
    nested: Callable[[SliceInfo, Pos], exp.Expression] | None = None  # compiles a dynamic slice to ids
    scores: list = field(default_factory=list)  # ScoreSpecs the engine computes before running (queries/scores.py)

    @property
    def open(self) -> bool:
        return self.catalog.open

    def run(self, name: str | None, pos: Pos, what: str) -> RunInfo:
        """The run named (or the query's run); a clear error when there is none."""
        if name is None:
            if self.default_run is None:
                raise DSLNameError(f"{what} needs a run: pass run=\"name\" to the query, or write "
                                   f"predictions(\"run name\").{what.split('.', 1)[-1]}",
                                   line=pos.line, column=pos.column, length=pos.length)
            return self.default_run
        if self.open:
            return RunInfo(name, None, None)
        runs = self.catalog.runs()
        if name not in runs:
            e = unknown("run", name, runs)
            e.from_catalog = True  # type: ignore[attr-defined]
            raise e.at(pos.line, pos.column, pos.length)
        return runs[name]

    def committed(self, run: RunInfo, what: str, pos: Pos) -> None:
        if not run.committed and not self.open:
            e = DSLNameError(f"{what} needs a committed run; run '{run.name}' has no matches yet "
                             f"(commit it first)", line=pos.line, column=pos.column, length=pos.length)
            e.from_catalog = True  # type: ignore[attr-defined]
            raise e

    def label(self, name: str, pos: Pos) -> None:
        """Refuse unknown labels (with a suggestion) unless the catalog is open or checks are off."""
        if self.open or not self.strict:
            return
        known = self.catalog.labels()
        if name not in known:
            e = unknown("label", name, known)
            e.from_catalog = True  # type: ignore[attr-defined]
            raise e.at(pos.line, pos.column, pos.length)

    def slice(self, name: str, pos: Pos) -> SliceInfo:
        if self.open:
            return SliceInfo(name, None, "items")
        slices = self.catalog.slices()
        if name not in slices:
            e = unknown("slice", name, slices)
            e.from_catalog = True  # type: ignore[attr-defined]
            raise e.at(pos.line, pos.column, pos.length)
        if name in self.stack:
            raise DSLNameError(f"slice '{name}' refers to itself ({' -> '.join(self.stack + (name,))})",
                               name=name, line=pos.line, column=pos.column, length=pos.length)
        return slices[name]


def _err_pos(e: DSLNameError, pos: Pos) -> DSLNameError:
    return e.at(pos.line, pos.column, pos.length)  # type: ignore[return-value]


def _show(segs: Segments) -> str:
    return ".".join(t if not q else '"' + t + '"' for t, q in segs)


@dataclass
class ItemScope:
    """Item-level names. ``item_id`` is the column the per-item aggregates join on."""

    ctx: Context
    item_id: exp.Expression = field(default_factory=lambda: col("item_id", "i"))
    uses_items: bool = False  # a column of `items` (alias i) is referenced
    used_ctes: list[str] = field(default_factory=list)

    def _cte(self, name: str) -> None:
        if name not in self.used_ctes:
            self.used_ctes.append(name)

    def _lookup(self, path: str, want: str) -> exp.Expression:
        """An item metadata value read from item_metadata_values (joined like the per-item aggregates)."""
        name, value = self.ctx.aggs.lookup(path, want)
        self._cte(name)
        return value

    def resolve(self, head: str, segs: Segments, pos: Pos, prefix: str = "") -> Val | MetaRef:
        """Field names are case-insensitive; labels and metadata keys are not."""
        full = prefix + _show([(head, False)] + segs)
        head = head.lower()
        if head in ITEM_COLUMNS and not segs:
            self.uses_items = True
            t, _ = ITEM_COLUMNS[head]
            return Val(col(head, "i"), t, name=full, pos=pos)
        if head == "metadata":
            if not segs:
                raise DSLNameError(f"{full} needs a key: {full}.<key>", name=full, line=pos.line,
                                   column=pos.column, length=pos.length)
            self.uses_items = True
            lookup = self._lookup if not self.ctx.open and self.ctx.catalog.item_values() else None
            return resolve_metadata(col("metadata", "i"), segs, self.ctx.catalog.item_metadata(),
                                    prefix + "metadata", pos, self.ctx.open, self.ctx.strict, lookup)
        if head == "annotations":
            return self._annotations(segs, pos, full)
        if head == "predictions":
            return self.predictions(None, segs, pos, full)
        if head in ITEM_ALIASES and not segs:
            return self.predictions(None, [(head, False)], pos, full)
        raise _err_pos(unknown("field", full, [prefix + n for n in item_field_names()]), pos)

    # -- annotations.<...> ----------------------------------------------------------------------
    def _annotations(self, segs: Segments, pos: Pos, full: str) -> Val:
        if not segs or len(segs) > 2:
            raise _err_pos(unknown("field", full, ["annotations.count", "annotations.<label>",
                                                   "annotations.<kind>.count"]), pos)
        first, quoted = segs[0]
        if len(segs) == 1:
            if not quoted and first.lower() in ANNOTATION_AGGREGATES:
                return self._count("ann", None, None, full, pos)
            self.ctx.label(first, pos)
            return self._count("ann", None, eq_(col("label", "a"), first), full, pos)
        stat, sq = segs[1]
        if sq or stat.lower() != "count":
            raise _err_pos(unknown("field", full, [f"annotations.{first}.count"]), pos)
        if not quoted and first.lower() in KINDS:
            first = first.lower()
            return self._count("ann", None, eq_(col("kind", "a"), first), full, pos)
        self.ctx.label(first, pos)
        return self._count("ann", None, eq_(col("label", "a"), first), full, pos)

    def _count(self, kind: str, run: RunInfo | None, cond: exp.Expression | None, full: str, pos: Pos) -> Val:
        name, value = self.ctx.aggs.add(kind, run, "count", cond=cond)
        self._cte(name)
        return Val(value, NUMBER, name=full, pos=pos)

    # -- predictions.<...> ----------------------------------------------------------------------
    def predictions(self, run_name: str | None, segs: Segments, pos: Pos, full: str) -> Val:
        """``predictions.<stat>`` of the query's run, or of ``run_name`` for ``predictions("run")``."""
        run = self.ctx.run(run_name, pos, full)
        known = [f"predictions.{k}" for k in PREDICTION_AGGREGATES] + ["predictions.<label>",
                                                                       "predictions.<label>.<count|tp|fp|fn>"]
        if not segs or len(segs) > 2:
            raise _err_pos(unknown("field", full, known), pos)
        first, quoted = segs[0]
        if len(segs) == 1 and not quoted and first.lower() in PREDICTION_AGGREGATES:
            return self._prediction_stat(run, first.lower(), None, full, pos)
        if len(segs) == 2:
            stat, sq = segs[1]
            stat = stat.lower()
            if sq or stat not in LABEL_STATS:
                raise _err_pos(unknown("field", full, [f"predictions.{first}.{s}" for s in LABEL_STATS]), pos)
            if not quoted and first.lower() in KINDS and stat == "count":
                return self._count("pred", run, eq_(col("kind", "p"), first.lower()), full, pos)
        else:
            stat = "count"
        self.ctx.label(first, pos)
        return self._prediction_stat(run, stat, first, full, pos)

    def _prediction_stat(self, run: RunInfo, stat: str, label: str | None, full: str, pos: Pos) -> Val:
        source, _ = PREDICTION_AGGREGATES[stat]
        if source == "predictions":
            lab = None if label is None else eq_(col("label", "p"), label)
            if stat == "count":
                return self._count("pred", run, lab, full, pos)
            func = stat.split("_", 1)[0]
            name, value = self.ctx.aggs.add("pred", run, func, col("confidence", "p"), cond=lab)
            self._cte(name)
            return Val(value, NUMBER, name=full, pos=pos)
        self.ctx.committed(run, full, pos)
        if stat in MATCH_COUNTS:  # tp / fp / fn: a count of the run's matches rows
            name, value = self.ctx.aggs.match_count(run, *MATCH_COUNTS[stat], label)
        else:  # max_iou / min_iou: of the true-positive predictions
            cond = exp.and_(eq_(col("source", "m"), "prediction"), eq_(col("status", "m"), "tp"), copy=False)
            name, value = self.ctx.aggs.add("match", run, stat.split("_", 1)[0], col("iou", "m"), cond=cond)
        self._cte(name)
        return Val(value, NUMBER, name=full, pos=pos)

    # -- slice("name") --------------------------------------------------------------------------
    def slice_member(self, info: SliceInfo, pos: Pos) -> Val:
        """Is the item in the slice (for an object slice: does the item hold one of its objects)?"""
        if info.query is not None and self.ctx.nested is not None:
            ids = self.ctx.nested(info, pos)
            sub = exp.select(col("item_id", "s")).from_(exp.Subquery(
                this=ids, alias=exp.TableAlias(this=exp.to_identifier("s"))), copy=False)
        elif info.kind == "objects":
            sid = _slice_id(info)
            a = inner_join(exp.select(col("item_id", "a")).from_(table("slice_objects", "so"), copy=False),
                           table("annotations", "a"), exp.EQ(this=col("ann_key", "a"), expression=col("ann_key", "so"))
                           ).where(exp.EQ(this=col("slice_id", "so"), expression=sid), copy=False)
            p = inner_join(exp.select(col("item_id", "p")).from_(table("slice_objects", "so"), copy=False),
                           table("predictions", "p"), exp.EQ(this=col("pred_key", "p"), expression=col("pred_key", "so"))
                           ).where(exp.EQ(this=col("slice_id", "so"), expression=sid.copy()), copy=False)
            sub = exp.Union(this=a, expression=p, distinct=False)
        else:
            sub = exp.select(col("item_id", "si")).from_(table("slice_items", "si"), copy=False).where(
                exp.EQ(this=col("slice_id", "si"), expression=_slice_id(info)), copy=False)
        return Val(in_subquery(self.item_id.copy(), sub), BOOLEAN, truth=frozenset({True, False}),
                   name=f'slice("{info.name}")', pos=pos)


def _slice_id(info: SliceInfo) -> exp.Expression:
    return exp.Placeholder(this="slice_id") if info.slice_id is None else exp.convert(info.slice_id)


def eq_(column: exp.Expression, value: str) -> exp.Expression:
    return exp.EQ(this=column, expression=exp.convert(value))


# -- objects ------------------------------------------------------------------------------------
_DOMAINS = {"label": "label", "kind": "kind", "status": "status", "source": "source"}
MATCH_FIELDS = ("iou", "best_iou", "status", "error_type")
OBJ = "__obj"  # stand-in table alias for the object's row; retargeted once the branch's driver is known


@dataclass
class ObjectScope:
    """Object-level names on one side of an object query.

    Args:
        side: "gt" (annotations a) or "prediction" (predictions p); matches rows are m.
        run: the query's run (None: ground truth only); matched columns need it committed.
        null_matches: read the match columns as NULL (to test whether unmatched rows can pass the filter).
    """

    ctx: Context
    side: str
    run: RunInfo | None
    null_matches: bool = False
    item: ItemScope = field(init=False)
    uses_base: bool = False  # a column of the annotation / prediction row is referenced
    uses_matches: bool = False

    def __post_init__(self) -> None:
        self.alias = "a" if self.side == "gt" else "p"
        self.item = ItemScope(self.ctx, item_id=col("item_id", OBJ))
        self.matched = self.run is not None and (self.run.committed or self.ctx.open)

    @property
    def uses_items(self) -> bool:
        return self.item.uses_items

    def column(self, name: str, track: bool = True) -> Val:
        """This side's value of an object field (fields absent on this side are typed NULLs)."""
        t, gt = self.alias, self.side == "gt"
        typ = OBJECT_FIELDS[name][0]
        if name == "source":
            v = literal(self.side)
            v.domain = "source"
            return v
        if name == "reference_id":
            if track:
                self.item.uses_items = True
            return Val(col("reference_id", "i"), STRING, name=name)
        if name in MATCH_FIELDS:
            if not self.matched or self.null_matches:
                return typed_null(typ, name=name)
            if track:
                self.uses_matches = True
            return Val(col(name, "m"), typ, name=name, domain=_DOMAINS.get(name))
        if name == "confidence" and gt:
            return typed_null(NUMBER, name=name)
        if name == "iscrowd" and not gt:
            return literal(False)
        if track:
            self.uses_base = True
        if name == "aspect":
            return Val(exp.Div(this=col("width", t), expression=exp.Nullif(
                this=col("height", t), expression=exp.convert(0)), typed=False, safe=False), NUMBER, name=name)
        return Val(col(name, t), typ, name=name, domain=_DOMAINS.get(name))

    def resolve(self, head: str, segs: Segments, pos: Pos) -> Val | MetaRef:
        head = head.lower()
        if head == "item":
            if not segs:
                raise DSLNameError("item needs a field: item.<field>", name="item", line=pos.line,
                                   column=pos.column, length=pos.length)
            (h, q), rest = segs[0], segs[1:]
            if q:
                raise _err_pos(unknown("field", "item." + h, ["item." + n for n in item_field_names()]), pos)
            return self.item.resolve(h, rest, pos, prefix="item.")
        if head == "metadata":
            if not segs:
                raise DSLNameError("metadata needs a key: metadata.<key>", name="metadata", line=pos.line,
                                   column=pos.column, length=pos.length)
            self.uses_base = True
            return resolve_metadata(col("metadata", self.alias), segs, self.ctx.catalog.object_metadata(),
                                    "metadata", pos, self.ctx.open, self.ctx.strict)
        if head in OBJECT_FIELDS:
            if segs:
                raise _err_pos(unknown("field", head + "." + _show(segs), object_field_names()), pos)
            return replace(self.column(head), name=head, pos=pos)
        known = object_field_names() + ["item." + n for n in item_field_names()]
        raise _err_pos(unknown("field", _show([(head, False)] + segs), known), pos)

    def slice_member(self, info: SliceInfo, pos: Pos) -> Val:
        """Object slices: is this object in it; item slices: is this object's item in it."""
        if info.kind != "objects":
            return self.item.slice_member(info, pos)
        self.uses_base = True
        key = "ann_key" if self.side == "gt" else "pred_key"
        if info.query is not None and self.ctx.nested is not None:
            ids = self.ctx.nested(info, pos)
            sub = exp.select(col(key, "s")).from_(exp.Subquery(
                this=ids, alias=exp.TableAlias(this=exp.to_identifier("s"))), copy=False).where(
                exp.Not(this=exp.Is(this=col(key, "s"), expression=exp.null())), copy=False)
        else:
            sub = exp.select(col(key, "so")).from_(table("slice_objects", "so"), copy=False).where(
                exp.and_(exp.EQ(this=col("slice_id", "so"), expression=_slice_id(info)),
                         exp.Not(this=exp.Is(this=col(key, "so"), expression=exp.null())), copy=False), copy=False)
        return Val(in_subquery(col(key, self.alias), sub), BOOLEAN, truth=frozenset({True, False}),
                   name=f'slice("{info.name}")', pos=pos)


__all__ = ["Context", "ItemScope", "ObjectScope", "Segments", "ALL"]
