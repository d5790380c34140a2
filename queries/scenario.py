"""Scenario-test criteria: parse ``bbox_recall(iou=0.5) > 0.8, bbox_map() >= 0.5`` into checked records.

The grammar is ``scenario.lark`` (lark LALR); this module resolves function names and parameter
aliases, fills in defaults and checks types and ranges. It never evaluates anything: the engine
(``engine/analysis/scenarios.py``) computes the metric each :class:`Criterion` names.

Functions and parameters (Nucleus ``validate`` names; ``iou``, ``confidence`` and ``label_match`` are
accepted as short forms):

* ``bbox_recall`` / ``bbox_precision`` / ``bbox_f1`` (iou_threshold=0.5, confidence_threshold=0.0,
  enforce_label_match=false, label=none): greedy matching by confidence at the IoU threshold;
* ``bbox_map`` (iou_threshold=0.5, confidence_threshold=0.0, label=none): mean over labels of the
  COCO 101-point AP at that IoU threshold;
* ``bbox_iou`` (iou_threshold=0.0, confidence_threshold=0.0, enforce_label_match=false, label=none):
  mean IoU of the matched pairs;
* ``coco_ap`` / ``coco_ar`` (): COCO AP@[.50:.95] and AR@100 (pycocotools).

A bound is a number, or ``baseline [+|- delta]``: the baseline run's value of the same metric.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from .errors import DSLNameError, DSLSyntaxError, DSLTypeError, closest
from .parser import _syntax_error

MAX_CRITERIA_CHARS = 5_000

_DETECTION = {"iou_threshold": 0.5, "confidence_threshold": 0.0, "enforce_label_match": False, "label": None}
FUNCTIONS: dict[str, dict[str, Any]] = {
    "bbox_recall": dict(_DETECTION),
    "bbox_precision": dict(_DETECTION),
    "bbox_f1": dict(_DETECTION),
    "bbox_map": {"iou_threshold": 0.5, "confidence_threshold": 0.0, "label": None},
    "bbox_iou": {**_DETECTION, "iou_threshold": 0.0},
    "coco_ap": {},
    "coco_ar": {},
}
ALIASES = {"iou": "iou_threshold", "confidence": "confidence_threshold", "conf": "confidence_threshold",
           "label_match": "enforce_label_match"}
_TYPES = {"iou_threshold": float, "confidence_threshold": float, "enforce_label_match": bool, "label": str}


@dataclass(frozen=True)
class Criterion:
    """One checked criterion: ``function(params) op bound``.

    Attributes:
        function: canonical function name.
        params: every parameter of the function (defaults filled in).
        op: one of ``> >= < <= == !=``.
        threshold: the fixed bound, or None for a baseline-relative one.
        baseline_delta: for ``baseline +- d``: d (signed); None for a fixed bound.
        position: index in the criteria text.
    """

    function: str
    params: dict[str, Any] = field(hash=False)
    op: str
    threshold: float | None
    baseline_delta: float | None
    position: int

    @property
    def relative(self) -> bool:
        return self.baseline_delta is not None

    def text(self) -> str:
        """Normalized text, e.g. ``bbox_recall(iou_threshold=0.5, ...) > 0.8``."""
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items() if v is not None)
        if self.relative:
            d = self.baseline_delta or 0.0
            bound = "baseline" if d == 0 else f"baseline {'+' if d > 0 else '-'} {abs(d):g}"
        else:
            bound = f"{self.threshold:g}"
        return f"{self.function}({args}) {self.op} {bound}"

    def bound(self, baseline_value: float | None) -> float | None:
        """The number to compare with (None when relative and the baseline value is unknown)."""
        if not self.relative:
            return self.threshold
        return None if baseline_value is None else baseline_value + (self.baseline_delta or 0.0)

    def passes(self, value: float | None, baseline_value: float | None = None) -> bool:
        """Does ``value`` satisfy the criterion? An undefined value or bound fails."""
        b = self.bound(baseline_value)
        if value is None or b is None:
            return False
        return {">": value > b, ">=": value >= b, "<": value < b, "<=": value <= b,
                "==": abs(value - b) <= 1e-12, "!=": abs(value - b) > 1e-12}[self.op]


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{v:g}"


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files("queries").joinpath("scenario.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, cache=False)


def _unquote(tok: str) -> str:
    body = tok[1:-1]
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(body[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_criteria(text: str) -> list[Criterion]:
    """Checked criteria of ``text``.

    Raises:
        DSLSyntaxError: the text does not follow the grammar (with line, column and a caret).
        DSLNameError: unknown function or parameter (with suggestions).
        DSLTypeError: a parameter of the wrong type or out of range.
    """
    if not isinstance(text, str):
        raise DSLSyntaxError(f"criteria must be a string, not {type(text).__name__}", "", 1, 1)
    if len(text) > MAX_CRITERIA_CHARS:
        raise DSLSyntaxError(f"criteria too long ({len(text)} characters; limit {MAX_CRITERIA_CHARS})",
                             text[:80], 1, 1)
    if not text.strip():
        raise DSLSyntaxError("no criteria given (e.g. bbox_recall(iou=0.5) > 0.8)", text, 1, 1)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(text, e) from None
    return [_criterion(c, i, text) for i, c in enumerate(tree.find_data("criterion"))]


def _criterion(node: Tree, position: int, text: str) -> Criterion:
    call, op, bound = node.children
    name_tok: Token = call.children[0]
    fname = str(name_tok).lower()
    if fname not in FUNCTIONS:
        best = closest(fname, FUNCTIONS)
        hint = f"did you mean '{best[0]}'?" if best else f"available: {', '.join(FUNCTIONS)}"
        raise DSLNameError(f"unknown function '{fname}'; {hint}", name=fname, suggestions=best, text=text,
                           line=name_tok.line, column=name_tok.column, length=len(name_tok))
    params = dict(FUNCTIONS[fname])
    seen: set[str] = set()
    for arg in (a for a in call.children[1:] if a is not None):
        key_tok, val = arg.children
        key = ALIASES.get(str(key_tok).lower(), str(key_tok).lower())
        where = {"text": text, "line": key_tok.line, "column": key_tok.column, "length": len(key_tok)}
        if key not in params:
            raise DSLNameError(f"{fname}() has no parameter '{key_tok}'; parameters: {', '.join(params) or 'none'}",
                               name=str(key_tok), suggestions=closest(str(key_tok), list(params)), **where)
        if key in seen:
            raise DSLTypeError(f"parameter {key!r} given twice", **where)
        seen.add(key)
        params[key] = _value(fname, key, val, where)
    if bound.data == "fixed":
        threshold, delta = float(bound.children[0]), None
    else:
        sign, num = bound.children[1], bound.children[2]
        threshold, delta = None, 0.0 if num is None else (float(num) if str(sign) == "+" else -float(num))
    return Criterion(fname, params, str(op), threshold, delta, position)


def _value(fname: str, key: str, val: Tree, where: dict[str, Any]) -> Any:
    kind = val.data
    raw = val.children[0] if val.children else None
    want = _TYPES[key]
    if want is bool:
        if kind not in ("true", "false"):
            raise DSLTypeError(f"{fname}(): {key} must be true or false", **where)
        return kind == "true"
    if want is str:
        if kind != "string":
            raise DSLTypeError(f"{fname}(): {key} must be a quoted string", **where)
        return _unquote(str(raw))
    if kind != "number":
        raise DSLTypeError(f"{fname}(): {key} must be a number", **where)
    x = float(raw)
    lo_open = key == "iou_threshold" and fname != "bbox_iou"
    if not (0 <= x <= 1) or (lo_open and x == 0):
        rng = "(0, 1]" if lo_open else "[0, 1]"
        raise DSLTypeError(f"{fname}(): {key} must be in {rng}, got {x:g}", **where)
    return x
