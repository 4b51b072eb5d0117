"""A recurrent task: a character-level GRU language model on Python stdlib source text.

The GRU is written with plain tensor ops (no ``torch.nn.GRU``) so that ``vmap`` over stacked
copies gives each copy the same arithmetic as when it trains alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Task
from .data import MinibatchIndex, stdlib_text
from .digits import linear_init
from .registry import register
from .schedules import WarmupCosine
from .variants import draw

__all__ = ["gru_charlm"]

VOCAB = 128  # ASCII codes
EMBED = 16


@register("gru_charlm")
def gru_charlm(size: int = 1, device="cpu", dtype=torch.float32, steps: int = 300, variant: int = 0) -> Task:
    """Next-character cross-entropy of a one-layer GRU, hidden ``H = width * size``, over ``T`` characters.

    Per character ``x_t`` (embedding ``E [128, 16]``), with gates from ``a = E[x_t] W + b`` and
    ``c = h U + d`` split in thirds (r, z, n):
    ``r = sigmoid(a_r + c_r)``, ``z = sigmoid(a_z + c_z)``, ``n = tanh(a_n + r * c_n)``,
    ``h <- (1 - z) n + z h`` (``h_0 = 0``); logits ``h O + o``. Text: `tasks.data.stdlib_text`;
    one tenth of it (which one: the variant's ``val_part``) gives 64 fixed validation windows,
    the rest trains. Recurrence through ``T`` steps gives the long, multiplicative gradient
    paths (exploding/vanishing) that feed-forward tasks lack.

    Variant axes (`tasks.variants.draw`; variant 0 = the first choice): width 64/48/80,
    context T 16/12/20, batch size 16/8/24, init scale 1/0.5/2 (multiplies every weight
    matrix's default init), val_part 9/0/4/7. Variants 1-5 cost 0.9x to 1.8x the default's time.
    """
    v = draw("gru_charlm", variant, width=(64, 48, 80), context=(16, 12, 20), batch_size=(16, 8, 24),
             init_scale=(1.0, 0.5, 2.0), val_part=(9, 0, 4, 7))
    H, T, scale = v["width"] * size, v["context"], v["init_scale"]
    codes = torch.tensor(list(stdlib_text().encode("ascii")), dtype=torch.long)
    tenth = len(codes) // 10
    lo, hi = v["val_part"] * tenth, (v["val_part"] + 1) * tenth
    train, val = torch.cat([codes[:lo], codes[hi:]]).to(device), codes[lo:hi]
    nval = min(64, (len(val) - 1) // (T + 1))
    val = val[:nval * (T + 1)].view(nval, T + 1).to(device)
    val_batch = (val[:, :-1], val[:, 1:])
    starts = MinibatchIndex(len(train) - T - 1, v["batch_size"], device)
    offsets = torch.arange(T + 1, device=device)

    def train_batch(step: int, seed: int):
        win = train[starts.index(step, seed)[:, None] + offsets]
        return win[:, :-1], win[:, 1:]

    def init(g):
        return {"emb": torch.randn(VOCAB, EMBED, generator=g) * 0.1,
                "w": scale * linear_init(g, EMBED, EMBED, 3 * H), "b": linear_init(g, H, 3 * H),
                "u": scale * linear_init(g, H, H, 3 * H), "d": linear_init(g, H, 3 * H),
                "o": scale * linear_init(g, H, H, VOCAB), "ob": torch.zeros(VOCAB)}

    def logits(p, x: Tensor) -> Tensor:
        a = (p["emb"][x] @ p["w"] + p["b"]).unbind(1)  # T x [B, 3H]
        h = torch.zeros(x.shape[0], H, device=x.device, dtype=p["u"].dtype)
        hs = []
        for at in a:
            c = h @ p["u"] + p["d"]
            r, z = torch.sigmoid(at[..., :2 * H] + c[..., :2 * H]).split(H, -1)
            n = torch.tanh(at[..., 2 * H:] + r * c[..., 2 * H:])
            h = n + z * (h - n)
            hs.append(h)
        return torch.stack(hs, 1) @ p["o"] + p["ob"]

    def loss(p, batch):
        x, y = batch
        return F.cross_entropy(logits(p, x).reshape(-1, VOCAB), y.reshape(-1))

    desc = f"GRU char LM (H={H}, T={T}, batch {v['batch_size']}, init x{scale:g}) on stdlib source"
    if variant:
        desc += f", variant {variant}"
    return Task(name="gru_charlm", description=desc, init=init, loss=loss, train_batch=train_batch,
                val_batch=val_batch, steps=steps, schedule=WarmupCosine(0.05), device=device, dtype=dtype)
