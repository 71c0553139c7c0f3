"""Audience rules: a small expression language marketers write to pick customers, evaluated over a frame
with one row per customer (indexed by customer_id).

    propensity_bucket == 'High' and recency_days <= 90 and consent_email
    churn_risk in ['High', 'Medium'] and not lookalike('vip', 500)

A rule is text typed by a person, so it is never handed to Python: a tokenizer and a recursive-descent
parser turn it into a tree of this module's own nodes (no eval, exec, compile or `ast`), and anything
outside the language below is a `RuleError` before a single row is read. The tree is evaluated a column
at a time (pandas/numpy), so a million customers take milliseconds.

The language
------------
- Literals: numbers (`90`, `0.5`, `-3`), text in single or double quotes (`'High'`, `"Men's"`; a backslash
  escapes the next character), `true` / `false` (or `True` / `False`), and lists `['High', 'Medium']` or
  `('High', 'Medium')`, which only follow `in` / `not in` or appear as function arguments.
- Columns: names `[A-Za-z_][A-Za-z0-9_]*` among those the caller allows, each with a kind: "number",
  "text" or "bool". An unknown name is an error that suggests close matches.
- Comparisons `==`, `!=`, `<`, `<=`, `>`, `>=`, `in [...]`, `not in [...]` between columns, literals and
  function calls of the same kind. Text and booleans only take `==`, `!=`, `in`, `not in`; text
  comparison is exact and case-sensitive (`'high'` is not `'High'`). Comparisons do not chain
  (`1 < x < 5` is an error: write `1 < x and x < 5`).
- A bool column (`consent_email`), `true`/`false` and a function call are conditions by themselves.
- `not`, then `and`, then `or`, binding in that order (`not a and b or c` is `((not a) and b) or c`);
  parentheses group. `and`, `or` and `not` only take conditions.
- Function calls `name(arg, ...)` take literal arguments only and answer a condition per customer; the
  caller names the allowed ones (e.g. `lookalike('vip', 500)`). `is_missing(column)` is built in: true
  where the column's value is missing.

Missing values
--------------
A comparison with a missing value (NaN/None) is unknown, not true or false, and unknown stays unknown
through `not`; `and` / `or` follow three-valued logic (false and unknown is false, true or unknown is
true). A customer is in the audience only where the whole rule is true, as in SQL's WHERE. So where
`churn_risk` is missing, both `churn_risk == 'High'` and `not (churn_risk == 'High')` leave the customer
out, and so does `churn_risk != 'High'`; write `is_missing(churn_risk) or churn_risk != 'High'` to keep
them. A missing value in a bool column, or in a function's answer, is unknown too.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NoReturn

import numpy as np
import pandas as pd

KINDS = ("number", "text", "bool")
ORDERED_KINDS = {"number"}  # the kinds <, <=, >, >= apply to
Kind = Literal["number", "text", "bool"]
RuleFunction = Callable[..., pd.Series]  # (frame, *literal args) -> bool Series aligned with frame.index

COLUMNS_HELP = "`nhip audience columns` lists the documented columns"
MAX_NESTING = 64  # parentheses and nots deep: far beyond any real rule, well within Python's stack
IS_MISSING = "is_missing"


class RuleError(ValueError):
    """A rule that is not in the language, or cannot be evaluated on this frame.

    Given the rule and a position, the message quotes the rule with a caret under the offending
    character, so a marketer sees where; `reason` is the message without the quote, `position` the 0-based
    character offset. A caller checking a rule further (e.g. a call's arguments) may raise it with a
    reason alone."""

    def __init__(self, reason: str, rule: str | None = None, position: int | None = None):
        self.reason, self.rule, self.position = reason, rule, position
        located = rule is not None and position is not None
        super().__init__(f"{reason}\n{_pointer(rule, position)}" if located else reason)


def _pointer(rule: str, position: int) -> str:
    start = rule.rfind("\n", 0, position) + 1
    end = rule.find("\n", position)
    line = rule[start:] if end == -1 else rule[start:end]
    pad = "".join("\t" if c == "\t" else " " for c in line[:position - start])
    return f"  {line}\n  {pad}^"


# -- tokens --------------------------------------------------------------------------------------------

KEYWORDS = {"and", "or", "not", "in", "true", "false", "True", "False"}
BOOLEANS = {"true": True, "false": False, "True": True, "False": False}
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
PUNCTUATION = "()[],-"
NOT_IN_LANGUAGE = {
    "=": "'=' is not an operator: use == to compare",
    "&": "use and to join conditions", "|": "use or to join conditions", "!": "use != or not",
    "+": "arithmetic is not part of the rule language", "*": "arithmetic is not part of the rule language",
    "/": "arithmetic is not part of the rule language", "%": "arithmetic is not part of the rule language",
    ".": "'.' (attribute access) is not part of the rule language",
    ";": "';' is not part of the rule language: a rule is one condition",
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number | string | name | keyword | op | one of PUNCTUATION | end | error
    text: str
    pos: int
    value: object = None  # the literal's value, or an error token's message


def _tokens(text: str) -> list[_Token]:
    """Every token of `text`; a character outside the language becomes an error token, raised only when
    the parser reaches it, so the leftmost problem is the one reported."""
    tokens, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            if not word.isascii():
                tokens.append(_Token("error", word, i, f"{word!r} is not a column name: names use A-Z, a-z, 0-9 and _"))
            else:
                tokens.append(_Token("keyword" if word in KEYWORDS else "name", word, i))
            i = j
        elif c.isascii() and c.isdigit():
            tokens.append(number := _number(text, i))
            i += len(number.text)
        elif c in "'\"":
            tokens.append(string := _string(text, i))
            i += len(string.text) if string.kind == "string" else n
        elif op := next((op for op in COMPARISONS if text.startswith(op, i)), None):
            tokens.append(_Token("op", op, i))
            i += len(op)
        elif c in PUNCTUATION:
            tokens.append(_Token(c, c, i))
            i += 1
        else:
            hint = NOT_IN_LANGUAGE.get(c, f"{c!r} is not part of the rule language")
            if c == "." and text[i + 1:i + 2].isdigit():
                hint = "write numbers with a leading digit, e.g. 0.5"
            tokens.append(_Token("error", c, i, hint))
            i += 1
    tokens.append(_Token("end", "", n))
    return tokens


def _number(text: str, start: int) -> _Token:
    i = start
    while i < len(text) and text[i].isascii() and text[i].isdigit():
        i += 1
    if text[i:i + 1] == "." and text[i + 1:i + 2].isascii() and text[i + 1:i + 2].isdigit():
        i += 1
        while i < len(text) and text[i].isascii() and text[i].isdigit():
            i += 1
    digits = text[start:i]
    end = i
    while end < len(text) and text[end].isascii() and (text[end].isalnum() or text[end] in "._"):
        end += 1
    if end > i:
        return _Token("error", digits, start, f"malformed number {text[start:end]!r}: write e.g. 90 or 0.5")
    return _Token("number", digits, start, float(digits) if "." in digits else int(digits))


def _string(text: str, start: int) -> _Token:
    quote, chars, i = text[start], [], start + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
        elif c == quote:
            return _Token("string", text[start:i + 1], start, "".join(chars))
        else:
            chars.append(c)
            i += 1
    return _Token("error", text[start:], start, f"unterminated text: the {quote} here is never closed")


# -- the tree ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Literal:
    value: object
    kind: Kind
    pos: int


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    kind: Kind
    pos: int


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    args: tuple
    pos: int
    kind: Kind = "bool"


@dataclass(frozen=True, slots=True)
class _IsMissing:
    column: _Column
    pos: int
    kind: Kind = "bool"


@dataclass(frozen=True, slots=True)
class _Compare:
    op: str
    left: _Node
    right: _Node
    pos: int
    kind: Kind = "bool"


@dataclass(frozen=True, slots=True)
class _In:
    operand: _Node
    values: tuple
    negated: bool
    pos: int
    kind: Kind = "bool"


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Node
    pos: int
    kind: Kind = "bool"


@dataclass(frozen=True, slots=True)
class _Logic:
    op: str  # and | or
    operands: tuple[_Node, ...]
    pos: int
    kind: Kind = "bool"


_Node = _Literal | _Column | _Call | _IsMissing | _Compare | _In | _Not | _Logic


def _children(node: _Node) -> tuple[_Node, ...]:
    match node:
        case _IsMissing(column=column):
            return (column,)
        case _Compare(left=left, right=right):
            return left, right
        case _In(operand=operand) | _Not(operand=operand):
            return (operand,)
        case _Logic(operands=operands):
            return operands
    return ()


def _walk(node: _Node):
    yield node
    for child in _children(node):
        yield from _walk(child)


def _describe(node: _Node) -> str:
    match node:
        case _Column(name=name, kind=kind):
            return f"{name} (a {kind} column)"
        case _Literal(kind="text", value=value):
            return f"the text {value!r}"
        case _Literal(kind="number", value=value):
            return f"the number {value}"
        case _Literal(value=value):
            return str(value).lower()
    return "a condition"


# -- parsing -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """A parsed, type-checked audience rule: what it reads, and a tree to evaluate on any frame.

    `columns` and `functions` name what the rule uses (`functions` leaves out the built-in is_missing),
    so a caller loads only those columns and provides only those functions."""

    text: str
    columns: frozenset[str]
    functions: frozenset[str]
    _root: _Node = field(repr=False, compare=False)

    @property
    def calls(self) -> tuple[tuple[str, tuple], ...]:
        """Each distinct function call as (name, literal args), in the order written: what a caller can
        compute ahead (e.g. the lookalike of each seed audience) before evaluating."""
        found = (node for node in _walk(self._root) if isinstance(node, _Call))
        return tuple(dict.fromkeys((node.name, node.args) for node in found))

    def evaluate(self, frame: pd.DataFrame, functions: Mapping[str, RuleFunction] | None = None) -> pd.Series:
        """The customers of `frame` the rule selects: a bool Series aligned with `frame.index`, true only
        where the whole rule is true (missing values never select a customer, see the module's notes).

        Only the columns the rule names are read; `functions` implements the functions it calls, each
        called once per distinct set of arguments as `function(frame, *args)`."""
        selected, _ = _Evaluation(self, frame, functions or {}).condition(self._root)
        return pd.Series(selected, index=frame.index, dtype=bool)


def parse_rule(text: str, columns: Mapping[str, Kind], functions: Iterable[str] = ()) -> Rule:
    """`text` as a `Rule` over the allowed `columns` (name -> kind: "number", "text" or "bool") and
    `functions` (names; is_missing is built in), or a `RuleError` saying where and what was expected.

    Kinds are checked here, not at evaluation, so a rule that parses never fails on a frame that has
    its columns, holding what they are declared to hold, and the functions it calls."""
    for name, kind in columns.items():
        if kind not in KINDS:
            raise ValueError(f"column {name!r} has kind {kind!r}; the kinds are {', '.join(KINDS)}")
    allowed = frozenset(functions)
    if IS_MISSING in allowed:
        raise ValueError(f"{IS_MISSING} is built in; leave it out of the allowed functions")
    root = _Parser(text, dict(columns), allowed).parse()
    nodes = list(_walk(root))
    return Rule(text, frozenset(n.name for n in nodes if isinstance(n, _Column)),
                frozenset(n.name for n in nodes if isinstance(n, _Call)), root)


class _Parser:
    """Recursive descent over the grammar, one method per level, lowest precedence first:

        rule       := or END
        or         := and ('or' and)*
        and        := not ('and' not)*
        not        := 'not' not | comparison
        comparison := operand (COMPARISON operand | 'in' list | 'not' 'in' list)?
        operand    := '(' or ')' | literal | NAME | NAME '(' arguments ')'
    """

    def __init__(self, text: str, columns: dict[str, Kind], functions: frozenset[str]):
        self.text, self.columns, self.functions = text, columns, functions
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    def fail(self, pos: int, reason: str) -> NoReturn:
        raise RuleError(reason, self.text, pos)

    def peek(self, ahead: int = 0) -> _Token:
        token = self.tokens[min(self.i + ahead, len(self.tokens) - 1)]
        if token.kind == "error" and ahead == 0:
            self.fail(token.pos, str(token.value))
        return token

    def advance(self) -> _Token:
        token = self.peek()
        self.i += 1
        return token

    def at(self, kind: str, text: str | None = None) -> bool:
        token = self.peek()
        return token.kind == kind and (text is None or token.text == text)

    def expect(self, kind: str, what: str) -> _Token:
        if not self.at(kind):
            self.fail(self.peek().pos, f"expected {what}, found {self.found(self.peek())}")
        return self.advance()

    @staticmethod
    def found(token: _Token) -> str:
        return "the end of the rule" if token.kind == "end" else repr(token.text)

    def nest(self, pos: int):
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.fail(pos, f"the rule nests deeper than {MAX_NESTING} levels")

    def parse(self) -> _Node:
        if not self.text.strip():
            self.fail(0, "the rule is empty: write a condition, e.g. propensity_bucket == 'High'")
        node = self.or_()
        token = self.peek()
        if token.kind != "end":
            self.fail(token.pos, self.trailing(token))
        self.condition(node, "a rule")
        return node

    def trailing(self, token: _Token) -> str:
        if token.kind == "[":
            return "subscripts (x[...]) are not part of the rule language; lists only follow in / not in"
        if token.kind == "-":
            return "arithmetic is not part of the rule language"
        if token.kind == "(":
            return "only function names can be called with (...)"
        if token.text.lower() in KEYWORDS - BOOLEANS.keys():
            return f"write {token.text.lower()} in lower case"
        return f"expected and, or, or the end of the rule after a complete condition, found {self.found(token)}"

    def condition(self, node: _Node, where: str):
        if node.kind != "bool":
            example = f"; compare it, e.g. {node.name} > 0" if isinstance(node, _Column) else ""
            if isinstance(node, _Column) and node.kind == "text":
                example = f"; compare it, e.g. {node.name} == '...'"
            self.fail(node.pos, f"{where} needs a condition, but {_describe(node)} is not one{example}")

    def logic(self, op: str, next_level: Callable[[], _Node]) -> _Node:
        operands = [next_level()]
        while self.at("keyword", op):
            self.advance()
            operands.append(next_level())
        if len(operands) == 1:
            return operands[0]
        for operand in operands:
            self.condition(operand, f"'{op}'")
        return _Logic(op, tuple(operands), operands[0].pos)

    def or_(self) -> _Node:
        return self.logic("or", self.and_)

    def and_(self) -> _Node:
        return self.logic("and", self.not_)

    def not_(self) -> _Node:
        if not self.at("keyword", "not"):
            return self.comparison()
        token = self.advance()
        self.nest(token.pos)
        operand = self.not_()
        self.depth -= 1
        self.condition(operand, "'not'")
        return _Not(operand, token.pos)

    def comparison(self) -> _Node:
        left = self.operand("a condition")
        node = self.compared(left)
        if node is not left and (self.at("op") or self.at("keyword", "in") or self.at("keyword", "not")
                                 and self.peek(1).text == "in"):
            self.fail(self.peek().pos, "comparisons do not chain: join them with and, e.g. 1 < x and x < 5")
        return node

    def compared(self, left: _Node) -> _Node:
        token = self.peek()
        if token.kind == "op":
            self.advance()
            right = self.operand(f"a column, a literal or a function call after {token.text!r}")
            self.check_comparison(token, left, right)
            return _Compare(token.text, left, right, left.pos)
        negated = token.kind == "keyword" and token.text == "not"
        if negated:
            self.advance()
            if not self.at("keyword", "in"):
                self.fail(self.peek().pos, f"expected in after not (as in x not in [...]), "
                                           f"found {self.found(self.peek())}")
        if negated or token.kind == "keyword" and token.text == "in":
            self.advance()
            values, kinds = self.list_()
            for value, (kind, pos) in zip(values, kinds):
                if kind != left.kind:
                    self.fail(pos, f"{_describe(left)} cannot be compared with {_describe(_Literal(value, kind, pos))}")
            return _In(left, values, negated, left.pos)
        return left

    def check_comparison(self, op: _Token, left: _Node, right: _Node):
        if left.kind != right.kind:
            hint = ""
            text, other = (right, left) if isinstance(right, _Literal) and right.kind == "text" else (left, right)
            if isinstance(text, _Literal) and text.kind == "text" and other.kind == "number" and _numeric(text.value):
                hint = f"; write the number without quotes: {text.value.strip()}"
            self.fail(right.pos, f"{_describe(left)} cannot be compared with {_describe(right)}{hint}")
        if op.text not in ("==", "!=") and left.kind not in ORDERED_KINDS:
            self.fail(op.pos, f"{op.text!r} needs numbers, but {_describe(left)} is {left.kind}: "
                              f"{left.kind} is compared with ==, !=, in or not in")

    def operand(self, expected: str) -> _Node:
        token = self.peek()
        if token.kind == "(":
            self.advance()
            self.nest(token.pos)
            node = self.or_()
            self.depth -= 1
            self.expect(")", f"')' to close the '(' at character {token.pos + 1}")
            return node
        if token.kind == "name":
            self.advance()
            if self.tokens[self.i].kind == "(":  # not peek: a bad character after the name comes second
                return self.call(token)
            return self.column(token)
        if token.kind == "[":
            self.fail(token.pos, "a list only follows in / not in, e.g. x in ['High', 'Medium']")
        if token.kind in ("number", "string", "-") or token.kind == "keyword" and token.text in BOOLEANS:
            value, kind = self.literal()
            return _Literal(value, kind, token.pos)
        self.fail(token.pos, f"expected {expected}, found {self.found(token)}")

    def literal(self) -> tuple[object, Kind]:
        token = self.advance()
        if token.kind == "number":
            return token.value, "number"
        if token.kind == "string":
            return token.value, "text"
        if token.kind == "keyword" and token.text in BOOLEANS:
            return BOOLEANS[token.text], "bool"
        if token.kind == "-" and self.at("number"):
            return -self.advance().value, "number"
        if token.kind == "-":
            self.fail(token.pos, "'-' only makes a negative number such as -5; arithmetic is not part of the "
                                 "rule language")
        self.fail(token.pos, f"expected a literal (a number, 'text', true or false), found {self.found(token)}")

    def list_(self) -> tuple[tuple, list[tuple[Kind, int]]]:
        """A list of scalar literals in [...] or (...), with each element's kind and position."""
        opening = self.peek()
        if opening.kind not in ("[", "("):
            self.fail(opening.pos, f"expected a list after in, e.g. ['High', 'Medium'], found {self.found(opening)}")
        self.advance()
        closing = "]" if opening.kind == "[" else ")"
        values, kinds = [], []
        while not self.at(closing):
            token = self.peek()
            if token.kind in ("[", "("):
                self.fail(token.pos, "lists hold literals, not lists")
            if token.kind == "name":
                self.fail(token.pos, f"lists hold literals, not columns: quote text, e.g. '{token.text}'")
            value, kind = self.literal()
            values.append(value)
            kinds.append((kind, token.pos))
            if not self.at(closing):
                self.expect(",", f"',' or {closing!r} in the list opened at character {opening.pos + 1}")
        self.advance()
        return tuple(values), kinds

    def column(self, token: _Token) -> _Column:
        name = token.text
        if name in self.columns:
            return _Column(name, self.columns[name], token.pos)
        if name in self.functions or name == IS_MISSING:
            self.fail(token.pos, f"{name} is a function: call it with its arguments, e.g. {name}(...)")
        if name.lower() in KEYWORDS:
            self.fail(token.pos, f"write {name.lower()} in lower case")
        lowered = {c.lower(): c for c in self.columns}
        close = [lowered[name.lower()]] if name.lower() in lowered else [
            lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.7)]
        suggestion = f"; did you mean {' or '.join(close)}?" if close else "."
        self.fail(token.pos, f"unknown column {name!r}{suggestion} {COLUMNS_HELP}")

    def call(self, token: _Token) -> _Node:
        name = token.text
        if name == IS_MISSING:
            self.advance()
            argument = self.peek()
            if argument.kind != "name":
                self.fail(argument.pos, f"{IS_MISSING} takes a column name, e.g. {IS_MISSING}(churn_risk)")
            column = self.column(self.advance())
            self.expect(")", f"')' after {IS_MISSING}'s one column")
            return _IsMissing(column, token.pos)
        if name not in self.functions:
            if name in self.columns:
                self.fail(token.pos, f"{name} is a column, not a function")
            allowed = sorted(self.functions | {IS_MISSING})
            close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            suggestion = f" (did you mean {close[0]}?)" if close else ""
            self.fail(token.pos, f"unknown function {name!r}{suggestion}; the allowed functions are "
                                 f"{', '.join(allowed)}")
        opening = self.advance()
        args = []
        while not self.at(")"):
            argument = self.peek()
            if argument.kind in ("[", "("):
                args.append(self.list_()[0])
            elif argument.kind == "name":
                self.fail(argument.pos, f"the arguments of {name} are literals (numbers, 'text', true/false, lists), "
                                        f"not columns: quote text, e.g. '{argument.text}'")
            else:
                args.append(self.literal()[0])
            if not self.at(")"):
                self.expect(",", f"',' or ')' in the call opened at character {opening.pos + 1}")
        self.advance()
        return _Call(name, tuple(args), token.pos)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- evaluation ----------------------------------------------------------------------------------------

OPERATORS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
             ">=": operator.ge}


class _Evaluation:
    """One rule over one frame. Conditions are (true, unknown) pairs of bool arrays: three-valued logic
    kept exact until `Rule.evaluate` takes the true part. Values are Series (columns, or conditions as
    nullable booleans) or Python scalars (literals)."""

    def __init__(self, rule: Rule, frame: pd.DataFrame, functions: Mapping[str, RuleFunction]):
        self.rule, self.frame, self.functions = rule, frame, functions
        self.n = len(frame)
        self.read: dict[str, pd.Series] = {}
        self.answered: dict[tuple[str, tuple], tuple[np.ndarray, np.ndarray]] = {}

    def fail(self, pos: int, reason: str) -> NoReturn:
        raise RuleError(reason, self.rule.text, pos)

    def known(self) -> np.ndarray:
        return np.zeros(self.n, dtype=bool)

    def condition(self, node: _Node) -> tuple[np.ndarray, np.ndarray]:
        match node:
            case _Literal(value=value):
                return np.full(self.n, bool(value)), self.known()
            case _Column():
                return _truth(self.column(node))
            case _IsMissing(column=column):
                return self.column(column).isna().to_numpy(), self.known()
            case _Call():
                return self.call(node)
            case _Compare(op=op, left=left, right=right):
                a, b = self.value(left), self.value(right)
                return self.compared(OPERATORS[op](a, b), _missing(a, self.n) | _missing(b, self.n))
            case _In(operand=operand, values=values, negated=negated):
                a = self.value(operand)
                hit = a.isin(list(values)) if isinstance(a, pd.Series) else a in values
                true, unknown = self.compared(hit, _missing(a, self.n))
                return (~true & ~unknown if negated else true), unknown
            case _Not(operand=operand):
                true, unknown = self.condition(operand)
                return ~true & ~unknown, unknown
            case _Logic(op="and", operands=operands):
                true, false = np.ones(self.n, dtype=bool), self.known()
                for operand in operands:
                    t, u = self.condition(operand)
                    true &= t
                    false |= ~t & ~u
                return true, ~true & ~false
            case _Logic(op="or", operands=operands):
                true, false = self.known(), np.ones(self.n, dtype=bool)
                for operand in operands:
                    t, u = self.condition(operand)
                    true |= t
                    false &= ~t & ~u
                return true, ~true & ~false
        raise AssertionError(f"not a condition: {node!r}")

    def compared(self, hit, unknown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(hit, pd.Series):
            hit = hit.to_numpy(dtype=bool, na_value=False)
        else:
            hit = np.full(self.n, bool(hit))
        return hit & ~unknown, unknown

    def value(self, node: _Node):
        match node:
            case _Literal(value=value):
                return value
            case _Column():
                return self.column(node)
        true, unknown = self.condition(node)
        return pd.Series(pd.arrays.BooleanArray(true, unknown), index=self.frame.index)

    def column(self, node: _Column) -> pd.Series:
        """The column as its kind compares: numbers numeric, bools true/false/missing."""
        if node.name in self.read:
            return self.read[node.name]
        if node.name not in self.frame.columns:
            self.fail(node.pos, f"column {node.name!r} is not in the data being evaluated")
        series = self.frame[node.name]
        try:
            if node.kind == "number" and not pd.api.types.is_numeric_dtype(series):
                series = pd.to_numeric(series)
            elif node.kind == "bool" and not pd.api.types.is_bool_dtype(series):
                series = series.astype("boolean")
        except (TypeError, ValueError):
            self.fail(node.pos, f"column {node.name!r} is declared {node.kind} but holds other values "
                                f"(dtype {series.dtype})")
        self.read[node.name] = series
        return series

    def call(self, node: _Call) -> tuple[np.ndarray, np.ndarray]:
        key = (node.name, node.args)
        if key not in self.answered:
            function = self.functions.get(node.name)
            if function is None:
                self.fail(node.pos, f"{node.name} is allowed in rules but was not given to evaluate this one")
            answer = function(self.frame, *node.args)
            if not isinstance(answer, pd.Series):
                raise TypeError(f"{node.name}{node.args} answered {type(answer).__name__}, not a bool Series "
                                "aligned with the frame's index")
            if not answer.index.equals(self.frame.index):
                answer = answer.reindex(self.frame.index)  # customers it left out are unknown
            self.answered[key] = _truth(answer)
        return self.answered[key]


def _truth(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if series.dtype == bool:
        return series.to_numpy(), np.zeros(len(series), dtype=bool)
    return series.to_numpy(dtype=bool, na_value=False), series.isna().to_numpy()


def _missing(value, n: int) -> np.ndarray:
    if isinstance(value, pd.Series):
        return value.isna().to_numpy()
    return np.zeros(n, dtype=bool)
