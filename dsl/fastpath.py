"""The fast path of `CompiledProgram.step_foreach`: a program compiled into a `Plan`.

The plain path runs a program statement by statement, each statement a ``torch._foreach_*``
call that returns a fresh list of tensors. On CPU a fresh parameter-sized tensor costs page
faults that can cost as much as the arithmetic filling it, and every pass over memory costs.
A plan is built once per program (every decision below is static) and gives the plain
path's results, bit for bit except where noted under 2.

1. Argument kinds. Every value is a *scalar* (a Python float: ``lr``, ``t``, hyperparameters
   and statements of only those), a *full* list (one tensor per parameter with the
   parameter's shape: ``w``, ``g``, slots, and elementwise results with a full argument) or
   another *list* (per-tensor reductions such as ``norm``, every op marked ``shaped`` in the
   op table: ``row_mean``, ``orthogonalize``, ``is_matrix`` and ``aspect`` (never scalars,
   even of scalars), ``global_norm`` (its ``foreach`` form sees the whole list, so a plan steps a whole group),
   and results whose shape the plan does not vouch for). Only full lists are fused or written
   in place.

2. Fusion of single-use temporaries: a statement read once, by the statement that absorbs
   it, and not an output, is never materialized.

   - ``a + b / c`` and ``a - b / c``  -> ``_foreach_addcdiv(a, b, c, value=±1)``
   - update ``-X``                    -> ``_foreach_add_(params, X)``
   - update ``s * X`` (``s`` scalar)  -> ``_foreach_add_(params, X, alpha=-s)``

   The first two are bit-identical to the statements they replace in float32 and float64
   (``b / c`` is rounded before it is added; a product with ±1 is exact); in bfloat16 and
   half, addcdiv rounds once where the statements round twice. The update is a fused
   multiply-add on CPU: ``w - s * X`` rounded once instead of twice, a difference below half
   an ulp of the result for finite weights (it can differ when ``w`` is already infinite).
   Not fused, although torch has the kernels: ``a + s * b`` (``add(alpha=s)``) and
   ``a + b * c`` (``addcmul``). They are fused multiply-adds too, and on a temporary they do
   not just round differently: an overflowing product added to an infinity of the other
   sign gives ±inf where the program gives nan, and a cancellation that the program
   computes as exactly 0 may leave a rounding error that later statements scale up.

3. Buffer reuse by static liveness. Each full value lives in a *buffer*: ``w``, ``g``, each
   slot's tensors, or one allocated by a statement. A buffer is *free* at a statement when
   every value held in it is read for the last time at that statement at the latest and is
   not an output (the update or a slot's next value). A statement then writes its result
   into a free buffer instead of allocating: with the in-place ``torch._foreach_*_`` op when
   it is the buffer of the first argument (or of the second, for ``+`` and ``*``), otherwise
   with ``out=``, one call per tensor (on CPU and for tensors of `MIN_OUT_NUMEL` elements on
   average only: else allocating is cheaper). ``w`` and ``g`` are never written. Results of
   ops outside this module's kernel table (comparisons, ``where``, reductions, ops added
   later) are computed as in the plain path and treated as possibly aliasing their
   arguments, which keeps the arguments' buffers alive as long as the result.

4. Slot tensors are written in place, as ``torch.optim`` optimizers do, once the old value
   is dead (a slot's new value goes into its own tensors where possible). This is checked
   per call (`check`): every slot tensor must have its parameter's shape and share no memory
   start with any other slot tensor, parameter or gradient; otherwise a plan that writes no
   slot runs. Callers must not expect old slot tensors to keep their values after a step.

5. Blocked execution (CPU). When every list statement of a plan is a kernel on full lists
   (no reductions, no op-table fallbacks), parameters of `MIN_BLOCKED_BYTES` or more with
   contiguous tensors are stepped one at a time in blocks of `BLOCK_BYTES` (with one
   intra-op thread; see `THREADED_BLOCK_BYTES` for more): every statement runs on a block
   before the next block starts, temporaries live in block-sized scratch tensors (allocated
   once per call) and stay in cache, and the update is applied block by block. Blocks run
   the same kernels (``out=`` forms) into the same buffers as the multi-tensor form, so the
   results are the same elementwise.

A plan needs every parameter, gradient and slot tensor in one dtype and autograd not
recording (`check`); the caller takes the plain path otherwise.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor

from .kernels import Kernel, fused
from .ops import Op, scalar_eval
from .program import Arg
from .values import as_tensor, fit, materialize, owns_input, slot_values

__all__ = ["Plan", "build_plan", "check"]

SCALAR, FULL, LIST = "scalar", "full", "list"
END = 1 << 30  # the position at which outputs are read: after every statement


# ---------------------------------------------------------------- kernels

ADDCDIV = {v: fused(f"addcdiv{v:+g}", torch._foreach_addcdiv, torch._foreach_addcdiv_, torch.addcdiv,
                    value=v) for v in (1.0, -1.0)}
"""``a + value * b / c``: the fusion of ``a + b / c`` (value 1) and ``a - b / c`` (value -1)."""


# ---------------------------------------------------------------- the plan

BLOCK_BYTES = 1 << 19
"""Blocked execution (module doc, point 5) with one intra-op thread works through tensors in
blocks of this many bytes: several block-sized tensors fit in a core's L2 cache."""
THREADED_BLOCK_BYTES = 1 << 21
"""... and with several intra-op threads, blocks of this many bytes per thread (0: no blocks,
every statement over whole tensors). Each op on a block is a parallel region, and blocks
multiply the regions of a step. On 2 idle cores (2026-11-25) blocks of 2 MiB per thread took
0.83x the time of torch's multi-tensor AdamW, whole tensors 1.9x. With more runnable threads
than cores (other processes busy) a region can wait a scheduler time slice for a preempted
thread, and every multi-threaded optimizer then slows down erratically, a blocked step more
than torch's own; ``torch.set_num_threads(1)`` is the usual cure on shared machines, and there
blocks of `BLOCK_BYTES` are used."""
MIN_BLOCKED_BYTES = 1 << 17
"""Tensors smaller than this take the multi-tensor path even when a plan could block them."""
MIN_OUT_NUMEL = 1 << 15
"""The multi-tensor form writes into a free buffer that is not the first argument (one
``out=`` call per tensor) only on CPU and for tensors of at least this many elements on
average; otherwise it allocates, which costs less than a Python call per tensor."""


@dataclass
class Step:
    """One statement of a plan (possibly with fused statements folded in).

    ``kernel`` None: run through the op table (``op``) as the plain path does; ``mode`` is how
    a kernel's result is stored: "fresh" (new tensors), "inplace" (into the first kernel
    argument) or "out" (into the buffer ``dest``, per tensor, through the tensors of the value
    ``out_of`` that holds that buffer).
    """

    target: str
    kind: str
    args: tuple[Arg, ...]  # in kernel order for kernels, program order otherwise
    op: Optional[Op] = None
    kernel: Optional[Kernel] = None
    mode: str = "fresh"
    dest: str = ""  # the buffer the result is written to
    out_of: Optional[str] = None
    fit: tuple[int, ...] = ()  # positions of float arguments (clipped to the dtype's range)
    fused: tuple[str, ...] = ()  # targets of statements folded into this one

    def __str__(self) -> str:
        if self.kind == SCALAR:
            return f"{self.target} = {self.op.name}{tuple(self.args)} (scalar)"
        how = self.kernel.name if self.kernel else f"{self.op.name} (op table)"
        where = {"fresh": "new", "inplace": f"in place into {self.args[0]}",
                 "out": f"into the buffer of {self.out_of}"}[self.mode] if self.kernel else "new"
        extra = f", fuses {', '.join(self.fused)}" if self.fused else ""
        return f"{self.target} = {how}{tuple(self.args)} -> {where}{extra}"


@dataclass
class Plan:
    """A program's dynamic statements, fused and with their destinations chosen (module doc)."""

    scalar_steps: tuple[Step, ...]  # statements of scalars only (they read ``lr``), run first
    steps: tuple[Step, ...]  # statements with a list argument
    slots: tuple[str, ...]
    next_state: tuple[Arg, ...]
    update: Arg
    update_alpha: Optional[Arg] = None  # update is ``alpha * X`` (X = update): params.add_(X, alpha=-alpha)
    update_neg: bool = False  # update is ``-X`` (X = update): params.add_(X)
    kinds: dict = field(default_factory=dict)
    # filled in by buffer assignment
    writes_slots: bool = False
    buffer: dict = field(default_factory=dict)  # full value -> its buffer (when it has one)
    blockable: bool = False  # every list step is a kernel on full lists (point 5)
    scratch: tuple[str, ...] = ()  # buffers made by steps that hold no slot's next value

    def __str__(self) -> str:
        lines = [str(s) for s in (*self.scalar_steps, *self.steps)]
        if self.update_alpha is not None:
            lines.append(f"params.add_({self.update}, alpha=-{self.update_alpha})")
        elif self.update_neg:
            lines.append(f"params.add_({self.update})")
        else:
            lines.append(f"params.sub_({self.update})")
        return "\n".join(lines)

    # ---------------------------------------------------------------- run
    def run(self, params: list[Tensor], grads: list[Tensor], states: list[dict], env: dict) -> None:
        """Step ``params`` in place and store the slots' next values in ``states``.

        ``env`` holds the scalars of the step (``lr``, ``t``, hyperparameters, static values).
        """
        for s in self.scalar_steps:
            env[s.target] = scalar_eval(s.op, [env[a] if isinstance(a, str) else a for a in s.args])
        threads = torch.get_num_threads()
        size = BLOCK_BYTES if threads == 1 else THREADED_BLOCK_BYTES * threads  # 0: whole tensors
        if self.blockable and params[0].device.type == "cpu" and size > 0:
            block = max(size // params[0].element_size(), 1)
            big = [_blockable(p, g, st, self.slots, MIN_BLOCKED_BYTES)
                   for p, g, st in zip(params, grads, states)]
            if any(big):
                small = [i for i, b in enumerate(big) if not b]
                if small:
                    self._run_foreach([params[i] for i in small], [grads[i] for i in small],
                                      [states[i] for i in small], dict(env))
                self._run_blocked([p for p, b in zip(params, big) if b], [g for g, b in zip(grads, big) if b],
                                  [st for st, b in zip(states, big) if b], env, block)
                return
        self._run_foreach(params, grads, states, env)

    def _run_foreach(self, params, grads, states, env: dict) -> None:
        """Every statement over all tensors at once (``torch._foreach_*``)."""
        fmax = torch.finfo(params[0].dtype).max
        n = len(params)
        per_tensor_out = params[0].device.type == "cpu" and sum(p.numel() for p in params) >= n * MIN_OUT_NUMEL
        env["w"], env["g"] = params, grads
        for x in self.slots:
            env[x] = [st[x] for st in states]
        for s in self.steps:
            vals = [env[a] if isinstance(a, str) else a for a in s.args]
            for i in s.fit:
                vals[i] = fit(vals[i], fmax)
            k = s.kernel
            if k is None and s.op.group is not None:
                env[s.target] = s.op.run_group(vals[0], params)
            elif k is None:
                out = s.op.foreach(*vals) if s.op.foreach is not None else None
                if out is None:
                    out = [s.op.run([a[i] if isinstance(a, list) else a for a in vals], None, params[i])
                           for i in range(n)]
                    # an op may pick a scalar argument (where with a scalar condition)
                    out = [o if isinstance(o, Tensor) else as_tensor(o, p) for o, p in zip(out, params)]
                env[s.target] = list(out)
            elif s.mode == "fresh" or (s.mode == "out" and not per_tensor_out):
                # (allocating instead of writing into a free buffer is always safe: whatever
                # tensors a value ends up in hold only values of its buffer's tenants)
                env[s.target] = list(k.fresh(*vals))
            elif s.mode == "inplace":
                k.inplace(*vals)
                env[s.target] = vals[0]
            else:
                dest = env[s.out_of]
                for i in range(n):
                    k.out(*[a[i] if isinstance(a, list) else a for a in vals], out=dest[i])
                env[s.target] = dest
        # copied per tensor where a value holds w's or g's own tensors (`dsl.values`)
        new = [(x, slot_values(a if isinstance(a, float) else env[a], params, grads))
               for x, a in zip(self.slots, self.next_state)]
        update = self.update if isinstance(self.update, float) else env[self.update]
        for x, vals in new:
            for st, vi in zip(states, vals):
                st[x] = vi
        if self.update_alpha is not None:
            alpha = self.update_alpha if isinstance(self.update_alpha, float) else env[self.update_alpha]
            torch._foreach_add_(params, update, alpha=-fit(alpha, fmax))
        elif self.update_neg:
            torch._foreach_add_(params, update)
        elif isinstance(update, list):
            torch._foreach_sub_(params, update)
        else:
            torch._foreach_sub_(params, float(update))

    def _run_blocked(self, params, grads, states, env: dict, block: int) -> None:
        """One tensor at a time, and each in blocks of ``block`` elements: every step runs on a
        block before the next block starts, so temporaries stay in cache (module doc, point 5)."""
        p0 = params[0]
        fmax = torch.finfo(p0.dtype).max
        # per step: (kernel, arguments: buffer names or clipped scalars, is-buffer flags, dest)
        prog = []
        for s in self.steps:
            args, isbuf = [], []
            for j, a in enumerate(s.args):
                if isinstance(a, str) and self.kinds[a] == FULL:
                    args.append(self.buffer[a])
                    isbuf.append(True)
                else:
                    v = env[a] if isinstance(a, str) else a
                    args.append(fit(v, fmax) if j in s.fit else v)
                    isbuf.append(False)
            prog.append((s.kernel.out, args, isbuf, s.dest))
        update = self.update
        if isinstance(update, str) and self.kinds[update] == FULL:
            ubuf = self.buffer[update]
            alpha = None
            if self.update_alpha is not None:
                alpha = self.update_alpha if isinstance(self.update_alpha, float) else env[self.update_alpha]
                alpha = -fit(alpha, fmax)
            elif self.update_neg:
                alpha = 1.0
        else:
            ubuf = None
        scratch = {b: torch.empty(block, dtype=p0.dtype, device=p0.device) for b in self.scratch}
        outputs = [b for b in set(self.buffer.values()) if b.startswith("new:") and b not in scratch]
        for p, g, st in zip(params, grads, states):
            full = {"w": p, "g": g, **{f"slot:{x}": st[x] for x in self.slots}}
            full.update((b, torch.empty_like(p)) for b in outputs)
            # next values that are no step's result: taken before w changes
            new = {}
            for x, a in zip(self.slots, self.next_state):
                if isinstance(a, float) or self.kinds[a] == SCALAR:
                    new[x] = materialize(env.get(a, a), p, copy=False)
                elif a in ("w", "g") or a in self.slots:
                    v = full[self.buffer[a]]
                    new[x] = materialize(v, p, copy=owns_input(v, p, g))
            splits = {b: t.view(-1).split(block) for b, t in full.items()}
            last = p.numel() - (len(splits["w"]) - 1) * block
            for j in range(len(splits["w"])):
                view = {b: sp[j] for b, sp in splits.items()}
                for b, t in scratch.items():
                    view[b] = t if j < len(splits["w"]) - 1 else t[:last]
                for out, args, isbuf, dest in prog:
                    out(*[view[a] if f else a for a, f in zip(args, isbuf)], out=view[dest])
                if ubuf is not None:
                    w = view["w"]
                    if alpha is None:
                        torch.sub(w, view[ubuf], out=w)
                    else:
                        torch.add(w, view[ubuf], alpha=alpha, out=w)
            for x, a in zip(self.slots, self.next_state):
                if x not in new:
                    new[x] = full[self.buffer[a]]
            st.update(new)
        if ubuf is None:  # a scalar update
            torch._foreach_sub_(params, float(env.get(update, update)))


def _blockable(p: Tensor, g: Tensor, st: Mapping[str, Tensor], slots: Sequence[str], min_bytes: int) -> bool:
    """Is this parameter big enough for blocks, with every tensor of it contiguous and alike?"""
    if p.numel() * p.element_size() < min_bytes or not (p.is_contiguous() and g.is_contiguous()) \
            or g.shape != p.shape:
        return False
    return all(st[x].shape == p.shape and st[x].is_contiguous() for x in slots)


def check(params: Sequence[Tensor], grads: Sequence[Tensor], states: Sequence[Mapping[str, Tensor]],
          slots: Sequence[str], slot_reuse: bool) -> tuple[bool, bool]:
    """``(a plan may run, slot tensors may be written)`` for these arguments.

    A plan runs when every tensor has the parameters' dtype (so results written in place keep
    the dtype they would have had) and autograd does not record the step. Slots may be
    written when every slot tensor has its parameter's shape and its memory starts where no
    other slot tensor's, parameter's or gradient's does (no tensor shared between slots).
    """
    slot_tensors = [st[x] for st in states for x in slots]
    dtypes = {p.dtype for p in params}
    dtypes.update(g.dtype for g in grads)
    dtypes.update(s.dtype if isinstance(s, Tensor) else None for s in slot_tensors)
    if len(dtypes) != 1:
        return False, False
    if torch.is_grad_enabled() and any(t.requires_grad for ts in (params, grads, slot_tensors) for t in ts):
        return False, False
    if not (slot_reuse and slots):
        return True, False
    if not all(st[x].shape == p.shape for p, st in zip(params, states) for x in slots):
        return True, False
    starts = {t.data_ptr() for t in params}
    starts.update(g.data_ptr() for g in grads)
    inputs = len(starts)
    starts.update(s.data_ptr() for s in slot_tensors)
    return True, len(starts) == inputs + len(slot_tensors)


# ---------------------------------------------------------------- building a plan

def build_plan(compiled, slot_reuse: bool) -> Plan:
    """The plan of a `CompiledProgram` (see the module doc); ``slot_reuse``: slot tensors are writable."""
    program = compiled.program
    slots = program.slot_names
    kinds: dict[str, str] = {"w": FULL, "g": FULL, "lr": SCALAR, "t": SCALAR}
    kinds.update({h: SCALAR for h in compiled.defaults})
    kinds.update({x: FULL for x in slots})
    kinds.update({i.target: SCALAR for i in compiled.static})

    def kind(a: Arg) -> str:
        return SCALAR if isinstance(a, float) else kinds[a]

    for ins in compiled.dynamic:
        ks = [kind(a) for a in ins.args]
        if ins.op.never_scalar:  # per parameter, never a scalar (`dsl.ops.Op.never_scalar`)
            kinds[ins.target] = LIST
        elif all(k == SCALAR for k in ks):
            kinds[ins.target] = SCALAR
        elif ins.op.shaped:
            kinds[ins.target] = LIST
        elif ins.op.kernel(_pattern(ks)) is not None:
            # torch broadcasting: a full argument makes a full result
            kinds[ins.target] = FULL if FULL in ks else LIST
        else:
            # an op-table op may also return one of its arguments as it is (where, with a
            # scalar condition): full only when every argument is
            kinds[ins.target] = FULL if all(k == FULL for k in ks) else LIST

    uses: Counter = Counter()
    for ins in compiled.dynamic:
        uses.update(a for a in ins.args if isinstance(a, str))
    uses.update(a for a in (program.update, *program.next_state) if isinstance(a, str))
    defs = {ins.target: ins for ins in compiled.dynamic}
    absorbed: set[str] = set()

    def single(a: Arg, op: str) -> bool:
        """``a`` is a full temporary made by ``op``, read once, free to be fused."""
        return (isinstance(a, str) and a in defs and defs[a].op.name == op and uses[a] == 1
                and kinds[a] == FULL and a not in absorbed)

    def scalar_times(a: Arg) -> Optional[tuple[Arg, Arg]]:
        """``(s, X)`` when ``a`` is a fusable ``s * X`` with scalar ``s`` and full ``X``."""
        if not single(a, "mul"):
            return None
        x, y = defs[a].args
        if kind(x) == SCALAR and kind(y) == FULL:
            return x, y
        if kind(y) == SCALAR and kind(x) == FULL:
            return y, x
        return None

    # the update: s * X or -X
    update, update_alpha, update_neg = program.update, None, False
    st = scalar_times(update)
    if st is not None:
        update_alpha, update = st
        absorbed.add(program.update)
    elif single(update, "neg") and kind(defs[update].args[0]) == FULL:
        absorbed.add(update)
        update, update_neg = defs[update].args[0], True

    # a + b / c, b / c + a and a - b / c with every value full: addcdiv (bit-identical)
    fusions: dict[str, tuple[Kernel, tuple[Arg, ...], str]] = {}
    for ins in compiled.dynamic:
        if ins.op.name not in ("add", "sub") or kinds[ins.target] != FULL:
            continue
        x, y = ins.args
        sub = ins.op.name == "sub"
        for a, b in [(x, y)] if sub else [(x, y), (y, x)]:
            if kind(a) == FULL and single(b, "div") and all(kind(c) == FULL for c in defs[b].args):
                fusions[ins.target] = (ADDCDIV[-1.0 if sub else 1.0], (a, *defs[b].args), b)
                absorbed.add(b)
                break

    steps: list[Step] = []
    scalar_steps: list[Step] = []
    for ins in compiled.dynamic:
        if ins.target in absorbed:
            continue
        k = kinds[ins.target]
        if ins.target in fusions:
            kernel, args, inner = fusions[ins.target]
            step = Step(ins.target, k, args, ins.op, kernel, fused=(inner,))
        elif k == SCALAR:
            scalar_steps.append(Step(ins.target, k, ins.args, ins.op))
            continue
        else:
            entry = ins.op.kernel(_pattern([kind(a) for a in ins.args]))
            if entry is None or ins.op.shaped:
                step = Step(ins.target, k, ins.args, ins.op)
            else:
                kernel, order = entry
                step = Step(ins.target, k, tuple(ins.args[j] for j in order), ins.op, kernel)
        steps.append(step)

    plan = Plan(tuple(scalar_steps), tuple(steps), slots, program.next_state, update, update_alpha,
                update_neg, kinds=kinds)
    _assign_buffers(plan, slot_reuse)
    for step in plan.steps:  # after buffer assignment, which may swap commutative arguments
        step.fit = tuple(j for j, a in enumerate(step.args) if kind(a) == SCALAR)
    return plan


def _pattern(ks: Sequence[str]) -> str:
    return "".join("s" if k == SCALAR else "L" for k in ks)


def _assign_buffers(plan: Plan, slot_reuse: bool) -> None:
    """Choose each kernel step's destination by static liveness (module doc, point 3)."""
    steps, kinds = plan.steps, plan.kinds
    last: dict[str, int] = {}
    for i, s in enumerate(steps):
        for a in s.args:
            if isinstance(a, str):
                last[a] = i
    for a in (plan.update, plan.update_alpha, *plan.next_state):
        if isinstance(a, str):
            last[a] = END
    nxt = {a: x for x, a in zip(plan.slots, plan.next_state) if isinstance(a, str)}

    bufs: dict[str, frozenset] = {"w": frozenset({"w"}), "g": frozenset({"g"})}
    tenants: dict[str, list[str]] = {"w": ["w"], "g": ["g"]}
    owner: dict[str, str] = {}  # writable buffer -> a value whose tensors are the buffer
    for x in plan.slots:
        bufs[x] = frozenset({f"slot:{x}"})
        tenants[f"slot:{x}"] = [x]
        if slot_reuse:
            owner[f"slot:{x}"] = x
    written_slots = False

    for i, s in enumerate(steps):
        list_args = [a for a in s.args if isinstance(a, str) and kinds[a] != SCALAR]
        if s.kernel is None or s.kind != FULL:
            # op-table ops may return an argument itself: the result keeps the arguments'
            # buffers alive and is never written into
            b = f"new:{s.target}"
            bufs[s.target] = frozenset({b}).union(*(bufs[a] for a in list_args))
            for c in bufs[s.target]:
                tenants.setdefault(c, []).append(s.target)
            continue

        def free(b: str) -> bool:
            if b not in owner or any(last.get(v, -1) > i for v in tenants[b]):
                return False
            return all(bufs[a] == {b} for a in list_args if b in bufs[a])

        def sole(a: Arg) -> Optional[str]:
            """The buffer of full value ``a`` when it has exactly one and it is free."""
            if isinstance(a, str) and kinds[a] == FULL and len(bufs[a]) == 1:
                (b,) = bufs[a]
                return b if free(b) else None
            return None

        dest = None
        slot = nxt.get(s.target)
        preferred = [f"slot:{slot}"] if slot is not None and free(f"slot:{slot}") else []
        first, second = s.args[0], s.args[1] if len(s.args) > 1 else None
        swappable = s.kernel.commutative and isinstance(second, str) and kinds[second] == FULL
        candidates = preferred + [b for b in (sole(first), sole(second) if swappable else None) if b]
        for b in candidates:
            if sole(first) == b:
                dest, s.mode = b, "inplace"
            elif swappable and sole(second) == b:
                s.args = (second, first, *s.args[2:])
                dest, s.mode = b, "inplace"
            else:
                dest, s.mode = b, "out"
            break
        if dest is None:
            arg_bufs = [sole(a) for a in list_args]
            others = [b for b in owner if free(b)]
            # a free argument buffer is cheapest (read and written in one pass), then temporaries
            for b in [*filter(None, arg_bufs), *sorted(others, key=lambda b: b.startswith("slot:"))]:
                dest, s.mode = b, "out"
                break
        if dest is None:
            dest = f"new:{s.target}"
            owner[dest] = s.target
            tenants[dest] = []
            s.mode = "fresh"
        if s.mode == "out":
            s.out_of = owner[dest]
        s.dest = dest
        written_slots |= dest.startswith("slot:")
        bufs[s.target] = frozenset({dest})
        tenants[dest].append(s.target)

    plan.writes_slots = written_slots
    plan.buffer = {a: next(iter(b)) for a, b in bufs.items() if len(b) == 1 and kinds.get(a) == FULL}
    plan.blockable = all(s.kernel is not None and s.kind == FULL for s in steps)
    # in blocks, the update is applied block by block: only next values need whole tensors
    plan.scratch = tuple(b for b in tenants if b.startswith("new:") and b in owner
                         and not any(v in nxt for v in tenants[b]))
