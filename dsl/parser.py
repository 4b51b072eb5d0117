"""Parse program text (a strict subset of Python) into a `Program`. Text is never executed.

The text is read with `ast.parse` and walked node by node; anything outside the language is a
`ParseError` naming file, line and column. Nested expressions are flattened into
single-operation statements.
"""
from __future__ import annotations

import ast
import math
import os
from pathlib import Path
from typing import Optional, Union

from .graph import prune
from .ops import FUNCTIONS, INFIX, OPS
from .program import INPUTS, Arg, Program, Stmt

__all__ = ["ParseError", "parse", "load", "MAX_SOURCE_CHARS", "MAX_DEPTH", "MAX_STATEMENTS"]

MAX_SOURCE_CHARS = 200_000
MAX_DEPTH = 100
MAX_STATEMENTS = 5_000

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_CMPOPS = {ast.Gt: ">", ast.Lt: "<", ast.GtE: ">=", ast.LtE: "<="}
_FORBIDDEN = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambdas",
    ast.IfExp: "conditional expressions (use where(cond, a, b))", ast.BoolOp: "and/or (use where, minimum, maximum)",
    ast.JoinedStr: "strings", ast.List: "lists", ast.Tuple: "tuples", ast.Dict: "dicts",
    ast.Set: "sets", ast.ListComp: "comprehensions", ast.GeneratorExp: "generators",
    ast.DictComp: "comprehensions", ast.SetComp: "comprehensions", ast.Starred: "starred arguments",
    ast.NamedExpr: "the walrus operator", ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
    ast.If: "if statements (use where(cond, a, b))", ast.For: "loops", ast.While: "loops",
    ast.Import: "imports", ast.ImportFrom: "imports", ast.With: "with statements",
    ast.Try: "try statements", ast.Global: "global", ast.Nonlocal: "nonlocal",
    ast.ClassDef: "classes", ast.Delete: "del", ast.Raise: "raise", ast.Assert: "assert",
    ast.AnnAssign: "annotated assignments", ast.FunctionDef: "nested functions",
    ast.AsyncFunctionDef: "async functions", ast.Pass: "pass",
}


class ParseError(ValueError):
    """Program text outside the language. ``str()`` gives ``file:line:col: message``."""

    def __init__(self, msg: str, line: Optional[int] = None, col: Optional[int] = None,
                 filename: str = "<program>", source_line: Optional[str] = None):
        self.msg, self.line, self.col, self.filename = msg, line, col, filename
        self.source_line = source_line
        where = filename
        if line is not None:
            where += f":{line}"
            if col is not None:
                where += f":{col}"
        text = f"{where}: {msg}"
        if source_line is not None and col is not None and len(source_line) <= 200:
            text += f"\n    {source_line}\n    {' ' * max(col - 1, 0)}^"
        super().__init__(text)


def load(path: Union[str, os.PathLike]) -> Program:
    """Parse a program file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SOURCE_CHARS * 4:
            raise ParseError(f"file is {size} bytes; programs are at most {MAX_SOURCE_CHARS} characters",
                             filename=str(path))
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParseError(f"not UTF-8 text ({e.reason})", filename=str(path)) from None
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror}", filename=str(path)) from None
    return parse(text, filename=str(path))


def parse(text: str, filename: str = "<program>") -> Program:
    """Parse program text into a pruned `Program`; raise `ParseError` for anything else."""
    if not isinstance(text, str):
        raise ParseError(f"program text must be str, got {type(text).__name__}", filename=filename)
    if len(text) > MAX_SOURCE_CHARS:
        raise ParseError(f"program text is {len(text)} characters; at most {MAX_SOURCE_CHARS} are allowed",
                         filename=filename)
    lines = text.splitlines()
    try:
        tree = ast.parse(text, filename=filename)
    except SyntaxError as e:
        raise ParseError(f"syntax error: {e.msg}", e.lineno, e.offset, filename,
                         _line(lines, e.lineno)) from None
    except RecursionError:
        raise ParseError("expression nested too deeply for Python's parser", filename=filename) from None
    except (ValueError, MemoryError, OverflowError) as e:
        raise ParseError(f"cannot parse: {type(e).__name__}: {e}"[:300], filename=filename) from None
    return _Builder(tree, lines, filename).program()


def _line(lines: list[str], lineno: Optional[int]) -> Optional[str]:
    if lineno is None or not (1 <= lineno <= len(lines)):
        return None
    return lines[lineno - 1]


def _number(node: ast.AST) -> Optional[float]:
    """A numeric literal, or minus one; None if the node is not one."""
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        try:
            return sign * float(node.value)
        except OverflowError:
            return math.inf
    return None


class _Builder:
    def __init__(self, tree: ast.Module, lines: list[str], filename: str):
        self.tree, self.lines, self.filename = tree, lines, filename
        self.body: list[Stmt] = []
        self.env: dict[str, Arg] = {}
        self.temps: set[str] = set()
        self.used: set[str] = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        self.used |= set(INPUTS) | set(OPS)

    # -- errors --------------------------------------------------------------------------
    def error(self, node: Optional[ast.AST], msg: str) -> ParseError:
        line = getattr(node, "lineno", None)
        col = getattr(node, "col_offset", None)
        col = None if col is None else col + 1
        return ParseError(msg, line, col, self.filename, _line(self.lines, line))

    # -- top level -----------------------------------------------------------------------
    def program(self) -> Program:
        nodes = list(self.tree.body)
        if nodes and _is_docstring(nodes[0]):
            nodes = nodes[1:]
        defs = [n for n in nodes if isinstance(n, ast.FunctionDef)]
        if not defs:
            raise self.error(nodes[0] if nodes else None, "expected one function definition: def name(w, g, lr, t, slot=0.0): ...")
        for n in nodes:
            if not isinstance(n, ast.FunctionDef):
                raise self.error(n, f"only one function definition is allowed at top level, found {_describe(n)}")
        if len(defs) > 1:
            raise self.error(defs[1], "only one function definition is allowed")
        return self.function(defs[0])

    def function(self, fn: ast.FunctionDef) -> Program:
        if fn.decorator_list:
            raise self.error(fn.decorator_list[0], "decorators are not allowed")
        if fn.returns is not None:
            raise self.error(fn.returns, "return annotations are not allowed")
        a = fn.args
        if a.posonlyargs:
            raise self.error(a.posonlyargs[0], "positional-only parameters are not allowed")
        if a.vararg or a.kwarg:
            raise self.error(a.vararg or a.kwarg, "*args and **kwargs are not allowed")
        inputs, slots, hparams = [], [], []
        seen: set[str] = set()
        defaults = [None] * (len(a.args) - len(a.defaults)) + list(a.defaults)
        for arg, default in zip(a.args, defaults):
            self.check_param(arg, seen)
            if arg.arg in INPUTS:
                if default is not None:
                    raise self.error(default, f"input {arg.arg!r} cannot have a default")
                inputs.append(arg.arg)
            else:
                if default is None:
                    raise self.error(arg, f"parameter {arg.arg!r} is not an input ({', '.join(INPUTS)}) and has no "
                                          "default: a state slot needs its initial value, e.g. m=0.0")
                slots.append((arg.arg, self.literal(default, f"initial value of slot {arg.arg!r}")))
        for arg, default in zip(a.kwonlyargs, a.kw_defaults):
            self.check_param(arg, seen)
            if arg.arg in INPUTS:
                raise self.error(arg, f"input {arg.arg!r} must be positional")
            if default is None:
                raise self.error(arg, f"hyperparameter {arg.arg!r} needs a default value")
            hparams.append((arg.arg, self.literal(default, f"default of hyperparameter {arg.arg!r}")))
        for x in inputs:
            self.env[x] = x
        for x, _ in (*slots, *hparams):
            self.env[x] = x
        self.inputs, self.slots, self.hparams = inputs, slots, hparams
        self.assigned_later = {t.id for n in ast.walk(fn) if isinstance(n, (ast.Assign, ast.AugAssign))
                               for t in ([n.target] if isinstance(n, ast.AugAssign) else n.targets)
                               if isinstance(t, ast.Name)}

        stmts = list(fn.body)
        if stmts and _is_docstring(stmts[0]):
            stmts = stmts[1:]
        update: Optional[Arg] = None
        for i, st in enumerate(stmts):
            if isinstance(st, ast.Return):
                if i != len(stmts) - 1:
                    raise self.error(stmts[i + 1], "statements after return are not allowed")
                if st.value is None:
                    raise self.error(st, "return needs a value: the update")
                update = self.expr(st.value, 0)
            elif isinstance(st, ast.Assign):
                self.assign(st)
            elif isinstance(st, ast.AugAssign):
                self.augassign(st)
            else:
                raise self.error(st, f"{_describe(st)} are not allowed: the body is assignments and one final return")
        if update is None:
            raise self.error(fn, f"function {fn.name!r} has no return statement: return the update")
        next_state = []
        for (x, _), arg in zip(slots, a.args[len(inputs):]):
            if x not in self.assigned_later:
                raise self.error(arg, f"state slot {x!r} is never assigned; a slot must be updated in the body")
            next_state.append(self.env[x])
        try:
            p = Program(fn.name, tuple(inputs), tuple(slots), tuple(hparams), tuple(self.body),
                        update, tuple(next_state))
        except ValueError as e:  # only reachable through a bug in this builder
            raise self.error(fn, f"internal error building the program: {e}") from None
        return prune(p)

    def check_param(self, arg: ast.arg, seen: set[str]) -> None:
        if arg.annotation is not None:
            raise self.error(arg.annotation, "annotations are not allowed")
        if arg.arg in seen:
            raise self.error(arg, f"duplicate parameter {arg.arg!r}")
        if arg.arg in OPS:
            raise self.error(arg, f"parameter {arg.arg!r} shadows the function of that name")
        seen.add(arg.arg)

    def literal(self, node: ast.AST, what: str) -> float:
        v = _number(node)
        if v is None:
            raise self.error(node, f"{what} must be a number")
        if not math.isfinite(v):
            raise self.error(node, f"{what} must be finite")
        return v

    # -- statements ----------------------------------------------------------------------
    def check_target(self, node: ast.AST) -> str:
        if not isinstance(node, ast.Name):
            raise self.error(node, f"can only assign to a plain name, not {_describe(node)}")
        x = node.id
        if x in INPUTS:
            raise self.error(node, f"cannot assign to input {x!r}")
        if x in dict(self.hparams):
            raise self.error(node, f"cannot assign to hyperparameter {x!r}")
        if x in OPS:
            raise self.error(node, f"cannot assign to {x!r}: it is a function name")
        return x

    def assign(self, st: ast.Assign) -> None:
        if len(st.targets) != 1:
            raise self.error(st, "chained assignment (a = b = ...) is not allowed")
        x = self.check_target(st.targets[0])
        self.bind(x, self.expr(st.value, 0))

    def augassign(self, st: ast.AugAssign) -> None:
        x = self.check_target(st.target)
        sym = _BINOPS.get(type(st.op))
        if sym is None:
            raise self.error(st, f"operator {type(st.op).__name__} is not supported")
        if x not in self.env:
            raise self.error(st.target, f"name {x!r} is used before assignment")
        rhs = self.expr(st.value, 0)
        self.bind(x, self.emit(INFIX[sym], (self.env[x], rhs), st))

    def bind(self, x: str, value: Arg) -> None:
        """Bind name ``x``; a freshly computed value takes the name (or a fresh variant of it)."""
        if isinstance(value, str) and value in self.temps:
            name = x if x not in self.env else self.fresh(x + "_")
            last = self.body[-1]
            assert last.target == value
            self.body[-1] = Stmt(name, last.op, last.args)
            self.temps.discard(value)
            value = name
        self.env[x] = value

    def fresh(self, base: str) -> str:
        i = 1
        while f"{base}{i}" in self.used:
            i += 1
        name = f"{base}{i}"
        self.used.add(name)
        return name

    # -- expressions ---------------------------------------------------------------------
    def emit(self, op: str, args: tuple[Arg, ...], node: ast.AST) -> str:
        if len(self.body) >= MAX_STATEMENTS:
            raise self.error(node, f"program too long: more than {MAX_STATEMENTS} operations")
        name = self.fresh("x")
        self.temps.add(name)
        self.body.append(Stmt(name, op, args))
        return name

    def expr(self, node: ast.AST, depth: int) -> Arg:
        if depth > MAX_DEPTH:
            raise self.error(node, f"expression nested too deeply (more than {MAX_DEPTH} levels)")
        d = depth + 1
        num = _number(node)
        if num is not None:
            if not math.isfinite(num):
                raise self.error(node, "numeric literal is not finite")
            return num
        if isinstance(node, ast.Constant):
            raise self.error(node, f"{type(node.value).__name__} constants are not allowed; only numbers")
        if isinstance(node, ast.Name):
            x = node.id
            if x in self.env:
                return self.env[x]
            if x in OPS:
                raise self.error(node, f"{x!r} is a function: call it, e.g. {x}(...)")
            if x in self.assigned_later:
                raise self.error(node, f"name {x!r} is used before assignment")
            raise self.error(node, f"undefined name {x!r}")
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.UAdd):
                return self.expr(node.operand, d)
            if isinstance(node.op, ast.USub):
                return self.emit("neg", (self.expr(node.operand, d),), node)
            raise self.error(node, f"unary operator {type(node.op).__name__} is not supported")
        if isinstance(node, ast.BinOp):
            sym = _BINOPS.get(type(node.op))
            if sym is None:
                raise self.error(node, f"operator {type(node.op).__name__} is not supported (use + - * / **)")
            a = self.expr(node.left, d)
            b = self.expr(node.right, d)
            return self.emit(INFIX[sym], (a, b), node)
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise self.error(node, "chained comparisons are not allowed")
            sym = _CMPOPS.get(type(node.ops[0]))
            if sym is None:
                raise self.error(node, f"comparison {type(node.ops[0]).__name__} is not supported (use > < >= <=)")
            a = self.expr(node.left, d)
            b = self.expr(node.comparators[0], d)
            return self.emit(INFIX[sym], (a, b), node)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise self.error(node, f"only calls of functions by name are allowed, not of {_describe(node.func)}")
            fname = node.func.id
            o = FUNCTIONS.get(fname)
            if o is None:
                raise self.error(node.func, f"unknown function {fname!r}; known: {', '.join(sorted(FUNCTIONS))}")
            if node.keywords:
                raise self.error(node.keywords[0], f"keyword arguments are not allowed in a call of {fname}")
            if len(node.args) != o.arity:
                raise self.error(node, f"{fname} takes {o.arity} argument{'s' if o.arity != 1 else ''}, "
                                       f"got {len(node.args)}")
            args = tuple(self.expr(x, d) for x in node.args)
            return self.emit(fname, args, node)
        raise self.error(node, f"{_describe(node)} are not allowed in an expression")


def _is_docstring(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _describe(node: ast.AST) -> str:
    return _FORBIDDEN.get(type(node), f"{type(node).__name__} nodes")
