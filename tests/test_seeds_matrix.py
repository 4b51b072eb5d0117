"""Seeds that look beyond one coordinate (issue 11), replayed against their references in float64.

Adafactor vs torch.optim.Adafactor, LAMB and LARS vs pytorch_optimizer, AdamW with global-norm
clipping vs clip_grad_norm_ + torch.optim.AdamW: 1e-10 relative after every step, as the other
seeds. Muon: torch.optim.Muon runs Newton-Schulz in bfloat16, so against it unchanged the
tolerance is bfloat16's (8 bits of mantissa, through 5 iterations: a few 1e-3 relative on the
update); against the same optimizer with its iteration in float64 (torch's code with the
``.bfloat16()`` cast dropped, below) 1e-10. Muon runs on wide matrices (rows <= cols, where
torch's lr factor sqrt(max(1, rows / cols)) is 1) and on a tall one (6, 4) beside a wide one
(factor sqrt(1.5): the seeds' sqrt(maximum(1, aspect(w)))).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import dsl
import seeds
import pytorch_optimizer as PO
from tiny_problem import X, Y, mlp

torch.set_num_threads(1)

STEPS = 60
RTOL, ATOL = 1e-10, 1e-12


def _wide_mlp() -> nn.Module:
    """Weights with rows <= cols (Muon's lr factor is 1): (4, 4) and (2, 4)."""
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def _loss(model):
    return nn.functional.mse_loss(model(X), Y)


class _Pair:
    """Several reference optimizers (or a hook before one) stepped as one."""

    def __init__(self, *opts, before=None):
        self.opts, self.before = opts, before

    def zero_grad(self, set_to_none=True):
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self):
        if self.before:
            self.before()
        for o in self.opts:
            o.step()


def _replay(name, make_model, make_reference, lr, steps=STEPS, rtol=RTOL, atol=ATOL, **hp):
    ours = make_model()
    theirs = copy.deepcopy(ours)
    start = [p.detach().clone() for p in ours.parameters()]
    opt = dsl.ProgramOptimizer(ours.parameters(), seeds.load(name), lr=lr, **hp)
    ref = make_reference(theirs, lr)
    for step in range(1, steps + 1):
        for model, o in ((ours, opt), (theirs, ref)):
            o.zero_grad(set_to_none=True)
            _loss(model).backward()
            o.step()
        for a, b in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{name}, step {step}: {m}")
    moved = max((p.detach() - p0).abs().max().item() for p, p0 in zip(ours.parameters(), start))
    assert moved > 1e-3, f"{name}: weights barely moved ({moved}); the comparison would be vacuous"


F32_EPS = torch.finfo(torch.float32).eps


@pytest.mark.parametrize("hp, ref_kw", [
    ({}, {}),
    (dict(beta2_decay=-0.6, eps2=1e-2, d=2.0, weight_decay=0.1), dict(beta2_decay=-0.6, d=2.0, weight_decay=0.1)),
], ids=["defaults", "non-default"])
def test_adafactor_matches_torch(hp, ref_kw):
    eps = (F32_EPS, hp.get("eps2", 1e-3))
    _replay("adafactor", mlp, lambda m, lr: torch.optim.Adafactor(m.parameters(), lr=lr, eps=eps, foreach=False,
                                                                    **ref_kw), 0.01, **hp)


def test_adafactor_on_a_3d_and_a_0d_tensor():
    """Factored over the last two dims of a 3-D tensor (leading dims kept), unfactored at 0-dim."""
    gen = torch.Generator().manual_seed(5)
    ours = [torch.randn(2, 3, 4, generator=gen, dtype=torch.float64), torch.randn((), generator=gen, dtype=torch.float64)]
    theirs = [p.clone() for p in ours]
    ours = [nn.Parameter(p) for p in ours]
    theirs = [nn.Parameter(p) for p in theirs]
    a = dsl.ProgramOptimizer(ours, seeds.load("adafactor"), lr=0.01)
    b = torch.optim.Adafactor(theirs, lr=0.01, eps=(F32_EPS, 1e-3), foreach=False)
    for step in range(10):
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in ours]
        for ps, opt in ((ours, a), (theirs, b)):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            opt.step()
        for x, y in zip(ours, theirs):
            torch.testing.assert_close(x, y, rtol=RTOL, atol=ATOL)


def _ns_float64(grad, ns_coefficients, ns_steps, eps):
    """torch.optim._muon._zeropower_via_newtonschulz in float64 (torch's code, no bfloat16 cast)."""
    a, b, c = ns_coefficients
    x = grad.to(torch.float64)
    if grad.size(0) > grad.size(1):
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        upd = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, upd, x, beta=a)
    if grad.size(0) > grad.size(1):
        x = x.T
    return x


def _muon_only(m, lr):
    return torch.optim.Muon([p for p in m.parameters() if p.ndim == 2], lr=lr)


def _weights_only(make_model):
    """The model with its biases frozen (torch.optim.Muon takes matrices only)."""
    def make():
        m = make_model()
        for p in m.parameters():
            if p.ndim < 2:
                p.requires_grad_(False)
        return m

    return make


MUON_MODELS = {"wide": _wide_mlp, "tall": mlp}  # mlp: a tall (6, 4) and a wide (2, 6) weight


def test_the_tall_model_has_a_tall_matrix():
    """So the tall cases below test the lr factor: sqrt(1.5) on (6, 4), 1 on (2, 6)."""
    shapes = [tuple(p.shape) for p in mlp().parameters() if p.ndim == 2]
    assert shapes == [(6, 4), (2, 6)]
    assert [float(dsl.OPS["aspect"].torch(torch.zeros(s))) for s in shapes] == pytest.approx([1.5, 1 / 3])


@pytest.mark.parametrize("shape", sorted(MUON_MODELS))
def test_muon_matches_torch_muon_with_a_float64_iteration(monkeypatch, shape):
    """1e-10 relative for 40 steps (measured at step 40: 3.5e-15 absolute on the wide model,
    6e-16 relative on the tall one, which stays there to step 60).
    Later rounding differences grow: the iteration's slope at 0 is a = 3.4445 per step (490 per
    call) along directions of tiny singular values, which appear as the gradient nears low rank
    here (measured 7e-13 at step 50, 3e-9 at step 60)."""
    monkeypatch.setattr(torch.optim._muon, "_zeropower_via_newtonschulz", _ns_float64)
    _replay("muon", _weights_only(MUON_MODELS[shape]), _muon_only, 0.02, steps=40)


@pytest.mark.parametrize("shape", sorted(MUON_MODELS))
def test_muon_matches_torch_muon_in_bfloat16(shape):
    """Unpatched torch runs the iteration in bfloat16 (8-bit mantissa: ~5% error per entry of
    the orthogonalized update, measured 2.1e-3 absolute after 5 steps at lr 0.02 on the wide
    model): 5e-3."""
    _replay("muon", _weights_only(MUON_MODELS[shape]), _muon_only, 0.02, steps=5, rtol=0, atol=5e-3)


def test_orthogonalize_equals_torchs_iteration_on_matrices_and_conv_filters():
    gen = torch.Generator().manual_seed(7)
    ortho = dsl.OPS["orthogonalize"].torch
    for shape in [(5, 3), (3, 5), (4, 4), (1, 6), (6, 1)]:
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(ortho(x), _ns_float64(x, (3.4445, -4.775, 2.0315), 5, 1e-7), rtol=1e-12, atol=1e-12)
        bf = torch.optim._muon._zeropower_via_newtonschulz(x, (3.4445, -4.775, 2.0315), 5, 1e-7)
        torch.testing.assert_close(ortho(x), bf.double(), rtol=0, atol=0.05)  # bfloat16
    x = torch.randn(4, 2, 3, 3, generator=gen, dtype=torch.float64)  # a conv filter: (4, 18)
    torch.testing.assert_close(ortho(x), _ns_float64(x.reshape(4, 18), (3.4445, -4.775, 2.0315), 5, 1e-7)
                               .reshape(4, 2, 3, 3), rtol=1e-12, atol=1e-12)
    v = torch.randn(7, generator=gen, dtype=torch.float64)  # 1-D: a 1 x n row
    torch.testing.assert_close(ortho(v), _ns_float64(v.view(1, 7), (3.4445, -4.775, 2.0315), 5, 1e-7).view(7))


@pytest.mark.parametrize("shape", sorted(MUON_MODELS))
def test_muon_adamw_matches_muon_plus_adamw(monkeypatch, shape):
    """As Muon alone (40 steps, see above)."""
    monkeypatch.setattr(torch.optim._muon, "_zeropower_via_newtonschulz", _ns_float64)

    def ref(m, lr):
        mats = [p for p in m.parameters() if p.ndim >= 2]
        rest = [p for p in m.parameters() if p.ndim < 2]
        return _Pair(torch.optim.Muon(mats, lr=lr), torch.optim.AdamW(rest, lr=lr))

    _replay("muon_adamw", MUON_MODELS[shape], ref, 0.02, steps=40)


@pytest.mark.parametrize("hp", [{}, dict(weight_decay=0.1, beta1=0.8, eps=1e-4)], ids=["defaults", "non-default"])
def test_lamb_matches_pytorch_optimizer(hp):
    kw = dict(hp)
    if "beta1" in kw:
        kw["betas"] = (kw.pop("beta1"), 0.999)
    _replay("lamb", mlp, lambda m, lr: PO.Lamb(m.parameters(), lr=lr, foreach=False, **kw), 0.01, **hp)


@pytest.mark.parametrize("hp", [{}, dict(weight_decay=0.1, momentum=0.5, dampening=0.1, trust_coefficient=0.01)],
                         ids=["defaults", "non-default"])
def test_lars_matches_pytorch_optimizer(hp):
    _replay("lars", mlp, lambda m, lr: PO.LARS(m.parameters(), lr=lr, foreach=False, **hp), 0.5, **hp)


@pytest.mark.parametrize("max_norm", [1.0, 0.05])
def test_adamw_clip_matches_clip_grad_norm_and_adamw(max_norm):
    def ref(m, lr):
        ps = list(m.parameters())
        return _Pair(torch.optim.AdamW(ps, lr=lr), before=lambda: nn.utils.clip_grad_norm_(ps, max_norm))

    _replay("adamw_clip", mlp, ref, 0.01, max_norm=max_norm)


def test_clipping_is_active_in_the_clip_test():
    """At max_norm 0.05 the global gradient norm of the MLP is above it (the clip acts)."""
    m = mlp()
    _loss(m).backward()
    assert torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in m.parameters()])) > 0.05
