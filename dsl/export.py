"""Export a program as the source of a standalone ``torch.optim.Optimizer`` (plain torch, no dsl).

The generated file imports only ``torch``. Each statement of the program becomes one line of
real torch code, spelled by the op table's ``code`` templates (``torch.sign``, ``torch.lerp``,
``torch.where``, ``torch.clamp``, ``torch.linalg.vector_norm``, ...). Statements whose arguments
are all scalars (``1 - beta1 ** t``) are computed once per parameter on 0-dim float64 tensors
and kept as Python floats, like `dsl.compile` does, so IEEE semantics (1/0 = inf) carry over.
The class docstring holds the program text and its math; hyperparameters are constructor
arguments with the program's defaults, slots live in ``self.state[p]`` next to ``step``.
"""
from __future__ import annotations

import ast
import keyword
import re
from typing import Optional

from .graph import prune
from .ops import OPS, helper_source
from .printer import to_text
from .program import Arg, Program

__all__ = ["export_optimizer"]

# Names the generated code itself uses; program names equal to one of them are renamed.
_RESERVED = {"torch", "self", "p", "group", "state", "closure", "loss", "params", "defaults",
             "w", "g", "lr", "t", "_f64", "__class__", "ps", "math", "zip",
             "float", "len", "dict", "super", "ValueError", "RuntimeError",  # builtins it calls
             "gs", "i", "range", "time", "warnings", "CompileUnavailable", "Exception", "isinstance",
             "any", "tuple", "type", "str", "set"}  # and its compiled form (dsl.export_compiled)
_FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "open", "getattr", "setattr"}


class _Val:
    """An argument as code: ``{i}`` gives the text, ``{i:t}`` makes a scalar a tensor like ``w``."""

    def __init__(self, text: str, tensor: bool):
        self.text, self.tensor = text, tensor

    def __format__(self, spec: str) -> str:
        if spec == "t" and not self.tensor:
            return f"w.new_tensor({self.text})"
        if spec in ("", "t"):
            return self.text
        raise ValueError(f"unknown format spec {spec!r} in an op code template")


def _float_literal(v: float) -> str:
    text = repr(float(v))
    return f"({text})" if text.startswith("-") else text


def _class_name(name: str) -> str:
    parts = [x for x in re.split(r"[^0-9A-Za-z]+", name) if x]
    cls = "".join(x[:1].upper() + x[1:] for x in parts) or "Exported"
    if cls[0].isdigit():
        cls = "Opt" + cls
    if keyword.iskeyword(cls) or cls in _FORBIDDEN_CALLS:
        cls += "Optimizer"
    return cls


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


def _docstring_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', "'''")


def export_optimizer(program: Program, class_name: Optional[str] = None, compile: bool = False) -> str:  # noqa: A002
    """Python source of a standalone module defining a ``torch.optim.Optimizer`` for ``program``.

    The class (``class_name``, default: the program's name in CamelCase) takes ``params``,
    ``lr=1e-3`` and one keyword per hyperparameter with the program's default; ``step``
    supports a closure and skips parameters without a gradient. It matches
    `dsl.ProgramOptimizer` step for step. A program name that equals a name the generated code
    uses (``p``, ``state``, ``group``, ``float``, ...) gets a trailing underscore; for a
    hyperparameter that is also its constructor argument and param-group key.
    ``compile``: the step over all parameters is handed to ``torch.compile`` (the module
    imports ``time`` and ``warnings`` besides torch; see `dsl.export_compiled`).
    """
    p = prune(program)
    if "step" in p.slot_names:
        raise ValueError("a state slot may not be called 'step' (the exported optimizer keeps the step count there)")
    cls = class_name or _class_name(p.name)
    if not cls.isidentifier() or keyword.iskeyword(cls):
        raise ValueError(f"class name {cls!r} is not a Python identifier")

    # -- local names ------------------------------------------------------------------
    taken = set(_RESERVED) | set(keyword.kwlist) | {cls}
    local: dict[str, str] = {x: x for x in ("w", "g", "lr", "t")}

    def fresh(name: str) -> str:
        cand = name
        while cand in taken:
            cand += "_"
        taken.add(cand)
        return cand

    for x in p.slot_names:
        local[x] = fresh(x)
    for x in p.hparam_names:
        local[x] = fresh(x)
    for s in p.body:
        local[s.target] = fresh(s.target)

    # -- kinds: Python float scalars vs tensors (full parameter shape or reduced) ------
    tensor = {"w": True, "g": True, "lr": False, "t": False}
    full = {"w": True, "g": True}
    for x in p.slot_names:
        tensor[x] = full[x] = True
    for x in p.hparam_names:
        tensor[x] = False

    def is_tensor(a: Arg) -> bool:
        return not isinstance(a, float) and tensor[a]

    def is_full(a: Arg) -> bool:
        return not isinstance(a, float) and full.get(a, False)

    def text(a: Arg) -> str:
        return _float_literal(a) if isinstance(a, float) else local[a]

    # group mode (a whole-group function such as global_norm): every value of a step is a list
    # over the parameters with a gradient, each statement a comprehension over them
    group_mode = any(OPS[s.op].group is not None for s in p.body)
    helpers: list[str] = []
    lines: list[str] = []
    uses_f64 = False
    # the compiled form (dsl.export_compiled): numbers are 0-dim tensors inside the compiled step,
    # statements of numbers only are computed outside it
    tensor_lines: list[str] = []
    scalar_lines: list[str] = []

    def cval(a: Arg) -> _Val:  # a number's name is a 0-dim tensor in the compiled step
        return _Val(text(a), is_tensor(a) or not isinstance(a, float))

    for s in p.body:
        o = OPS[s.op]
        helpers += o.helpers
        if not o.code:
            raise ValueError(f"op {s.op!r} has no code template for export")
        if o.never_scalar or any(is_tensor(a) for a in s.args):
            tensor[s.target] = True
            # (a scalar-condition where may give a number or its argument itself: not full, so
            # slot writes broadcast and copy it)
            full[s.target] = (not o.shaped and any(is_full(a) for a in s.args)
                              and not (o.code_scalar_first and not is_tensor(s.args[0])))
            scalar_first = bool(o.code_scalar_first) and not is_tensor(s.args[0])
            # compiled: a number's condition is a 0-dim tensor there, so torch.where picks (as
            # ProgramOptimizer(compile=True) does) instead of a Python branch
            ccode = (o.code_scalar_first if scalar_first and isinstance(s.args[0], float) else
                     "torch.where({0} != 0, {1:t}, {2:t})" if scalar_first else o.code)
            if group_mode and o.group is not None:  # a number: the same value for each parameter
                expr = o.code.format(*[_Val(text(a) if is_tensor(a) else f"[w.new_tensor({text(a)}) for w in ps]", True)
                                       for a in s.args])
                cexpr = o.code.format(*[_Val(text(a) if is_tensor(a) else
                                             f"[{text(a)} for w in ps]" if isinstance(a, str) else
                                             f"[w.new_tensor({text(a)}) for w in ps]", True) for a in s.args])
            elif group_mode:
                names = [f"_e{i}" for i, a in enumerate(s.args) if is_tensor(a)]
                it = iter(names)
                args = [_Val(next(it), True) if is_tensor(a) else _Val(text(a), False) for a in s.args]
                it = iter(names)
                cargs = [_Val(next(it), True) if is_tensor(a) else cval(a) for a in s.args]
                lists = ", ".join(text(a) for a in s.args if is_tensor(a))
                code = o.code_scalar_first if scalar_first else o.code
                loop = f" for w, {', '.join(names)} in zip(ps, {lists})]" if names else " for w in ps]"
                expr = f"[{code.format(*args)}{loop}"
                cexpr = f"[{ccode.format(*cargs)}{loop}"
            else:
                code = o.code_scalar_first if scalar_first else o.code
                expr = code.format(*[_Val(text(a), is_tensor(a)) for a in s.args])
                cexpr = ccode.format(*[cval(a) for a in s.args])
            tensor_lines.append(f"{local[s.target]} = {cexpr}")
        else:
            uses_f64 = True
            args = [_Val(f"_f64({text(a)})", True) for a in s.args]
            scalar_lines.append(f"{local[s.target]} = float({o.code.format(*args)})")
            # group mode: w is the list of parameters; a scalar statement takes dtype from the first
            code = re.sub(r"\bw\.", "ps[0].", o.code) if group_mode else o.code
            expr = f"float({code.format(*args)})"
            tensor[s.target] = False
            full[s.target] = False
        lines.append(f"{local[s.target]} = {expr}")

    writes = []
    for x, a in zip(p.slot_names, p.next_state):
        if isinstance(a, str) and a == x:
            continue
        v = "_v" if group_mode else text(a)
        if not is_tensor(a):
            value = f"torch.full_like(w, {text(a)})"
        elif not is_full(a):
            value = f"{v}.expand_as(w).clone()"
        elif a in ("w", "g"):
            value = f"{v}.clone()"
        else:
            value = v
        if group_mode and is_tensor(a):
            writes.append(f'for w, _v in zip(ps, {text(a)}):')
            writes.append(f'    self.state[w]["{x}"] = {value}')
        elif group_mode:
            writes.append('for w in ps:')
            writes.append(f'    self.state[w]["{x}"] = {value}')
        else:
            writes.append(f'state["{x}"] = {value}')

    # -- assemble -----------------------------------------------------------------------
    from .symbolic import to_math  # sympy only when exporting

    try:
        math_text = to_math(p)
    except Exception as e:  # noqa: BLE001 - the docstring must not stop an export
        math_text = f"(not available: {type(e).__name__})\n"
    hp = list(p.hparams)
    sig = ", ".join(["self", "params", "lr=1e-3"] + [f"{local[x]}={v!r}" for x, v in hp])
    defaults = ", ".join(["lr=lr"] + [f"{local[x]}={local[x]}" for x, _ in hp])
    hp_doc = ", ".join(f"``{local[x]}={v!r}``" for x, v in hp) or "none"
    slots_doc = ", ".join(f"``{x}`` (initially {v!r})" for x, v in p.slots) or "none"
    doc = "\n".join([
        f"The update rule ``{p.name}`` as a torch optimizer: ``p <- p - update``.",
        "",
        "Program (the optsearch update-rule language)::",
        "",
        _indent(to_text(p, readable=True).rstrip("\n"), "    "),
        "",
        "Math (a primed slot is its value after the step; t counts steps from 1)::",
        "",
        _indent(math_text.rstrip("\n"), "    "),
        "",
        f"Arguments: ``params``, ``lr`` and the hyperparameters {hp_doc}.",
        f"State per parameter: ``step`` (t) and the slots {slots_doc}.",
    ])
    used_inputs = set(p.inputs)
    out = [
        f'"""{cls}: a standalone optimizer exported from the update-rule program ``{p.name}``.',
        "",
        "Generated by optsearch (dsl.export_optimizer). Needs only torch"
        + (" (and the standard library's time and warnings); the step is compiled with torch.compile"
           " where it can be, and runs uncompiled otherwise." if compile else "."),
        '"""',
        *(["import time", "import warnings", ""] if compile else []),
        "import torch",
        "",
        f"__all__ = [{cls!r}]",
        "",
    ]
    if helpers:
        out += ["", helper_source(helpers), ""]
    if uses_f64:
        out += [
            "",
            "def _f64(x):",
            '    """A Python number as a 0-dim float64 tensor: scalar steps follow IEEE rules (1/0 = inf)."""',
            "    return torch.tensor(x, dtype=torch.float64)",
            "",
        ]
    if compile:
        from .export_compiled import module_functions

        out += module_functions(p, local, scalar_lines, tensor_lines, group_mode, text, is_tensor)
    if compile:
        sig += ", *, compile=True, compile_options=None"
    out += [
        "",
        f"class {cls}(torch.optim.Optimizer):",
        '    """' + _indent(_docstring_safe(doc), "    ").lstrip(),
        '    """',
        "",
        f"    def __init__({sig}):",
        "        if not 0.0 <= lr:",
        '            raise ValueError(f"invalid learning rate: {lr}")',
        f"        defaults = dict({defaults})",
        "        super().__init__(params, defaults)",
        *([
            "        self.compile_seconds = 0.0  # first calls of the compiled step (trace, code generation, one step)",
            "        self._compile_failed = not compile",
            '        self._compile_options = {"fullgraph": True, "dynamic": False, **(compile_options or {})}',
            "        self._compiled = None",
            "        self._compiled_for = set()",
        ] if compile else []),
        "",
        "    @torch.no_grad()",
        "    def step(self, closure=None):",
        '        """One step for every parameter with a gradient; returns the closure\'s loss, if any."""',
        "        loss = None",
        "        if closure is not None:",
        "            with torch.enable_grad():",
        "                loss = closure()",
        "        for group in self.param_groups:",
    ]
    if "lr" in used_inputs or compile:
        out.append('            lr = float(group["lr"])')
    for x, _ in hp:
        out.append(f'            {local[x]} = float(group["{local[x]}"])')
    compiled_call = f"self._step_compiled(ps, lr{''.join(', ' + local[x] for x, _ in hp)})"
    if group_mode:
        out += _group_step(p, cls, local, lines, writes, text, is_tensor, used_inputs,
                           compiled_call if compile else None)
    elif compile:
        out += _per_parameter_compiled(p, cls, local, lines, writes, text, used_inputs, compiled_call)
    else:
        out += [
            '            for p in group["params"]:',
            "                if p.grad is None:",
            "                    continue",
            "                if p.grad.is_sparse:",
            f'                    raise RuntimeError("{cls} does not support sparse gradients")',
            "                state = self.state[p]",
            "                if len(state) == 0:",
            '                    state["step"] = 0.0',
        ]
        for x, v in p.slots:
            if v == 0.0:
                out.append(f'                    state["{x}"] = torch.zeros_like(p, memory_format=torch.preserve_format)')
            else:
                out.append(f'                    state["{x}"] = torch.full_like(p, {v!r}, memory_format=torch.preserve_format)')
        out += [
            '                state["step"] += 1.0',
            "                w = p",
        ]
        if "g" in used_inputs:
            out.append("                g = p.grad")
        if "t" in used_inputs:
            out.append('                t = state["step"]')
        for x in p.slot_names:
            out.append(f'                {local[x]} = state["{x}"]')
        out += ["                " + line for line in lines]
        out += ["                " + line for line in writes]
        out.append(f"                p.sub_({text(p.update)})")
        out += ["        return loss", ""]
    if compile:
        from .export_compiled import step_methods

        out += step_methods(p, cls, local, p.hparam_names) + [""]
    src = "\n".join(out)
    _check(src)
    return src


def _init_state(p: Program, ind: str, zeros: bool) -> list[str]:
    out = [ind + '    state["step"] = 0.0']
    for x, v in p.slots:
        if zeros and v == 0.0:
            out.append(ind + f'    state["{x}"] = torch.zeros_like(p, memory_format=torch.preserve_format)')
        else:
            out.append(ind + f'    state["{x}"] = torch.full_like(p, {v!r}, memory_format=torch.preserve_format)')
    return out


def _per_parameter_compiled(p: Program, cls: str, local: dict, lines: list, writes: list, text,
                            used_inputs: set, compiled_call: str) -> list[str]:
    """The step of a per-parameter program with a compiled form: every parameter's state is
    started and counted, then the compiled step runs, or the uncompiled loop."""
    ind = "            "
    out = [
        ind + 'ps = [p for p in group["params"] if p.grad is not None]',
        ind + "for p in ps:",
        ind + "    if p.grad.is_sparse:",
        ind + f'        raise RuntimeError("{cls} does not support sparse gradients")',
        ind + "    state = self.state[p]",
        ind + "    if len(state) == 0:",
        *_init_state(p, ind + "    ", zeros=True),
        ind + '    state["step"] += 1.0',
        ind + f"if not ps or {compiled_call}:",
        ind + "    continue",
        ind + "for p in ps:",
        ind + "    state = self.state[p]",
        ind + "    w = p",
    ]
    if "g" in used_inputs:
        out.append(ind + "    g = p.grad")
    if "t" in used_inputs:
        out.append(ind + '    t = state["step"]')
    for x in p.slot_names:
        out.append(ind + f'    {local[x]} = state["{x}"]')
    out += [ind + "    " + line for line in lines]
    out += [ind + "    " + line for line in writes]
    out.append(ind + f"    p.sub_({text(p.update)})")
    out += ["        return loss", ""]
    return out


def _group_step(p: Program, cls: str, local: dict, lines: list, writes: list, text, is_tensor,
                used_inputs: set, compiled_call: Optional[str] = None) -> list[str]:
    """The loop body of a group-mode step: lists over the parameters with a gradient."""
    ind = "            "
    out = [
        ind + 'ps = [p for p in group["params"] if p.grad is not None]',
        ind + "if not ps:",
        ind + "    continue",
        ind + "for p in ps:",
        ind + "    if p.grad.is_sparse:",
        ind + f'        raise RuntimeError("{cls} does not support sparse gradients")',
        ind + "    state = self.state[p]",
        ind + "    if len(state) == 0:",
        ind + '        state["step"] = 0.0',
    ]
    for x, v in p.slots:
        out.append(ind + f'        state["{x}"] = torch.full_like(p, {v!r}, memory_format=torch.preserve_format)')
    out += [
        ind + '    state["step"] += 1.0',
        ind + 'if len({(q.device, q.dtype, self.state[q]["step"]) for q in ps}) > 1:',
        ind + f'    raise ValueError("{cls}: a whole-group function needs every parameter with a gradient '
              f'to share device, dtype and step count")',
        *([ind + f"if {compiled_call}:", ind + "    continue"] if compiled_call else []),
        ind + "w = ps",
    ]
    if "g" in used_inputs:
        out.append(ind + "g = [q.grad for q in ps]")
    if "t" in used_inputs:
        out.append(ind + 't = self.state[ps[0]]["step"]')
    for x in p.slot_names:
        out.append(ind + f'{local[x]} = [self.state[q]["{x}"] for q in ps]')
    out += [ind + line for line in lines]
    out += [ind + line for line in writes]
    if is_tensor(p.update):
        out += [ind + f"for q, u in zip(ps, {text(p.update)}):", ind + "    q.sub_(u)"]
    else:
        out += [ind + "for q in ps:", ind + f"    q.sub_({text(p.update)})"]
    out += ["        return loss", ""]
    return out


def _check(src: str) -> None:
    """The generated code must parse and must not call eval/exec or similar. Allowed: the
    attribute ``torch.compile`` and a variable named ``compile`` that is never called."""
    tree = ast.parse(src)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        if name not in _FORBIDDEN_CALLS:
            continue
        if name == "compile" and isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "torch":
            continue
        if name == "compile" and isinstance(node, ast.Name) and id(node) not in called:
            continue
        raise AssertionError(f"generated code uses {name!r}")
