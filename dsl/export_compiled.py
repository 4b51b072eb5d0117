"""The compiled form of an exported optimizer (`dsl.export_optimizer(..., compile=True)`).

The generated module keeps the uncompiled step and adds, like `dsl.compiled_step` does for
`ProgramOptimizer(compile=True)`:

- ``_scalars(w, lr, t, *hyperparameters)``: the statements of numbers only (``1 - beta2 ** t``),
  computed outside the compiled code in float64 exactly as the uncompiled step computes them;
- ``_step_all(ps, gs, *slot lists, scalars)``: the program's tensor statements for every
  parameter of a group, slots and parameters updated in place (``copy_``, ``sub_``), handed
  once to ``torch.compile`` (``fullgraph=True, dynamic=False``). Every number that changes
  between steps (``lr``, ``t``, hyperparameters and their statements) enters as a 0-dim tensor
  of the parameters' dtype, so a scheduler changing ``lr`` never recompiles; a new set of
  parameter shapes compiles once more.

A group steps uncompiled when its parameters differ in dtype, device or step count, when slot
tensors share memory, or (after one `CompileUnavailable` warning) when ``torch.compile`` fails.
``compile_seconds`` is the time of first calls (trace, code generation, one step).
Numbers agree with the uncompiled step within float rounding (fused kernels), not bit for bit;
a ``where`` whose condition is a number picks with ``torch.where`` on a 0-dim tensor, as
`dsl.compiled_step` does.
"""
from __future__ import annotations

from typing import Callable

from .program import Arg, Program

__all__ = ["module_functions", "step_methods"]

_OWN = '''
def _own(v, inputs):
    """``v``, copied when it is one of the step's input tensors (read before anything is written)."""
    return v.clone() if isinstance(v, torch.Tensor) and any(v is x for x in inputs) else v
'''


def module_functions(p: Program, local: dict, scalar_lines: list[str], tensor_lines: list[str],
                     group_mode: bool, text: Callable[[Arg], str], is_tensor: Callable[[Arg], bool]) -> list[str]:
    """Source lines of ``CompileUnavailable``, ``_own``, ``_scalars`` and ``_step_all``."""
    hp = [local[x] for x in p.hparam_names]
    inputs = ["lr", "t", *hp, *(line.split(" = ", 1)[0] for line in scalar_lines)]
    read = _scalar_reads(p, local, tensor_lines, inputs, is_tensor)
    out = [
        "",
        "class CompileUnavailable(RuntimeWarning):",
        '    """torch.compile failed for the step: the optimizer steps uncompiled."""',
        "",
        _OWN,
        "",
        f"def _scalars(w, lr, t{''.join(', ' + h for h in hp)}):",
        '    """The numbers a step reads, in float64 as the uncompiled step computes them."""',
        *("    " + line for line in scalar_lines),
        f"    return [{', '.join(read)}]",
        "",
        "",
    ]
    slots = [f"_s{j}" for j in range(len(p.slot_names))]
    out.append(f"def _step_all(ps, gs, {''.join(s + ', ' for s in slots)}scalars):")
    out.append('    """One step of every parameter in place: the compiled code (numbers as 0-dim tensors)."""')
    if read:
        out.append(f"    {', '.join(read)}, = scalars")
    changed = [(j, x, a) for j, (x, a) in enumerate(zip(p.slot_names, p.next_state)) if a != x]
    if group_mode:
        out += ["    w = ps", "    g = gs"]
        out += [f"    {local[x]} = {s}" for x, s in zip(p.slot_names, slots)]
        out += ["    " + line for line in tensor_lines]
        out.append("    for i in range(len(ps)):")
        ind = "        "
        out.append(ind + f"_in = (ps[i], gs[i]{''.join(f', {s}[i]' for s in slots)})")
        value = lambda a: f"{text(a)}[i]" if is_tensor(a) else text(a)  # noqa: E731
        dst = lambda j: f"{slots[j]}[i]"  # noqa: E731
        param = "ps[i]"
    else:
        out.append("    for i in range(len(ps)):")
        ind = "        "
        out += [ind + "w = ps[i]", ind + "g = gs[i]"]
        out += [ind + f"{local[x]} = {s}[i]" for x, s in zip(p.slot_names, slots)]
        out += [ind + line for line in tensor_lines]
        out.append(ind + f"_in = (w, g{''.join(', ' + local[x] for x in p.slot_names)})")
        value = text
        dst = lambda j: local[p.slot_names[j]]  # noqa: E731
        param = "w"
    for j, x, a in changed:
        if isinstance(a, str):
            out.append(ind + f"_n{j} = _own({value(a)}, _in)")
    if isinstance(p.update, str):
        out.append(ind + f"_u = _own({value(p.update)}, _in)")
    for j, x, a in changed:
        out.append(ind + (f"{dst(j)}.copy_(_n{j})" if isinstance(a, str) else f"{dst(j)}.fill_({text(a)})"))
    out.append(ind + f"{param}.sub_({'_u' if isinstance(p.update, str) else text(p.update)})")
    out.append("")
    return out


def _scalar_reads(p: Program, local: dict, tensor_lines: list[str], names: list[str],
                  is_tensor: Callable[[Arg], bool]) -> list[str]:
    """The number names the compiled code reads (in ``names`` order): in tensor statements, as
    the update or as a slot's next value."""
    import re

    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", "\n".join(tensor_lines)))
    for a in (p.update, *p.next_state):
        if isinstance(a, str) and not is_tensor(a):
            words.add(local[a])
    return [n for n in dict.fromkeys(names) if n in words]


def step_methods(p: Program, cls: str, local: dict, hp_names: list[str]) -> list[str]:
    """``_step_compiled`` (indented for the class body): the group's compiled step, or False."""
    hp = [local[x] for x in hp_names]
    slot_lists = ", ".join(f'[self.state[q]["{x}"] for q in ps]' for x in p.slot_names)
    return [
        "",
        f"    def _step_compiled(self, ps, lr{''.join(', ' + h for h in hp)}):",
        '        """Step the group\'s parameters ``ps`` with the compiled code; False: not taken."""',
        "        if self._compile_failed:",
        "            return False",
        "        w0 = ps[0]",
        '        steps = {self.state[q]["step"] for q in ps}',
        "        if len(steps) > 1 or any(q.dtype != w0.dtype or q.device != w0.device for q in ps):",
        "            return False",
        f"        slots = [{slot_lists}]" if p.slot_names else "        slots = []",
        "        mem = [x.data_ptr() for xs in slots for x in xs]",
        "        if len(set(mem)) < len(mem) or set(mem) & {q.data_ptr() for q in ps}:",
        "            return False  # slots that share memory cannot be written in place",
        "        dtype = w0.dtype if w0.dtype in (torch.float32, torch.float64) else torch.float32",
        f"        scalars = [torch.tensor(v, dtype=dtype, device=w0.device) for v in "
        f"_scalars(w0, lr, steps.pop(){''.join(', ' + h for h in hp)})]",
        "        args = (ps, [q.grad for q in ps], *slots, scalars)",
        "        key = tuple((q.shape, q.dtype, q.device) for q in ps)",
        "        if key in self._compiled_for:",
        "            self._compiled(*args)",
        "            return True",
        "        start = time.perf_counter()",
        "        try:",
        "            if self._compiled is None:",
        "                self._compiled = torch.compile(_step_all, **self._compile_options)",
        "            self._compiled(*args)",
        "        except Exception as e:  # any backend failure: fall back, once, loudly (nothing was written)",
        "            self._compile_failed = True",
        "            first = str(e).splitlines()[0] if str(e) else ''",
        f'            warnings.warn(f"torch.compile of the {cls} step failed ({{type(e).__name__}}: {{first}}); "',
        '                          "stepping uncompiled", CompileUnavailable, stacklevel=3)',
        "            return False",
        "        self.compile_seconds += time.perf_counter() - start",
        "        self._compiled_for.add(key)",
        "        return True",
    ]
