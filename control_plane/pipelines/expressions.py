"""Safe expressions: the language of ``when`` conditions, event filters and query parameters.

An expression is written in Python syntax and read with ``ast.parse(mode="eval")``; it is
then checked against a whitelist and evaluated by walking the tree. Nothing is ever passed
to ``eval``, ``exec`` or ``getattr``, so an expression can read the data it is given and
compute with it, but cannot reach Python objects, the file system or the network.

What an expression may contain:

- Literals: numbers, strings, ``True``, ``False``, ``None``, lists ``[1, 2]``, tuples
  ``(1, 2)``, dicts ``{"a": 1}``, and f-strings ``f"day-{params.day}"`` (with ``!s``/``!r``
  but without format specs).
- Names: only the roots the caller allows. ``when`` conditions and query parameters see
  ``params``, ``steps`` and ``run``; event filters see ``event``.
- Attribute access reads a key of a mapping: ``steps.extract.records`` is
  ``context["steps"]["extract"]["records"]``. Subscripts read keys and indexes with any
  expression: ``steps["extract-users"].outputs[params.column]``, ``rows[0]``, ``name[:4]``.
  A missing key is an error naming the path (``steps.extract.outputs has no key 'total'``);
  use ``.get(key, default)`` when a key may be absent. Attributes starting with ``__`` are
  refused.
- Operators: ``+ - * / // %`` (no ``**`` and no bit operators), unary ``-``, ``+`` and
  ``not``, ``and``/``or`` (short-circuit, returning an operand as Python does), comparisons
  ``== != < <= > >=``, chained (``0 < x <= 10``), ``in``/``not in``, ``is None`` and
  ``is not None``, and ``a if condition else b``. ``%`` is arithmetic only: string
  formatting with ``%`` is refused.
- Calls of the functions ``len min max abs round int float str bool sum any all`` and of the
  methods ``.lower() .upper() .strip() .startswith(x) .endswith(x)`` on strings and
  ``.get(key[, default])`` on mappings. Positional arguments only.

Everything else (lambdas, comprehensions, ``:=``, ``*``/``**`` unpacking, set literals,
other calls) is refused when the expression is parsed, with the construct and its column.

Bounds: the text is at most 2000 characters and 100 levels deep; a string, list or dict an
expression builds holds at most 100,000 characters/items (``"a" * 10**9`` is refused);
integers are at most 256 bits; ``round`` takes at most 100 digits; an evaluation does at
most 1,000,000 units of work. Errors raised while evaluating (a missing key, ``1 / 0``,
``"a" < 1``) are :class:`ExpressionError` with the column of the failing part.
"""

from __future__ import annotations

import ast
import difflib
import operator
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "FUNCTIONS",
    "MAX_LENGTH",
    "MAX_SIZE",
    "METHODS",
    "Expression",
    "ExpressionError",
    "parse_expression",
]

_T = TypeVar("_T")

MAX_LENGTH = 2000
MAX_DEPTH = 100
MAX_SIZE = 100_000
MAX_INT_BITS = 256
MAX_ROUND_DIGITS = 100
MAX_WORK = 1_000_000

FUNCTIONS: dict[str, tuple[int, int]] = {  # name: (min args, max args); -1 for no maximum
    "len": (1, 1),
    "min": (1, -1),
    "max": (1, -1),
    "abs": (1, 1),
    "round": (1, 2),
    "int": (1, 1),
    "float": (1, 1),
    "str": (1, 1),
    "bool": (1, 1),
    "sum": (1, 1),
    "any": (1, 1),
    "all": (1, 1),
}
METHODS: dict[str, tuple[int, int]] = {
    "lower": (0, 0),
    "upper": (0, 0),
    "strip": (0, 1),
    "startswith": (1, 1),
    "endswith": (1, 1),
    "get": (1, 2),
}
_STRING_METHODS: dict[str, Callable[..., Any]] = {
    "lower": str.lower,
    "upper": str.upper,
    "strip": str.strip,
    "startswith": str.startswith,
    "endswith": str.endswith,
}

# Functions whose cost grows with their argument; the others take constant time.
_LINEAR_FUNCTIONS = frozenset({"min", "max", "sum", "any", "all", "str"})
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")
_BINARY: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
}
_REFUSED_OPERATORS: dict[type[ast.AST], str] = {
    ast.Pow: "**",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.BitXor: "^",
    ast.MatMult: "@",
    ast.Invert: "~",
}
_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda a, b: a in b),
    ast.NotIn: ("not in", lambda a, b: a not in b),
    ast.Is: ("is", operator.is_),
    ast.IsNot: ("is not", operator.is_not),
}
_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda expressions are",
    ast.ListComp: "comprehensions are",
    ast.SetComp: "comprehensions are",
    ast.DictComp: "comprehensions are",
    ast.GeneratorExp: "generator expressions are",
    ast.NamedExpr: "assignment expressions (:=) are",
    ast.Await: "await is",
    ast.Yield: "yield is",
    ast.YieldFrom: "yield is",
    ast.Starred: "* unpacking is",
    ast.Set: "set literals are",
}


class ExpressionError(ValueError):
    """An expression that does not parse, is not allowed, or fails while evaluated.

    ``str()`` is the message followed by the position, e.g.
    ``"'parms' is not defined — did you mean 'params'? ... (at column 1)"``;
    ``message`` and ``column`` (1-based, ``None`` when it is about the whole text) are
    available separately.
    """

    def __init__(self, message: str, column: int | None = None, line: int = 1) -> None:
        self.message = message
        self.column = column
        self.line = line
        if column is None:
            text = message
        elif line > 1:
            text = f"{message} (at line {line}, column {column})"
        else:
            text = f"{message} (at column {column})"
        super().__init__(text)


@dataclass(frozen=True)
class _Source:
    """The stripped text that was parsed and where it sits in what the user wrote."""

    text: str
    line_shift: int
    column_shift: int

    @classmethod
    def of(cls, text: str) -> _Source:
        lead = text[: len(text) - len(text.lstrip())]
        return cls(text.strip(), lead.count("\n"), len(lead) - (lead.rfind("\n") + 1))

    def error(self, message: str, node: ast.AST | None) -> ExpressionError:
        if node is None:
            return ExpressionError(message)
        line = getattr(node, "lineno", 1)
        column = getattr(node, "col_offset", 0) + 1
        return self.error_at(message, line, column)

    def error_at(self, message: str, line: int, column: int) -> ExpressionError:
        if line == 1:
            column += self.column_shift
        return ExpressionError(message, column, line + self.line_shift)

    def segment(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or ast.unparse(node)


@dataclass(frozen=True)
class Expression:
    """A parsed, checked expression; evaluate it as many times as needed."""

    text: str
    root_names: frozenset[str]
    _source: _Source = field(repr=False, compare=False)
    _tree: ast.Expression = field(repr=False, compare=False)
    _step_references: frozenset[str] = field(repr=False, compare=False)

    def step_references(self) -> frozenset[str]:
        """Step names read as ``steps.<name>``, ``steps['<name>']`` or ``steps.get('<name>')``."""
        return self._step_references

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The value of the expression with the roots taken from ``context``."""
        return _Evaluator(self._source, context).run(self._tree.body)


def parse_expression(text: str, *, allowed_roots: Collection[str]) -> Expression:
    """Parse and check ``text``; raise :class:`ExpressionError` when it is not allowed."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}"
        )
    source = _Source.of(text)
    if not source.text:
        raise ExpressionError("expression is empty")
    try:
        tree = ast.parse(source.text, mode="eval")
    except SyntaxError as exc:
        raise _syntax_error(source, exc) from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"expression is nested more than {MAX_DEPTH} levels deep") from None
    _check_depth(source, tree)
    if isinstance(allowed_roots, str):
        roots: Sequence[str] = (allowed_roots,)
    elif isinstance(allowed_roots, Sequence):
        roots = allowed_roots
    else:
        roots = sorted(allowed_roots)
    checker = _Checker(source, tuple(dict.fromkeys(roots)))
    checker.visit(tree.body)
    return Expression(
        text=text,
        root_names=frozenset(checker.roots),
        _source=source,
        _tree=tree,
        _step_references=frozenset(checker.steps),
    )


def _syntax_error(source: _Source, exc: SyntaxError) -> ExpressionError:
    message = f"syntax error: {exc.msg}"
    if not exc.offset or exc.offset > len((exc.text or "").rstrip("\n")):
        if exc.msg == "invalid syntax":
            return ExpressionError("syntax error: the expression ends unexpectedly")
        return ExpressionError(message)
    return source.error_at(message, exc.lineno or 1, exc.offset)


def _check_depth(source: _Source, tree: ast.Expression) -> None:
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise source.error(f"expression is nested more than {MAX_DEPTH} levels deep", node)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


class _Checker:
    """Walks a parsed tree, refusing what the language does not allow."""

    def __init__(self, source: _Source, allowed: tuple[str, ...]) -> None:
        self.source = source
        self.allowed = allowed
        self.roots: set[str] = set()
        self.steps: set[str] = set()

    def refuse(self, message: str, node: ast.AST) -> ExpressionError:
        return self.source.error(message, node)

    def visit(self, node: ast.AST) -> None:
        handler = _dispatch(self, "visit", node)
        if handler is None:
            raise self.refuse(f"{_construct_name(node)} not allowed", node)
        handler(node)

    def visit_all(self, nodes: Sequence[ast.AST | None]) -> None:
        for node in nodes:
            if node is not None:
                self.visit(node)

    def visit_constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool) or value is None or isinstance(value, str | float):
            return
        if isinstance(value, int):
            if value.bit_length() > MAX_INT_BITS:
                raise self.refuse(f"integer is larger than {MAX_INT_BITS} bits", node)
            return
        raise self.refuse(f"{type(value).__name__} literals are not allowed", node)

    def visit_name(self, node: ast.Name) -> None:
        if node.id in self.allowed:
            self.roots.add(node.id)
            return
        if node.id in FUNCTIONS:
            raise self.refuse(f"'{node.id}' is a function; call it, as in {node.id}(x)", node)
        raise self.refuse(_unknown_name(node.id, self.allowed), node)

    def visit_attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("__"):
            raise self.refuse(
                f"attribute '{node.attr}' is not allowed: names starting with '__' are reserved",
                node,
            )
        if _is_steps(node.value):
            self.steps.add(node.attr)
        self.visit(node.value)

    def visit_subscript(self, node: ast.Subscript) -> None:
        key = node.slice
        if _is_steps(node.value) and isinstance(key, ast.Constant) and isinstance(key.value, str):
            self.steps.add(key.value)
        self.visit(node.value)
        self.visit(node.slice)

    def visit_slice(self, node: ast.Slice) -> None:
        self.visit_all([node.lower, node.upper, node.step])

    def visit_list(self, node: ast.List) -> None:
        self.visit_all(node.elts)

    def visit_tuple(self, node: ast.Tuple) -> None:
        self.visit_all(node.elts)

    def visit_dict(self, node: ast.Dict) -> None:
        if any(key is None for key in node.keys):
            raise self.refuse("** unpacking in dicts is not allowed", node)
        self.visit_all(node.keys)
        self.visit_all(node.values)

    def visit_bool_op(self, node: ast.BoolOp) -> None:
        self.visit_all(node.values)

    def visit_unary_op(self, node: ast.UnaryOp) -> None:
        if type(node.op) in _REFUSED_OPERATORS:
            op = _REFUSED_OPERATORS[type(node.op)]
            raise self.refuse(f"the {op} operator is not allowed", node)
        self.visit(node.operand)

    def visit_bin_op(self, node: ast.BinOp) -> None:
        if type(node.op) not in _BINARY:
            op = _REFUSED_OPERATORS.get(type(node.op), type(node.op).__name__)
            raise self.refuse(f"the {op} operator is not allowed", node)
        self.visit(node.left)
        self.visit(node.right)

    def visit_compare(self, node: ast.Compare) -> None:
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.Is | ast.IsNot) and not (
                isinstance(right, ast.Constant) and right.value is None
            ):
                raise self.refuse(
                    "'is' compares only with None (x is None); use == for values", node
                )
        self.visit(node.left)
        self.visit_all(node.comparators)

    def visit_if_exp(self, node: ast.IfExp) -> None:
        self.visit_all([node.test, node.body, node.orelse])

    def visit_joined_str(self, node: ast.JoinedStr) -> None:
        self.visit_all(node.values)

    def visit_formatted_value(self, node: ast.FormattedValue) -> None:
        if node.format_spec is not None:
            raise self.refuse("format specs in f-strings are not allowed", node)
        self.visit(node.value)

    def visit_call(self, node: ast.Call) -> None:
        if node.keywords:
            raise self.refuse("keyword arguments are not allowed", node)
        func = node.func
        if isinstance(func, ast.Name) and func.id in FUNCTIONS:
            self.check_arity(f"{func.id}()", FUNCTIONS[func.id], node)
        elif isinstance(func, ast.Attribute) and func.attr in METHODS:
            self.check_arity(f".{func.attr}()", METHODS[func.attr], node)
            first = node.args[0] if node.args else None
            if (
                func.attr == "get"
                and _is_steps(func.value)
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                self.steps.add(first.value)
            self.visit(func.value)
        elif isinstance(func, ast.Attribute):
            methods = ", ".join(f".{m}()" for m in METHODS)
            raise self.refuse(
                f"method calls other than {methods} are not allowed: '{func.attr}'", node
            )
        else:
            functions = ", ".join(FUNCTIONS)
            name = func.id if isinstance(func, ast.Name) else self.source.segment(func)
            raise self.refuse(
                f"function calls other than {functions} are not allowed: '{name}'", node
            )
        self.visit_all(node.args)

    def check_arity(self, name: str, arity: tuple[int, int], node: ast.Call) -> None:
        low, high = arity
        count = len(node.args)
        if count >= low and (high < 0 or count <= high):
            return
        if high < 0:
            wanted = f"at least {low}"
        elif low == high:
            wanted = str(low)
        else:
            wanted = f"{low} to {high}"
        plural = "" if (high if high >= 0 else low) == 1 else "s"
        raise self.refuse(f"{name} takes {wanted} argument{plural}, got {count}", node)


def _dispatch(owner: object, prefix: str, node: ast.AST) -> Callable[[Any], Any] | None:
    """``owner.<prefix>_<node type in snake case>``, e.g. ``visit_bin_op`` for ``ast.BinOp``."""
    name = _SNAKE.sub("_", type(node).__name__).lower()
    handler: Callable[[Any], Any] | None = getattr(owner, f"{prefix}_{name}", None)
    return handler


def _construct_name(node: ast.AST) -> str:
    return _CONSTRUCTS.get(type(node), f"{type(node).__name__} expressions are")


def _is_steps(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "steps"


def _unknown_name(name: str, names: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f" — did you mean '{close[0]}'?" if close else ""
    available = ", ".join(names) if names else "none"
    return f"'{name}' is not defined{hint}; names available: {available}"


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _size(value: Any, limit: int) -> int:
    """Characters plus items in ``value``, nested; stops counting once above ``limit``."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, list | tuple):
            total += len(item)
            stack.extend(item)
        elif isinstance(item, Mapping):
            total += len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
    return total


class _Evaluator:
    """Evaluates a checked tree against a context."""

    def __init__(self, source: _Source, context: Mapping[str, Any]) -> None:
        self.source = source
        self.context = context
        self.work = 0

    def run(self, node: ast.expr) -> Any:
        return self.eval(node)

    def fail(self, message: str, node: ast.AST) -> ExpressionError:
        return self.source.error(message, node)

    def spend(self, units: int, node: ast.AST) -> None:
        self.work += units
        if self.work > MAX_WORK:
            raise self.fail(f"expression does more than {MAX_WORK} units of work", node)

    def bounded(self, value: _T, node: ast.AST) -> _T:
        """``value``, after checking that an expression-built value is not too large."""
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise self.fail(f"integer result is larger than {MAX_INT_BITS} bits", node)
        if isinstance(value, str | list | tuple | dict):
            size = _size(value, MAX_SIZE)
            self.spend(size, node)
            if size > MAX_SIZE:
                raise self.fail(f"result is larger than {MAX_SIZE} characters or items", node)
        return value

    def eval(self, node: ast.AST) -> Any:
        self.spend(1, node)
        handler = _dispatch(self, "eval", node)
        assert handler is not None  # the checker let only handled nodes through
        return handler(node)

    def eval_constant(self, node: ast.Constant) -> Any:
        return node.value

    def eval_name(self, node: ast.Name) -> Any:
        if node.id not in self.context:
            raise self.fail(f"'{node.id}' has no value here", node)
        return self.context[node.id]

    def eval_attribute(self, node: ast.Attribute) -> Any:
        target = self.eval(node.value)
        if not isinstance(target, Mapping):
            path = self.source.segment(node.value)
            raise self.fail(
                f"{path} is {_kind(target)}, not a mapping; it has no attribute '{node.attr}'",
                node,
            )
        return self.lookup(target, node.attr, node.value, node)

    def lookup(
        self, target: Mapping[Any, Any], key: Any, target_node: ast.AST, node: ast.AST
    ) -> Any:
        try:
            return target[key]
        except KeyError:
            path = self.source.segment(target_node)
            raise self.fail(f"{path} has no key {key!r}", node) from None
        except TypeError:
            raise self.fail(f"{_kind(key)} cannot be a key", node) from None

    def eval_subscript(self, node: ast.Subscript) -> Any:
        target = self.eval(node.value)
        key = self.eval(node.slice)
        if isinstance(target, Mapping):
            return self.lookup(target, key, node.value, node)
        path = self.source.segment(node.value)
        if not isinstance(target, str | list | tuple):
            raise self.fail(f"{path} is {_kind(target)}; it cannot be indexed", node)
        if isinstance(key, slice):
            return target[key]
        if not isinstance(key, int) or isinstance(key, bool):
            raise self.fail(f"{path} is {_kind(target)}; index it with an integer", node)
        if not -len(target) <= key < len(target):
            raise self.fail(f"{path} has no index {key} (it has {len(target)} items)", node)
        return target[key]

    def eval_slice(self, node: ast.Slice) -> slice:
        parts = [
            None if part is None else self.eval(part)
            for part in (node.lower, node.upper, node.step)
        ]
        for part in parts:
            if part is not None and (not isinstance(part, int) or isinstance(part, bool)):
                raise self.fail(f"slice bounds must be integers, not {_kind(part)}", node)
        if parts[2] == 0:
            raise self.fail("slice step cannot be zero", node)
        return slice(*parts)

    def eval_list(self, node: ast.List) -> list[Any]:
        return self.bounded([self.eval(item) for item in node.elts], node)

    def eval_tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return self.bounded(tuple(self.eval(item) for item in node.elts), node)

    def eval_dict(self, node: ast.Dict) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            assert key_node is not None  # refused by the checker
            key = self.eval(key_node)
            value = self.eval(value_node)
            try:
                result[key] = value
            except TypeError:
                raise self.fail(f"{_kind(key)} cannot be a key", key_node) from None
        return self.bounded(result, node)

    def eval_bool_op(self, node: ast.BoolOp) -> Any:
        value: Any = None
        for item in node.values:
            value = self.eval(item)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def eval_unary_op(self, node: ast.UnaryOp) -> Any:
        operand = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return not operand
        if not isinstance(operand, int | float):
            op = "-" if isinstance(node.op, ast.USub) else "+"
            raise self.fail(f"unary {op} needs a number, got {_kind(operand)}", node)
        return -operand if isinstance(node.op, ast.USub) else +operand

    def eval_bin_op(self, node: ast.BinOp) -> Any:
        left = self.eval(node.left)
        right = self.eval(node.right)
        symbol, operation = _BINARY[type(node.op)]
        if symbol == "%" and isinstance(left, str):
            raise self.fail("'%' formatting of strings is not allowed; use + and str()", node)
        if symbol == "*":
            self.check_repeat(left, right, node)
        try:
            result = operation(left, right)
        except ZeroDivisionError:
            raise self.fail("division by zero", node) from None
        except (TypeError, ValueError, OverflowError):
            raise self.fail(
                f"cannot apply {symbol} to {_kind(left)} and {_kind(right)}", node
            ) from None
        return self.bounded(result, node)

    def check_repeat(self, left: Any, right: Any, node: ast.AST) -> None:
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, str | list | tuple) and isinstance(count, int):
                size = _size(sequence, MAX_SIZE)
                self.spend(size, node)
                if size * max(count, 0) > MAX_SIZE:
                    raise self.fail(
                        f"result would be larger than {MAX_SIZE} characters or items", node
                    )

    def eval_compare(self, node: ast.Compare) -> bool:
        left = self.eval(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.eval(right_node)
            symbol, operation = _COMPARE[type(op)]
            try:
                outcome = bool(operation(left, right))
            except TypeError:
                raise self.fail(
                    f"cannot compare {_kind(left)} and {_kind(right)} with '{symbol}'", node
                ) from None
            if not outcome:
                return False
            left = right
        return True

    def eval_if_exp(self, node: ast.IfExp) -> Any:
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def eval_joined_str(self, node: ast.JoinedStr) -> str:
        return self.bounded("".join(str(self.eval(part)) for part in node.values), node)

    def eval_formatted_value(self, node: ast.FormattedValue) -> str:
        value = self.eval(node.value)
        self.spend(_size(value, MAX_SIZE), node)
        text = {ord("r"): repr, ord("a"): ascii}.get(node.conversion, str)(value)
        return self.bounded(text, node)

    def eval_call(self, node: ast.Call) -> Any:
        func = node.func
        target = self.eval(func.value) if isinstance(func, ast.Attribute) else None
        args = [self.eval(arg) for arg in node.args]
        try:
            if isinstance(func, ast.Attribute):
                name = f".{func.attr}"
                result = self.call_method(target, func, args, node)
            else:
                assert isinstance(func, ast.Name)  # refused otherwise by the checker
                name = func.id
                result = self.call_function(func.id, args, node)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise self.fail(f"{name}() failed: {exc}", node) from None
        return self.bounded(result, node)

    def call_function(self, name: str, args: list[Any], node: ast.Call) -> Any:
        if name in _LINEAR_FUNCTIONS:
            for arg in args:
                self.spend(_size(arg, MAX_SIZE), node)
        if name == "round" and len(args) == 2:
            digits = args[1]
            if isinstance(digits, int) and abs(digits) > MAX_ROUND_DIGITS:
                raise self.fail(f"round() takes at most {MAX_ROUND_DIGITS} digits", node)
        if name == "len" and not isinstance(args[0], str | list | tuple | Mapping):
            raise self.fail(f"len() needs a string, list or mapping, got {_kind(args[0])}", node)
        if name == "sum" and not all(isinstance(item, int | float) for item in _iterate(args[0])):
            raise self.fail("sum() needs a list of numbers", node)
        builtin: Callable[..., Any] = _BUILTINS[name]
        return builtin(*args)

    def call_method(self, target: Any, func: ast.Attribute, args: list[Any], node: ast.Call) -> Any:
        name = func.attr
        if name in _STRING_METHODS:
            if not isinstance(target, str):
                path = self.source.segment(func.value)
                raise self.fail(f".{name}() needs a string; {path} is {_kind(target)}", node)
            return _STRING_METHODS[name](target, *args)
        if not isinstance(target, Mapping):
            path = self.source.segment(func.value)
            raise self.fail(f".get() needs a mapping; {path} is {_kind(target)}", node)
        return target.get(*args)


def _iterate(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.keys())
    if isinstance(value, str | list | tuple):
        return list(value)
    raise TypeError(f"{_kind(value)} is not iterable")


_BUILTINS: dict[str, Callable[..., Any]] = {
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "sum": sum,
    "any": any,
    "all": all,
}
