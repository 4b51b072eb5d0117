"""Seed programs: they parse, round-trip through the printer, and reproduce their references.

Each seed with a reference implementation is replayed with `dsl.ProgramOptimizer` next to the
reference on the same tiny float64 MLP (same initial weights, same full-batch data) and the
weights must agree to 1e-10 relative after every one of STEPS steps. Seeds without a reference
are checked against plain torch code written here.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import dsl
import seeds

torch.set_num_threads(1)

import lion_pytorch  # the test extra (pyproject.toml): a missing install fails, never skips
import pytorch_optimizer
from tiny_problem import X, Y, mlp

STEPS = 120
RTOL, ATOL = 1e-10, 1e-12
SEED_DIR = Path(seeds.__file__).resolve().parent
NO_REFERENCE = {"delta_bar_delta", "nonlinear_cg", "stable_unstable"}
MATRIX_SEEDS = {"adafactor", "adamw_clip", "lamb", "lars", "muon", "muon_adamw"}  # tests/test_seeds_matrix.py


# ---------------------------------------------------------------- a tiny float64 problem


def _step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad(set_to_none=True)
    nn.functional.mse_loss(model(X), Y).backward()
    opt.step()


def _replay(name: str, make_reference, lr: float, steps: int = STEPS, **hparams) -> None:
    """Train two copies of the model, one with seed ``name``, one with the reference; compare."""
    ours = mlp()
    theirs = copy.deepcopy(ours)
    start = [p.detach().clone() for p in ours.parameters()]
    opt_ours = dsl.ProgramOptimizer(ours.parameters(), seeds.load(name), lr=lr, **hparams)
    opt_theirs = make_reference(theirs.parameters(), lr)
    for step in range(1, steps + 1):
        _step(ours, opt_ours)
        _step(theirs, opt_theirs)
        for a, b in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL, msg=lambda m: f"{name}, step {step}: {m}")
    moved = max((p.detach() - p0).abs().max().item() for p, p0 in zip(ours.parameters(), start))
    assert moved > 1e-3, f"{name}: weights barely moved ({moved}); the comparison would be vacuous"


# ---------------------------------------------------------------- references (their defaults)

O = torch.optim
PO = pytorch_optimizer

# name -> (reference factory taking (params, lr), lr used on both sides)
REFERENCES = {
    "sgd": (lambda ps, lr: O.SGD(ps, lr=lr), 0.1),
    "momentum": (lambda ps, lr: O.SGD(ps, lr=lr, momentum=0.9), 0.02),
    "nesterov": (lambda ps, lr: O.SGD(ps, lr=lr, momentum=0.9, nesterov=True), 0.02),
    "adagrad": (lambda ps, lr: O.Adagrad(ps, lr=lr), 0.05),
    "rmsprop": (lambda ps, lr: O.RMSprop(ps, lr=lr), 0.003),
    "adadelta": (lambda ps, lr: O.Adadelta(ps, lr=lr), 1.0),
    "adam": (lambda ps, lr: O.Adam(ps, lr=lr), 0.01),
    "adamw": (lambda ps, lr: O.AdamW(ps, lr=lr), 0.01),
    "rprop": (lambda ps, lr: O.Rprop(ps, lr=lr), 0.01),
    "lion": (lambda ps, lr: lion_pytorch.Lion(ps, lr=lr), 0.002),
    "signsgd": (lambda ps, lr: PO.SignSGD(ps, lr=lr, momentum=0.0), 0.002),
    "signum": (lambda ps, lr: PO.SignSGD(ps, lr=lr), 0.002),
    "adan": (lambda ps, lr: PO.Adan(ps, lr=lr), 0.01),
    "adabelief": (lambda ps, lr: PO.AdaBelief(ps, lr=lr), 0.01),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_seed_matches_reference_defaults(name):
    make_reference, lr = REFERENCES[name]
    _replay(name, make_reference, lr)


# name -> (reference factory, lr, the same settings for the seed)
NON_DEFAULT = {
    "momentum": (lambda ps, lr: O.SGD(ps, lr=lr, momentum=0.5), 0.05, dict(momentum=0.5)),
    "nesterov": (lambda ps, lr: O.SGD(ps, lr=lr, momentum=0.7, nesterov=True), 0.03, dict(momentum=0.7)),
    "adagrad": (lambda ps, lr: O.Adagrad(ps, lr=lr, eps=1e-3), 0.05, dict(eps=1e-3)),
    "rmsprop": (lambda ps, lr: O.RMSprop(ps, lr=lr, alpha=0.9, eps=1e-4), 0.001, dict(alpha=0.9, eps=1e-4)),
    "adadelta": (lambda ps, lr: O.Adadelta(ps, lr=lr, rho=0.7, eps=1e-4), 0.5, dict(rho=0.7, eps=1e-4)),
    "adam": (lambda ps, lr: O.Adam(ps, lr=lr, betas=(0.8, 0.95), eps=1e-3), 0.005,
             dict(beta1=0.8, beta2=0.95, eps=1e-3)),
    "adamw": (lambda ps, lr: O.AdamW(ps, lr=lr, weight_decay=0.5), 0.01, dict(weight_decay=0.5)),
    "rprop": (lambda ps, lr: O.Rprop(ps, lr=lr, etas=(0.3, 1.5), step_sizes=(1e-3, 0.05)), 0.01,
              dict(eta_minus=0.3, eta_plus=1.5, step_size_min=1e-3, step_size_max=0.05)),
    "lion": (lambda ps, lr: lion_pytorch.Lion(ps, lr=lr, betas=(0.8, 0.9), weight_decay=0.5), 0.002,
             dict(beta1=0.8, beta2=0.9, weight_decay=0.5)),
    "signum": (lambda ps, lr: PO.SignSGD(ps, lr=lr, momentum=0.7), 0.002, dict(momentum=0.7)),
    "adan": (lambda ps, lr: PO.Adan(ps, lr=lr, betas=(0.9, 0.8, 0.95), eps=1e-4, weight_decay=0.5), 0.005,
             dict(beta1=0.9, beta2=0.8, beta3=0.95, eps=1e-4, weight_decay=0.5)),
    "adabelief": (lambda ps, lr: PO.AdaBelief(ps, lr=lr, betas=(0.8, 0.99), eps=1e-8), 0.01,
                  dict(beta1=0.8, beta2=0.99, eps=1e-8)),
}


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_seed_matches_reference_non_default(name):
    make_reference, lr, hparams = NON_DEFAULT[name]
    _replay(name, make_reference, lr, **hparams)


def test_lr_schedule_is_followed():
    """lr enters every step: a scheduler on both sides keeps them in lockstep (Rprop reads lr once)."""
    for name in ("adam", "lion", "rprop"):
        make_reference, lr = REFERENCES[name]
        ours, theirs = mlp(), mlp()
        a = dsl.ProgramOptimizer(ours.parameters(), seeds.load(name), lr=lr)
        b = make_reference(theirs.parameters(), lr)
        sa = torch.optim.lr_scheduler.StepLR(a, step_size=10, gamma=0.5)
        sb = torch.optim.lr_scheduler.StepLR(b, step_size=10, gamma=0.5)
        for _ in range(40):
            _step(ours, a)
            _step(theirs, b)
            sa.step()
            sb.step()
        for p, q in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(p, q, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- seeds without a reference

def _hand_delta_bar_delta(params, grads, state, t, lr, increase=0.05, decay=0.95, gain_min=0.1,
                          gain_max=10.0):
    for p, g in zip(params, grads):
        st = state.setdefault(p, {"gain": torch.ones_like(p), "prev": torch.zeros_like(p)})
        gain = st["gain"].clone()
        prod = g * st["prev"]
        gain[prod > 0] += increase
        gain[prod < 0] *= decay
        st["gain"] = gain.clamp(gain_min, gain_max)
        st["prev"] = g.clone()
        p -= lr * st["gain"] * g


def _hand_nonlinear_cg(params, grads, state, t, lr):
    for p, g in zip(params, grads):
        st = state.setdefault(p, {})
        if t == 1:
            d = g.clone()
        else:
            gp = st["prev"]
            beta = max(float(torch.sum(g * (g - gp)) / torch.sum(gp * gp)), 0.0)
            d = g + beta * st["d"]
        st["d"], st["prev"] = d, g.clone()
        p -= lr * d


def _hand_stable_unstable(params, grads, state, t, lr, beta=0.9, unstable_scale=0.1):
    for p, g in zip(params, grads):
        st = state.setdefault(p, {"m": torch.zeros_like(p)})
        m = beta * st["m"] + (1 - beta) * g
        st["m"] = m
        stable = torch.sign(g) * torch.sign(m) > 0
        p -= lr * torch.where(stable, m, unstable_scale * g)


class _Hand(torch.optim.Optimizer):
    """Plain torch code as an optimizer, so it runs through the same training loop."""

    def __init__(self, params, fn, lr, **hparams):
        super().__init__(params, {"lr": lr})
        self.fn, self.hparams, self.t, self.hand_state = fn, hparams, 0, {}

    @torch.no_grad()
    def step(self, closure=None):
        self.t += 1
        ps = [p for grp in self.param_groups for p in grp["params"] if p.grad is not None]
        self.fn(ps, [p.grad for p in ps], self.hand_state, self.t, self.param_groups[0]["lr"], **self.hparams)


HAND = {
    "delta_bar_delta": (_hand_delta_bar_delta, 0.05, {}),
    "nonlinear_cg": (_hand_nonlinear_cg, 0.01, {}),
    "stable_unstable": (_hand_stable_unstable, 0.05, {}),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_seed_matches_hand_computation(name):
    fn, lr, hparams = HAND[name]
    _replay(name, lambda ps, lr: _Hand(ps, fn, lr, **hparams), lr, steps=60, **hparams)


@pytest.mark.parametrize("name, fn, hparams", [
    ("delta_bar_delta", _hand_delta_bar_delta, dict(increase=0.3, decay=0.5, gain_min=0.2, gain_max=2.0)),
    ("stable_unstable", _hand_stable_unstable, dict(beta=0.5, unstable_scale=0.3)),
    ("nonlinear_cg", _hand_nonlinear_cg, {}),
])
def test_seed_on_synthetic_gradients(name, fn, hparams):
    """Gradients set by hand, with runs of agreeing signs and flips, so that clipping bounds,
    both branches of each where() and the PR+ clip at 0 are all reached."""
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    ws = [torch.zeros(2, 5, dtype=torch.float64, requires_grad=True),
          torch.zeros(3, dtype=torch.float64, requires_grad=True)]
    hs = [w.detach().clone().requires_grad_() for w in ws]
    ours = dsl.ProgramOptimizer(ws, seeds.load(name), lr=0.1, **hparams)
    hand = _Hand(hs, fn, 0.1, **hparams)
    flips, gains = 0, []
    for step in range(1, 41):
        flip = torch.where(torch.rand(2, 5, generator=gen) < 0.3, -1.0, 1.0).double()
        flips += int((flip < 0).sum())
        g0 = base * flip + 0.1 * torch.randn(2, 5, generator=gen, dtype=torch.float64)
        g1 = torch.randn(3, generator=gen, dtype=torch.float64)
        for w, h, g in zip(ws, hs, (g0, g1)):
            w.grad, h.grad = g.clone(), g.clone()
        ours.step()
        hand.step()
        for w, h in zip(ws, hs):
            torch.testing.assert_close(w, h, rtol=RTOL, atol=ATOL, msg=lambda m: f"{name}, step {step}: {m}")
        if name == "delta_bar_delta":
            gains += [ours.state[w]["gain"].flatten() for w in ws]
    assert flips > 20
    if name == "delta_bar_delta":  # both clip bounds were reached
        gains = torch.cat(gains)
        assert gains.max() == hparams["gain_max"] and gains.min() == hparams["gain_min"]


def test_rprop_and_delta_bar_delta_gain_bounds():
    """A constant gradient makes delta_bar_delta's gains grow to gain_max and Rprop's steps to
    step_size_max; an alternating one shrinks them to the lower bounds."""
    for sign_pattern, expect in ((lambda t: 1.0, "max"), (lambda t: (-1.0) ** t, "min")):
        w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        v = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        dbd = dsl.ProgramOptimizer([w], seeds.load("delta_bar_delta"), lr=0.1, gain_max=1.5, gain_min=0.5)
        rp = dsl.ProgramOptimizer([v], seeds.load("rprop"), lr=0.1, step_size_max=0.3, step_size_min=0.01)
        for t in range(1, 41):
            w.grad = torch.full((3,), sign_pattern(t), dtype=torch.float64)
            v.grad = w.grad.clone()
            dbd.step()
            rp.step()
        gain, s = dbd.state[w]["gain"], rp.state[v]["s"]
        if expect == "max":
            assert torch.all(gain == 1.5) and torch.all(s == 0.3)
        else:
            assert torch.all(gain == 0.5)
            # iRprop-: after a flip the next step does not adapt, so steps shrink every other step
            assert torch.all(s == 0.01)


@pytest.mark.parametrize("name", seeds.names())
def test_seed_runs_the_same_in_the_batched_evaluator_path(name):
    """`CompiledProgram.apply` on K stacked copies (per-copy lr, reductions per copy) gives what
    `ProgramOptimizer` gives on each copy alone."""
    gen = torch.Generator().manual_seed(3)
    k, lrs = 2, (0.05, 0.01)
    grads = torch.randn(12, k, 3, 4, generator=gen, dtype=torch.float64)
    w0 = torch.randn(k, 3, 4, generator=gen, dtype=torch.float64)
    prog = seeds.load(name)
    cp = dsl.compile(prog)
    w, state = w0.clone(), cp.init_state(w0)
    lr = torch.tensor(lrs, dtype=torch.float64).view(k, 1, 1)
    for t in range(1, len(grads) + 1):
        update, state = cp.apply(w, grads[t - 1], lr, t, state, reduce_dims=(1, 2))
        w = w - update
    for i in range(k):
        p = w0[i].clone().requires_grad_()
        opt = dsl.ProgramOptimizer([p], prog, lr=lrs[i])
        for t in range(len(grads)):
            p.grad = grads[t, i].clone()
            opt.step()
        torch.testing.assert_close(w[i], p.detach(), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- the folder and the loader

def test_names_list_every_file():
    files = sorted(p.stem for p in SEED_DIR.glob("*.py") if p.name != "__init__.py")
    assert seeds.names() == files
    assert set(files) == set(REFERENCES) | NO_REFERENCE | MATRIX_SEEDS
    assert seeds.names() == sorted(seeds.names())
    assert list(seeds.load_all()) == seeds.names()


def test_path_and_unknown_names():
    assert seeds.path("adam") == SEED_DIR / "adam.py"
    assert seeds.path("adam").is_file()
    for bad in ("nope", "__init__", "../dsl/ops", "adam.py", ""):
        with pytest.raises(KeyError):
            seeds.path(bad)


@pytest.mark.parametrize("name", seeds.names())
def test_seed_file_parses_and_round_trips(name):
    text = seeds.path(name).read_text()
    assert text.startswith("#"), "each seed file starts with a header comment citing its source"
    header = text.split("\ndef ", 1)[0]
    assert "Reference implementation:" in header
    p = seeds.load(name)
    assert p.name == name
    assert p == dsl.parse(text)
    for readable in (False, True):
        printed = dsl.to_text(p, readable=readable)
        q = dsl.parse(printed)
        assert q == p, f"{name} (readable={readable}) does not round-trip:\n{printed}"
        assert q.hparams == p.hparams and q.slots == p.slots


def test_hyperparameter_defaults_are_reference_defaults():
    """Spot-check the defaults stated in the headers against the reference constructors."""
    import inspect

    def default(cls, arg):
        return inspect.signature(cls.__init__).parameters[arg].default

    hp = {n: dict(p.hparams) for n, p in seeds.load_all().items()}
    assert (hp["adam"]["beta1"], hp["adam"]["beta2"]) == default(O.Adam, "betas")
    assert hp["adam"]["eps"] == default(O.Adam, "eps")
    assert hp["adamw"]["weight_decay"] == default(O.AdamW, "weight_decay")
    assert hp["rmsprop"]["alpha"] == default(O.RMSprop, "alpha")
    assert hp["adagrad"]["eps"] == default(O.Adagrad, "eps")
    assert (hp["adadelta"]["rho"], hp["adadelta"]["eps"]) == (default(O.Adadelta, "rho"), default(O.Adadelta, "eps"))
    assert (hp["rprop"]["eta_minus"], hp["rprop"]["eta_plus"]) == default(O.Rprop, "etas")
    assert (hp["rprop"]["step_size_min"], hp["rprop"]["step_size_max"]) == default(O.Rprop, "step_sizes")
    assert (hp["lion"]["beta1"], hp["lion"]["beta2"]) == default(lion_pytorch.Lion, "betas")
    assert hp["lion"]["weight_decay"] == default(lion_pytorch.Lion, "weight_decay")
    assert hp["signum"]["momentum"] == default(PO.SignSGD, "momentum")
    assert (hp["adan"]["beta1"], hp["adan"]["beta2"], hp["adan"]["beta3"]) == default(PO.Adan, "betas")
    assert hp["adan"]["eps"] == default(PO.Adan, "eps")
    assert (hp["adabelief"]["beta1"], hp["adabelief"]["beta2"]) == default(PO.AdaBelief, "betas")
    assert hp["adabelief"]["eps"] == default(PO.AdaBelief, "eps")
    assert all(math.isfinite(v) for d in hp.values() for v in d.values())
