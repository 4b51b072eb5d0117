"""The Lion-family check used by the rediscovery report."""
import pytest

import dsl
import seeds
from evolve.families import sign_momentum

SIGNUM_WD = """def f(w, g, lr, t, m=0.0, *, beta1=0.9, weight_decay=0.01):
    m = interp(g, m, beta1)
    return lr * (sign(m / (1 - beta1 ** t)) + weight_decay * w)
"""
SIGN_INSIDE_DECAY = """def f(w, g, lr, m=0.0):
    m = interp(g, m, 0.9)
    return lr * sign(m + 0.01 * w)
"""
SCALED_BY_TENSOR = """def f(w, g, lr, m=0.0, v=0.0):
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.99)
    return lr * sign(m) * sqrt(v)
"""


@pytest.mark.parametrize("name", seeds.names())
def test_seeds(name):
    assert sign_momentum(seeds.load(name)) == (name in {"lion", "signum"})


def test_lion_with_weight_decay_and_positive_scalings():
    assert sign_momentum(dsl.parse(SIGNUM_WD))
    lion = dsl.to_text(seeds.load("lion")).replace("weight_decay=0.0", "weight_decay=0.1")
    assert sign_momentum(dsl.parse(lion))


@pytest.mark.parametrize("text", [SIGN_INSIDE_DECAY, SCALED_BY_TENSOR,
                                  "def f(g, lr):\n    return lr * sign(g)\n",
                                  "def f(g, lr, m=0.0):\n    m = interp(g, m, 0.9)\n    return lr * m\n"])
def test_not_the_family(text):
    assert not sign_momentum(dsl.parse(text))
