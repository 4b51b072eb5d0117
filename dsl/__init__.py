"""The update-rule language: parse, print, compile and run optimizer programs.

>>> import dsl
>>> p = dsl.parse('''
... def sgd(g, lr):
...     return lr * g
... ''')
>>> print(dsl.to_text(p), end="")
def sgd(g, lr):
    return lr * g
"""
from .compiler import CompiledProgram, compile
from .graph import dataflow_graph, prune, to_dot
from .ops import FUNCTIONS, OPS, Op
from .optimizer import ProgramOptimizer, as_program
from .parser import ParseError, load, parse
from .printer import format_number, to_text
from .program import INPUTS, Arg, Program, ProgramError, Stmt

__all__ = [
    "Arg", "CompiledProgram", "FUNCTIONS", "INPUTS", "OPS", "Op", "ParseError", "Program",
    "ProgramError", "ProgramOptimizer", "Stmt", "as_program", "compile", "dataflow_graph",
    "format_number", "load", "parse", "prune", "to_dot", "to_text",
]
from .draw import draw_png
from .export import export_optimizer
from .symbolic import DEFAULT_TIMEOUT, SymbolicError, numerically_equal

_SYMBOLIC = ("SymbolicForm", "equivalent", "simplified_text", "simplify", "to_math", "to_sympy")

__all__ += ["DEFAULT_TIMEOUT", "SymbolicError", "draw_png", "export_optimizer", "numerically_equal",
            *_SYMBOLIC]


def __getattr__(name: str):
    """The sympy-backed names of `dsl.symbolic`, loaded on first use: ``import dsl`` stays free of
    sympy (evaluation workers never need it)."""
    if name in _SYMBOLIC:
        from . import symbolic

        value = getattr(symbolic, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
