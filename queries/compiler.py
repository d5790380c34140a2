"""Compile DSL text into a sqlglot SELECT: parse (lark LALR), type-check and translate (lark Transformer).

Example:
    >>> from queries import compile_query, StaticCatalog
    >>> q = compile_query('annotations.pedestrian >= 4', StaticCatalog(label_set={"pedestrian"}))
    >>> print(q.sql())

Every user value becomes a literal through ``exp.convert``; every name is checked against the catalog and
mapped to one of our own column expressions. Nothing the user typed is ever parsed as SQL.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from lark import Transformer, Tree, v_args
from lark.exceptions import VisitError
from sqlglot import exp

from .catalog import ANY, BOOLEAN, NULL, NUMBER, STRING, Catalog, SliceInfo
from .dialects import to_sql
from .errors import DSLError, DSLNameError, DSLSyntaxError, DSLTypeError, unknown
from .fields import FUNCTIONS, KINDS, SOURCES, STATUSES
from .lexemes import not_keyword, segment, unescape
from .metadata import MetaRef
from .objects import ObjectPlan, build_side, plan_of
from .parser import parse
from .scopes import Context, ItemScope, ObjectScope, Segments
from .scores import SCORE_FUNCTIONS, UNCERTAINTY_METHODS, ScoreSpec
from .sqlbuild import Aggregates, Side, bound_size, col, items_query, objects_query, placeholder_or
from .values import (ALL, Pos, Val, and_, arith_consts, boolean, compare_consts, literal, not_,
                     or_, paren, type_name, typed_null)

MAX_DEPTH = 200
MAX_LIMIT = 2**63 - 1  # DuckDB's LIMIT/OFFSET are BIGINT
TARGETS = ("items", "objects")
_CMP = {"=": exp.EQ, "!=": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}
_ARITH = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul, "%": exp.Mod}
_FIXED_DOMAINS = {"kind": KINDS, "status": STATUSES, "source": SOURCES}


@dataclass
class CompiledQuery:
    """A compiled query: the sqlglot expression and how to print it.

    Attributes:
        target: items | objects.
        expression: the SELECT (a sqlglot tree; run ``sql()`` for text); object queries build it on first use.
    """

    target: str
    built: Any  # the SELECT, or (object queries) a function that builds it when first asked for
    text: str = ""
    run: str | None = None
    plan: ObjectPlan | None = None  # object queries: the filter and order per side, for object_scan
    user_order: bool = False  # item queries: an ORDER BY of the query's own (else rows are by item_id)
    scores: tuple = ()  # ScoreSpecs the engine must register before running the SQL (queries/scores.py)
    # object queries with a LIMIT: the SELECT whose phase 1 stops at a boundary of the first sort key
    # (sqlbuild.Side.bound), and the row count that proves its answer is the query's (else run ``expression``)
    bounded: Any = None
    bounded_rows: int | None = None
    _cache: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def expression(self) -> exp.Expression:
        """The SELECT (object queries answered from the in-memory copy never need it)."""
        if callable(self.built):
            with self._lock:
                if callable(self.built):
                    self.built = self.built()
        return self.built

    def sql(self, dialect: str = "duckdb", pretty: bool = False) -> str:
        key = (dialect, pretty)
        if key not in self._cache:
            self._cache[key] = to_sql(self.expression, dialect, pretty)
        return self._cache[key]

    def bounded_sql(self) -> str | None:
        """DuckDB SQL of the bounded variant (None when the query has none)."""
        if self.bounded is None:
            return None
        if "bounded" not in self._cache:
            with self._lock:
                if callable(self.bounded):
                    self.bounded = self.bounded()
            self._cache["bounded"] = to_sql(self.bounded, "duckdb")
        return self._cache["bounded"]


@dataclass
class _Call:
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    pos: Pos


@dataclass
class _Parts:
    where: Any = None
    order: list[tuple[Any, bool]] = field(default_factory=list)
    limit: tuple[int, int | None] | None = None


def _pos(meta: Any) -> Pos:
    if meta is None or getattr(meta, "empty", True):
        return Pos()
    length = (meta.end_column - meta.column) if meta.end_line == meta.line else 1
    return Pos(meta.line, meta.column, max(1, length))


@v_args(meta=True)
class _Builder(Transformer):
    """Bottom-up: tokens -> typed values (:class:`Val`), metadata refs or calls -> one query's parts."""

    def __init__(self, ctx: Context, scope: ItemScope | ObjectScope):
        super().__init__(visit_tokens=False)
        self.ctx = ctx
        self.scope = scope

    # -- literals -------------------------------------------------------------------------------
    def number(self, meta: Any, c: list) -> Val:
        text = str(c[0])
        value = int(text) if text.isdigit() else float(text)
        return literal(value, _pos(meta), name=text)

    def string(self, meta: Any, c: list) -> Val:
        return literal(unescape(c[0]), _pos(meta), name=str(c[0]))

    def true(self, meta: Any, c: list) -> Val:
        return literal(True, _pos(meta))

    def false(self, meta: Any, c: list) -> Val:
        return literal(False, _pos(meta))

    def null(self, meta: Any, c: list) -> Val:
        return literal(None, _pos(meta))

    # -- names --------------------------------------------------------------------------------
    def bare_name(self, meta: Any, c: list) -> Val | MetaRef:
        not_keyword(c[0])
        return self.scope.resolve(str(c[0]), [], _pos(meta))

    def field(self, meta: Any, c: list) -> Val | MetaRef:
        not_keyword(c[0])
        return self.scope.resolve(str(c[0]), [segment(t) for t in c[1:]], _pos(meta))

    def call(self, meta: Any, c: list) -> _Call:
        args, kwargs = [], {}
        for a in c[1:]:
            if a is None:
                continue
            if isinstance(a, tuple) and a and a[0] == "kw":
                kwargs[a[1]] = a[2]
            else:
                args.append(a)
        return _Call(str(c[0]).lower(), args, kwargs, _pos(meta))

    def kwarg(self, meta: Any, c: list) -> tuple:
        if str(c[1]) not in ("=", "=="):
            raise DSLSyntaxError(f"expected '=' after argument name {c[0]}", None, c[1].line, c[1].column, str(c[1]))
        return ("kw", str(c[0]), c[2])

    def call_field(self, meta: Any, c: list) -> Val:
        call: _Call = c[0]
        segs: Segments = [segment(t) for t in c[1:]]
        pos = _pos(meta)
        if call.name != "predictions":
            raise DSLNameError(f"{call.name}(...) has no fields; only predictions(\"run\").<field> does",
                               name=call.name, line=pos.line, column=pos.column, length=pos.length)
        run = self._run_arg(call)
        item = self.scope if isinstance(self.scope, ItemScope) else self.scope.item
        full = f'predictions("{run}").' + ".".join(t for t, _ in segs)
        return item.predictions(run, segs, pos, full)

    def _run_arg(self, call: _Call) -> str:
        vals = list(call.args) + [v for k, v in call.kwargs.items() if k == "run"]
        extra = [k for k in call.kwargs if k != "run"]
        if len(vals) != 1 or extra or not isinstance(vals[0], Val) or not isinstance(vals[0].const, str):
            raise DSLTypeError('predictions(...) takes one run name: predictions("run name") or '
                               'predictions(run="run name")', line=call.pos.line, column=call.pos.column,
                               length=call.pos.length)
        return vals[0].const

    # -- turning anything into a value ---------------------------------------------------------------
    def value(self, x: Any, want: str | None = None, other: Val | None = None) -> Val:
        if isinstance(x, Val):
            return x
        if isinstance(x, MetaRef):
            return x.typed(want or x.preferred(), other, self.ctx.strict)
        if isinstance(x, _Call):
            return self._call_value(x)
        raise TypeError(f"unexpected node {x!r}")

    def cond(self, x: Any, what: str = "a condition") -> Val:
        """A boolean value (AND/OR/NOT operand, the filter itself)."""
        v = self.value(x, BOOLEAN)
        if v.type not in (BOOLEAN, NULL):
            hint = f" (compare it, e.g. {v.name} > 0)" if v.type == NUMBER else ""
            raise DSLTypeError(f"expected {what}, got {type_name(v.type)} {v.name}{hint}",
                               line=v.pos.line, column=v.pos.column, length=v.pos.length)
        if v.type == NULL:
            return boolean(v.sql, frozenset({None}), v.name, v.pos)
        return v

    def _pair(self, a: Any, b: Any) -> tuple[Val, Val]:
        """Type two operands; a metadata reference takes the type of the other side."""
        if isinstance(a, MetaRef) and isinstance(b, MetaRef):
            va = self.value(a)
            return va, self.value(b, va.type, va)
        if isinstance(a, MetaRef):
            vb = self.value(b)
            return self.value(a, vb.type if vb.type in (NUMBER, STRING, BOOLEAN) else None, vb), vb
        if isinstance(b, MetaRef):
            va = self.value(a)
            return va, self.value(b, va.type if va.type in (NUMBER, STRING, BOOLEAN) else None, va)
        return self.value(a), self.value(b)

    @staticmethod
    def _same_type(a: Val, b: Val, what: str, pos: Pos) -> None:
        if a.type in (NULL, ANY) or b.type in (NULL, ANY) or a.type == b.type:
            return
        raise DSLTypeError(f"cannot {what} {type_name(a.type)} ({a.name}) and {type_name(b.type)} ({b.name})",
                           line=pos.line, column=pos.column, length=pos.length)

    def _domain(self, f: Val, v: Val) -> None:
        """``label = "pedestrain"`` -> unknown label, with a suggestion."""
        if f.domain is None or not isinstance(v.const, str):
            return
        if f.domain == "label":
            self.ctx.label(v.const, v.pos)
            return
        known = _FIXED_DOMAINS[f.domain]
        if v.const not in known:
            raise unknown(f"{f.domain} value", v.const, known).at(v.pos.line, v.pos.column, v.pos.length)

    # -- predicates -------------------------------------------------------------------------------
    def compare(self, meta: Any, c: list) -> Val:
        pos = _pos(meta)
        op = {"==": "=", "<>": "!="}.get(str(c[1]), str(c[1]))
        a, b = self._pair(c[0], c[2])
        self._same_type(a, b, "compare", pos)
        if op in ("=", "!="):
            self._domain(a, b)
            self._domain(b, a)
        name = f"{a.name} {op} {b.name}"
        if a.is_const and b.is_const:
            return boolean(exp.null(), frozenset({compare_consts(op, a.const, b.const)}), name, pos)
        truth = frozenset({None}) if (a.const is None or b.const is None) else ALL
        return boolean(_CMP[op](this=paren(a.sql), expression=paren(b.sql)), truth, name, pos)

    def in_(self, meta: Any, c: list) -> Val:
        pos = _pos(meta)
        negate = c[1] is not None
        items_raw = [x for x in c[3:] if x is not None]
        hint = None  # a metadata value takes the type of the first typed list item (NULL has none)
        if isinstance(c[0], MetaRef):
            hint = next((t for t in (self.value(x).type for x in items_raw if not isinstance(x, MetaRef))
                         if t in (NUMBER, STRING, BOOLEAN)), None)
        a = self.value(c[0], hint)
        items: list[Val] = []
        for x in items_raw:
            v = self.value(x, a.type if a.type in (NUMBER, STRING, BOOLEAN) else None, a)
            self._same_type(a, v, "compare", v.pos)
            for w in items:  # NULL IN (1, "a"): the list must agree with itself too
                self._same_type(w, v, "compare", v.pos)
            self._domain(a, v)
            items.append(v)
        name = f"{a.name} {'NOT ' if negate else ''}IN (...)"
        if a.is_const and all(v.is_const for v in items):
            hits = [compare_consts("=", a.const, v.const) for v in items]
            t = True if True in hits else (None if None in hits else False)
            return boolean(exp.null(), frozenset({t if not negate else (None if t is None else not t)}), name, pos)
        e: exp.Expression = exp.In(this=paren(a.sql), expressions=[v.sql for v in items])
        return boolean(exp.Not(this=e) if negate else e, ALL, name, pos)

    def like(self, meta: Any, c: list) -> Val:
        pos = _pos(meta)
        a, b = self.value(c[0], STRING), self.value(c[3], STRING)
        for v in (a, b):
            if v.type not in (STRING, NULL, ANY):
                raise DSLTypeError(f"LIKE needs strings, got {type_name(v.type)} {v.name}", line=v.pos.line,
                                   column=v.pos.column, length=v.pos.length)
        e: exp.Expression = exp.Like(this=paren(a.sql), expression=paren(b.sql))
        return boolean(exp.Not(this=e) if c[1] is not None else e, ALL, f"{a.name} LIKE {b.name}", pos)

    def between(self, meta: Any, c: list) -> Val:
        pos = _pos(meta)
        raw_lo, raw_hi = c[3], c[5]
        lo0 = raw_lo if not isinstance(raw_lo, MetaRef) else raw_hi
        hint = self.value(lo0).type if not isinstance(lo0, MetaRef) else None
        a = self.value(c[0], hint if hint in (NUMBER, STRING, BOOLEAN) else None)
        lo = self.value(raw_lo, a.type if a.type in (NUMBER, STRING, BOOLEAN) else None, a)
        hi = self.value(raw_hi, a.type if a.type in (NUMBER, STRING, BOOLEAN) else None, a)
        self._same_type(a, lo, "compare", pos)
        self._same_type(a, hi, "compare", pos)
        self._same_type(lo, hi, "compare", pos)  # NULL BETWEEN 1 AND "a": the bounds must agree too
        e: exp.Expression = exp.Between(this=paren(a.sql), low=paren(lo.sql), high=paren(hi.sql))
        return boolean(exp.Not(this=e) if c[1] is not None else e, ALL, f"{a.name} BETWEEN ...", pos)

    def is_null(self, meta: Any, c: list) -> Val:
        pos = _pos(meta)
        a = self.value(c[0], ANY)
        negate = c[2] is not None
        name = f"{a.name} IS {'NOT ' if negate else ''}NULL"
        if a.is_const:
            return boolean(exp.null(), frozenset({(a.const is None) != negate}), name, pos)
        e: exp.Expression = exp.Is(this=paren(a.sql), expression=exp.null())
        return boolean(exp.Not(this=e) if negate else e, frozenset({True, False}), name, pos)

    # -- boolean logic --------------------------------------------------------------------------
    def and_(self, meta: Any, c: list) -> Val:
        return _balanced(and_, [self.cond(x) for x in c[::2]], _pos(meta))

    def or_(self, meta: Any, c: list) -> Val:
        return _balanced(or_, [self.cond(x) for x in c[::2]], _pos(meta))

    def not_(self, meta: Any, c: list) -> Val:
        return not_(self.cond(c[1]), _pos(meta))

    # -- arithmetic -------------------------------------------------------------------------------
    def arith(self, meta: Any, c: list) -> Val:
        pos = _pos(meta)
        op = str(c[1])
        a, b = self.value(c[0], NUMBER), self.value(c[2], NUMBER)
        for v in (a, b):
            if v.type not in (NUMBER, NULL, ANY):
                raise DSLTypeError(f"'{op}' needs numbers, got {type_name(v.type)} {v.name}", line=v.pos.line,
                                   column=v.pos.column, length=v.pos.length)
        name = f"{a.name} {op} {b.name}"
        if a.is_const and b.is_const:
            return literal(arith_consts(op, a.const, b.const, pos), pos, name=name)
        if op == "/":
            e: exp.Expression = exp.Div(this=paren(a.sql), expression=paren(b.sql), typed=False, safe=False)
        else:
            e = _ARITH[op](this=paren(a.sql), expression=paren(b.sql))
        if a.const is None or b.const is None:
            return typed_null(NUMBER, pos, name)
        return Val(exp.Paren(this=e), NUMBER, name=name, pos=pos)

    def sign(self, meta: Any, c: list) -> Val:
        pos = _pos(meta)
        v = self.value(c[1], NUMBER)
        if v.type not in (NUMBER, NULL, ANY):
            raise DSLTypeError(f"'{c[0]}' needs a number, got {type_name(v.type)} {v.name}", line=pos.line,
                               column=pos.column, length=pos.length)
        if str(c[0]) == "+":
            return v
        if v.is_const:
            return literal(None if v.const is None else -v.const, pos, name=f"-{v.name}")
        return Val(exp.Neg(this=paren(v.sql)), NUMBER, name=f"-{v.name}", pos=pos)

    # -- functions ----------------------------------------------------------------------------------
    def _call_value(self, call: _Call) -> Val:
        pos = call.pos
        if call.name not in FUNCTIONS:
            raise unknown("function", call.name, FUNCTIONS).at(pos.line, pos.column, pos.length)
        if call.name == "slice":
            if len(call.args) != 1 or call.kwargs or not isinstance(call.args[0], Val) \
                    or not isinstance(call.args[0].const, str):
                raise DSLTypeError('slice(...) takes one slice name: slice("name")', line=pos.line,
                                   column=pos.column, length=pos.length)
            info = self.ctx.slice(call.args[0].const, call.args[0].pos)
            return self.scope.slice_member(info, pos)
        if call.name == "predictions":
            raise DSLNameError('predictions("run") needs a field, e.g. predictions("run").fp', name="predictions",
                               line=pos.line, column=pos.column, length=pos.length)
        if call.name in SCORE_FUNCTIONS:
            return self._score(call)
        return self._function(call)

    def _score(self, call: _Call) -> Val:
        """similarity / uniqueness / uncertainty: a score the engine computes, read by item (or prediction)."""
        pos, name = call.pos, call.name
        args = [self.value(a, STRING) for a in call.args]
        run = call.kwargs.pop("run", None) if name == "uncertainty" else None
        shapes = {"similarity": "similarity(\"set\", \"id\", ...)", "uniqueness": "uniqueness(\"set\")",
                  "uncertainty": "uncertainty(\"entropy\" | \"margin\" | \"least_confidence\")"}
        n_ok = len(args) >= 2 if name == "similarity" else len(args) == 1
        if call.kwargs or not n_ok or not all(isinstance(a.const, str) for a in args):
            raise DSLTypeError(f"{name}(...) takes string arguments: {shapes[name]}", line=pos.line,
                               column=pos.column, length=pos.length)
        consts = tuple(a.const for a in args)
        scope = self.scope
        item = scope if isinstance(scope, ItemScope) else scope.item
        if name != "uncertainty":
            spec = ScoreSpec(name, consts)
            key = item.item_id.copy()
        else:
            if consts[0] not in UNCERTAINTY_METHODS:
                raise unknown("uncertainty method", consts[0], UNCERTAINTY_METHODS).at(
                    args[0].pos.line, args[0].pos.column, args[0].pos.length)
            run_name = None
            if run is not None:
                rv = self.value(run, STRING)
                if not isinstance(rv.const, str):
                    raise DSLTypeError("uncertainty(..., run=\"name\") takes a run name", line=pos.line,
                                       column=pos.column, length=pos.length)
                run_name = rv.const
            info = self.ctx.run(run_name, pos, "uncertainty(...)")
            if isinstance(scope, ObjectScope):
                if scope.side == "gt" or (scope.run is not None and scope.run.name != info.name):
                    return typed_null(NUMBER, pos, f"uncertainty(\"{consts[0]}\")")
                scope.uses_base = True
                spec = ScoreSpec(name, consts, info.name, "pred_key")
                key = col("pred_key", scope.alias)
            else:
                spec = ScoreSpec(name, consts, info.name)
                key = item.item_id.copy()
        if spec not in self.ctx.scores:
            self.ctx.scores.append(spec)
        shown = ", ".join(f'"{c}"' for c in consts)
        return Val(spec.lookup(key), NUMBER, name=f"{name}({shown})", pos=pos)

    def _function(self, call: _Call) -> Val:
        pos, name = call.pos, call.name
        want = STRING if name in ("lower", "upper", "length") else NUMBER
        n_max = 2 if name == "round" else 1
        if call.kwargs or not 1 <= len(call.args) <= n_max:
            raise DSLTypeError(f"{FUNCTIONS[name]}: wrong arguments", line=pos.line, column=pos.column,
                               length=pos.length)
        args = [self.value(a, want if i == 0 else NUMBER) for i, a in enumerate(call.args)]
        for i, v in enumerate(args):
            w = want if i == 0 else NUMBER
            if v.type not in (w, NULL, ANY):
                raise DSLTypeError(f"{name}() needs {type_name(w)}, got {type_name(v.type)} {v.name}",
                                   line=v.pos.line, column=v.pos.column, length=v.pos.length)
        x = paren(args[0].sql)
        if name == "round":
            e: exp.Expression = exp.Round(this=x, decimals=args[1].sql if len(args) > 1 else None)
        else:
            e = {"abs": exp.Abs, "floor": exp.Floor, "ceil": exp.Ceil, "sqrt": exp.Sqrt, "lower": exp.Lower,
                 "upper": exp.Upper, "length": exp.Length}[name](this=x)
        out = STRING if name in ("lower", "upper") else NUMBER
        return Val(e, out, name=f"{name}({args[0].name})", pos=pos)

    # -- clauses ----------------------------------------------------------------------------------
    def order_item(self, meta: Any, c: list) -> tuple[Val, bool]:
        v = self.value(c[0])
        return v, (c[1] is not None and c[1].type == "DESC")

    def order_by(self, meta: Any, c: list) -> list:
        return [x for x in c if isinstance(x, tuple)]

    def order_list(self, meta: Any, c: list) -> list:
        return [x for x in c if isinstance(x, tuple)]

    def limit(self, meta: Any, c: list) -> tuple[int, int | None]:
        for tok in (c[1], c[3]):
            if tok is not None and int(str(tok)) > MAX_LIMIT:
                raise DSLTypeError(f"{str(tok)[:30]} is too large for LIMIT/OFFSET (at most {MAX_LIMIT})",
                                   line=tok.line, column=tok.column, length=len(str(tok)))
        return int(str(c[1])), (int(str(c[3])) if c[3] is not None else None)

    def query(self, meta: Any, c: list) -> _Parts:
        where = None if c[0] is None else self.cond(c[0], "a condition (the query must be true or false)")
        return _Parts(where, c[1] or [], c[2])


# -- entry points -----------------------------------------------------------------------------------
def _balanced(op: Any, vals: list[Val], pos: Pos) -> Val:
    """``a OP b OP c ...`` as a balanced tree (AND/OR are associative, also in three-valued logic): a
    flat chain of thousands of terms stays shallow for sqlglot's generator and the Arrow evaluator."""
    while len(vals) > 1:
        nxt = [op(vals[i], vals[i + 1], pos) for i in range(0, len(vals) - 1, 2)]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0]


def _flatten_chains(tree: Tree) -> Tree:
    """Turn left-deep chains ``((a OR b) OR c) OR d`` (how the LALR grammar builds them) into one node
    ``or_(a, OR, b, OR, c, OR, d)``, without recursion: breadth is not depth."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if node.data in ("or_", "and_"):
            flat: list[Any] = []
            cur = node
            while True:
                head = cur.children[0]
                flat[:0] = cur.children[1:]
                if isinstance(head, Tree) and head.data == node.data:
                    cur = head
                    continue
                flat.insert(0, head)
                break
            node.children = flat
        stack.extend(ch for ch in node.children if isinstance(ch, Tree))
    return tree


def _no_constant_sort_keys(tree: Tree, text: str) -> None:
    """ORDER BY keys must read a field: a constant the user wrote (``ORDER BY 2``, ``"abc"``, ``1 + 1``)
    is a column position or an error in SQL and a constant in the in-memory copies; the DSL refuses it.
    (Fields that are constant on one side of an object query, like ``source``, are fine.)"""
    reads = ("field", "bare_name", "call_field", "call")
    for node in tree.iter_subtrees():
        if node.data == "order_item":
            key = node.children[0]
            if not isinstance(key, Tree) or not any(t.data in reads for t in key.iter_subtrees()):
                pos = _pos(node.meta)
                shown = text.split("\n")[pos.line - 1][pos.column - 1:pos.column - 1 + pos.length] if pos.line else ""
                raise DSLTypeError(f"ORDER BY {shown.strip() or 'constant'}: a constant sort key orders nothing "
                                   "(the DSL has no column positions); sort by a field, e.g. ORDER BY confidence "
                                   "DESC", text=text, line=pos.line, column=pos.column, length=pos.length)


def _depth_ok(tree: Tree, text: str) -> None:
    stack = [(tree, 1)]
    while stack:
        node, d = stack.pop()
        if d > MAX_DEPTH:
            raise DSLSyntaxError(f"query nested too deeply (more than {MAX_DEPTH} levels)", text, 1, 1)
        stack.extend((ch, d + 1) for ch in node.children if isinstance(ch, Tree))


def _transform(builder: _Builder, tree: Tree, text: str) -> Any:
    try:
        return builder.transform(tree)
    except VisitError as e:
        orig = e.orig_exc
        if isinstance(orig, DSLError):
            raise orig.with_text(text) from None
        raise
    except DSLError as e:
        raise e.with_text(text) from None


def compile_query(text: str, catalog: Catalog, target: str = "items", run: str | None = None,
                  order_by: str | None = None, limit: int | None = None, offset: int | None = None,
                  projection: str = "rows", strict: bool = True, _stack: tuple[str, ...] = ()) -> CompiledQuery:
    """Compile a DSL query into a SELECT over the workspace tables.

    Args:
        text: the query (filter, optional ORDER BY and LIMIT); '' selects everything.
        catalog: names the query may use, and the dataset / run ids.
        target: "items" (rows of ``items``) or "objects" (annotations and predictions with match rows).
        run: run context (``predictions.*`` fields; object queries add the run's predictions).
        order_by: ORDER BY list in DSL syntax (``"iou ASC, confidence DESC"``); replaces the query's own.
        limit, offset: replace the query's LIMIT / OFFSET.
        projection: "rows" (user columns), "ids" (item_id; objects also ann_key, pred_key; any order) or,
            for items, "keys" (item_id in the order of the rows) or "candidates" (item ids in any order,
            possibly read from the per-item tables the filter reads: may hold ids that are not items).
        strict: refuse unknown labels and metadata keys (stored slices re-evaluate with strict=False).

    Raises:
        DSLSyntaxError, DSLNameError, DSLTypeError (all ``DSLError``, a ``ValueError``).
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}")
    tree = _flatten_chains(parse(text))
    _depth_ok(tree, text)
    _no_constant_sort_keys(tree, text)
    order_tree = None
    if order_by is not None:
        order_tree = _flatten_chains(parse(order_by, start="order_list"))
        _depth_ok(order_tree, order_by)
        _no_constant_sort_keys(order_tree, order_by)
    for attempt in (0, 1):
        try:
            return _compile(text, tree, order_by, order_tree, catalog, target, run, limit, offset, projection,
                            strict, _stack)
        except (DSLNameError, DSLTypeError) as e:
            if attempt == 0 and getattr(e, "from_catalog", False) and catalog.refresh():
                continue
            raise
    raise AssertionError("unreachable")


def _aggregates(catalog: Catalog) -> Aggregates:
    counts = catalog.label_counts()
    return Aggregates(placeholder_or(catalog.dataset_id, "dataset_id"), counts=counts,
                      slots=catalog.label_slots() if counts else {})


def _compile(text: str, tree: Tree, order_text: str | None, order_tree: Tree | None, catalog: Catalog,
             target: str, run: str | None, limit: int | None, offset: int | None, projection: str,
             strict: bool, stack: tuple[str, ...]) -> CompiledQuery:
    ctx = Context(catalog, _aggregates(catalog), strict, None, stack)
    if run is not None:
        try:
            ctx.default_run = ctx.run(run, Pos(), "run")
        except DSLError as e:
            raise e.with_text(text) from None
    ctx.nested = lambda info, pos: _nested(ctx, info, pos)

    def parts_for(scope: ItemScope | ObjectScope) -> _Parts:
        b = _Builder(ctx, scope)
        parts: _Parts = _transform(b, tree, text)
        if order_tree is not None:
            parts.order = _transform(b, order_tree, order_text or "")
        for what, v in (("limit", limit), ("offset", offset)):
            if v is not None and not 0 <= int(v) <= MAX_LIMIT:
                raise DSLTypeError(f"{what} must be between 0 and {MAX_LIMIT}, got {v}")
        if limit is not None:
            parts.limit = (int(limit), parts.limit[1] if parts.limit else None)
        if offset is not None:
            parts.limit = (parts.limit[0] if parts.limit else None, int(offset))  # type: ignore[assignment]
        return parts

    if target == "items":
        scope = ItemScope(ctx)
        parts = parts_for(scope)
        where = _where(parts.where)
        n, off = parts.limit or (None, None)
        expression = items_query(where, [(v.sql, d) for v, d in parts.order], n, off, ctx.aggs, scope.used_ctes,
                                 projection)
        return CompiledQuery(target, expression, text, run, user_order=bool(parts.order), scores=tuple(ctx.scores))

    run_info = ctx.default_run
    limited = projection == "ids" or limit is not None or offset is not None
    sides: list[Side] = []
    desc: list[bool] = []
    n = off = None
    for side in ["gt"] + (["prediction"] if run_info is not None else []):
        oscope = ObjectScope(ctx, side, run_info)
        parts = parts_for(oscope)
        desc = [d for _, d in parts.order]
        n, off = parts.limit or (None, None)
        limited = limited or parts.limit is not None
        where = _where(parts.where)
        if isinstance(where, exp.Boolean) and where.this is False:
            continue  # this side can never match (e.g. source = "gt" on the prediction side)
        driver = "base"
        if limited and oscope.matched and oscope.uses_matches and not oscope.uses_base and not ctx.open:
            # can an object without a matches row pass? read the filter with match columns NULL
            unmatched = parts_for(ObjectScope(ctx, side, run_info, null_matches=True)).where
            if unmatched is not None and True not in unmatched.truth:
                driver = "matches"
        sides.append(build_side(oscope, ctx, driver, where, [v.sql for v, _ in parts.order]))
    if not sides:
        oscope = ObjectScope(ctx, "gt", run_info)
        parts = parts_for(oscope)
        sides.append(build_side(oscope, ctx, "base", exp.false(), [v.sql for v, _ in parts.order]))
    plan = plan_of(sides, desc, n, off, ctx.aggs) if not ctx.scores else None  # scores: DuckDB only
    k = bound_size(sides, n, off) if projection == "rows" and not ctx.scores else None
    bounded = None
    if k is not None:
        copies = [s.copy() for s in sides]
        bounded = lambda: objects_query(copies, desc, n, off, ctx.aggs, projection, bound=k)  # noqa: E731
    return CompiledQuery(target, lambda: objects_query(sides, desc, n, off, ctx.aggs, projection), text, run, plan,
                         scores=tuple(ctx.scores), bounded=bounded, bounded_rows=None if k is None else n)


def _where(v: Val | None) -> exp.Expression | None:
    if v is None or v.truth == {True}:
        return None
    if True not in v.truth:
        return exp.false()
    return v.sql


def _nested(ctx: Context, info: SliceInfo, pos: Pos) -> exp.Expression:
    """The ids of a dynamic slice, compiled from its stored query (names checked leniently)."""
    try:
        q = compile_query(info.query or "", ctx.catalog, target=info.kind, run=info.run, projection="ids",
                          strict=False, _stack=ctx.stack + (info.name,))
    except DSLError as e:
        raise DSLNameError(f"slice '{info.name}' cannot be evaluated: {e.message}", name=info.name,
                           line=pos.line, column=pos.column, length=pos.length) from None
    ctx.scores.extend(s for s in q.scores if s not in ctx.scores)
    return q.expression


__all__ = ["CompiledQuery", "compile_query"]
