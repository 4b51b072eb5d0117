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
from .symbolic import SymbolicForm, equivalent, simplify, to_math, to_sympy

__all__ += ["SymbolicForm", "draw_png", "equivalent", "export_optimizer", "simplify", "to_math", "to_sympy"]
