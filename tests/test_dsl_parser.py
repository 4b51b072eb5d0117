"""Parser errors name what and where; hostile text never runs."""
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dsl
from dsl import ParseError
from strategies import programs

OK = "def f(w, g, lr, t, m=0.0, *, beta=0.9):\n    m = interp(g, m, beta)\n    return lr * m\n"


def err(text: str) -> ParseError:
    with pytest.raises(ParseError) as e:
        dsl.parse(text, filename="rule.py")
    assert isinstance(e.value, ValueError)
    return e.value


@pytest.mark.parametrize("text, msg, line, col", [
    ("def f(g, lr):\n    return lr * foo(g)\n", "unknown function 'foo'", 2, 17),
    ("def f(g, lr):\n    return sqrt(g, g)\n", "sqrt takes 1 argument, got 2", 2, 12),
    ("def f(g, lr):\n    y = x + 1\n    x = g\n    return y\n", "name 'x' is used before assignment", 2, 9),
    ("def f(g, lr):\n    return lr * zz\n", "undefined name 'zz'", 2, 17),
    ("def f(g, lr):\n    y = g\n", "has no return statement", 1, 1),
    ("def f(g, g):\n    return g\n", "duplicate parameter 'g'", 1, 10),
    ("def f(g, lr, m=0.0):\n    return lr * m\n", "state slot 'm' is never assigned", 1, 14),
    ("def f(g, lr):\n    return g.abs()\n", "attribute access", 2, 12),
    ("def f(g, lr):\n    return g[0]\n", "subscripts", 2, 12),
    ("def f(g, lr):\n    for i in g:\n        g = g\n    return g\n", "loops", 2, 5),
    ("def f(g, lr):\n    if g > 0:\n        pass\n    return g\n", "if statements", 2, 5),
    ("def f(g, lr):\n    return sqrt(x=g)\n", "keyword arguments", 2, 17),
    ("def f(g, lr):\n    return 'a'\n", "str constants", 2, 12),
    ("def f(g, lr):\n    return lambda: g\n", "lambdas", 2, 12),
    ("def f(g, lr):\n    g = 2 * g\n    return g\n", "cannot assign to input 'g'", 2, 5),
    ("def f(g, lr):\n    return 0 < g < 1\n", "chained comparisons", 2, 12),
    ("def f(g, lr):\n    return g == 1\n", "comparison Eq", 2, 12),
    ("def f(g, lr):\n    return g // 2\n", "operator FloorDiv", 2, 12),
    ("def f(g, lr):\n    return g\n    y = 1\n", "statements after return", 3, 5),
    ("def f(g, lr, m):\n    return g\n", "has no default", 1, 14),
    ("def f(g=1.0):\n    return g\n", "input 'g' cannot have a default", 1, 9),
    ("def f(g, *, b):\n    return g\n", "needs a default", 1, 13),
    ("def f(g, m=x):\n    m = g\n    return g\n", "must be a number", 1, 12),
    ("def f(g):\n    return g * 1e999\n", "not finite", 2, 16),
    ("def f(g):\n    return sqrt\n", "is a function", 2, 12),
    ("import os\ndef f(g):\n    return g\n", "only one function definition", 1, 1),
    ("def f(g):\n    return g\ndef h(g):\n    return g\n", "only one function", 3, 1),
    ("@dec\ndef f(g):\n    return g\n", "decorators", 1, 2),
    ("def f(g):\n    return (g\n", "syntax error", None, None),
    ("x = 1\n", "expected one function definition", None, None),
    ("def f(g, sqrt=1.0):\n    sqrt = g\n    return g\n", "shadows the function", 1, 10),
    ("def f(g, *, b=1.0):\n    b = g\n    return g\n", "cannot assign to hyperparameter 'b'", 2, 5),
])
def test_errors_name_what_and_where(text, msg, line, col):
    e = err(text)
    assert msg in e.msg, e.msg
    if line is not None:
        assert (e.line, e.col) == (line, col), str(e)
        assert str(e).startswith(f"rule.py:{line}:{col}: ")


def test_error_shows_the_source_line_with_a_caret():
    e = err("def f(g, lr):\n    return lr * foo(g)\n")
    assert str(e).splitlines()[1:] == ["        return lr * foo(g)", "                    ^"]


def test_load_reports_file_name(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("def f(g):\n    return nope(g)\n")
    with pytest.raises(ParseError, match=r"bad\.py:2:12: unknown function"):
        dsl.load(f)
    f.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ParseError, match="not UTF-8"):
        dsl.load(f)
    with pytest.raises(ParseError, match="cannot read"):
        dsl.load(tmp_path / "missing.py")


def test_hostile_program_does_not_run_code(tmp_path):
    marker = tmp_path / "pwned"
    payloads = [
        f"def f(g):\n    return __import__('os').system('touch {marker}')\n",
        f"__import__('os').system('touch {marker}')\ndef f(g):\n    return g\n",
        f"def f(g, m=__import__('os').system('touch {marker}')):\n    m = g\n    return g\n",
        f"def f(g, *, b=open('{marker}', 'w')):\n    return g\n",
        f"def f(g):\n    return exec('open(\"{marker}\", \"w\")')\n",
        f"def f(g):\n    return eval('1')\n",
        f"def f(g):\n    x = (lambda: open('{marker}', 'w'))()\n    return g\n",
        f"class A:\n    pass\ndef f(g):\n    return g\n",
    ]
    for text in payloads:
        with pytest.raises(ParseError):
            dsl.parse(text)
        f = tmp_path / "evil.py"
        f.write_text(text)
        with pytest.raises(ParseError):
            dsl.load(f)
    assert not marker.exists()


def test_nan_and_inf_literals_are_rejected():
    for text in ["def f(g):\n    return nan\n", "def f(g):\n    return float('nan')\n",
                 "def f(g):\n    return inf * g\n", "def f(g, m=1e400):\n    m = g\n    return g\n"]:
        err(text)


def test_deep_nesting_and_huge_text_are_errors_not_crashes():
    deep = "def f(g):\n    return " + "(" * 5000 + "g" + ")" * 5000 + "\n"
    err(deep)
    chain = "def f(g):\n    return " + " + ".join(["g"] * 3000) + "\n"
    assert "nested too deeply" in err(chain).msg
    calls = "def f(g):\n    return " + "sqrt(" * 150 + "g" + ")" * 150 + "\n"
    assert "nested too deeply" in err(calls).msg
    huge = "def f(g):\n" + "    x = g\n" * 300_000 + "    return x\n"
    assert "characters" in err(huge).msg
    many = "def f(g):\n    x = g\n" + "    x = x * 1.5 + 1\n" * 3000 + "    return x\n"
    assert "program too long" in err(many).msg
    neg = "def f(g):\n    return " + "-" * 100_000 + "g\n"
    err(neg)


def test_docstrings_and_aug_assign_are_accepted():
    p = dsl.parse('"""module doc"""\ndef f(g, lr, m=0.0):\n    """doc"""\n    m += g\n    m *= 0.5\n    return lr * m\n')
    q = dsl.parse("def f(g, lr, m=0.0):\n    m = (m + g) * 0.5\n    return lr * m\n")
    assert p == q


def test_negative_literals_and_unary_minus():
    p = dsl.parse("def f(g, lr):\n    return -lr * -0.5 * g ** -2\n")
    assert dsl.parse(dsl.to_text(p)) == p


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_fuzz_random_text(text):
    try:
        dsl.parse(text)
    except ParseError:
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.data())
def test_fuzz_mutated_program_text(p, data):
    """Corrupt valid program text (delete, insert, replace characters): ParseError or a Program."""
    text = dsl.to_text(p, readable=data.draw(st.booleans()))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        kind = data.draw(st.sampled_from(["del", "ins", "rep"]))
        ch = data.draw(st.sampled_from(list("()*+-/,.=:_ \n\tabgmtwxy019e[]'\"@#\\") + ["**", "import ", "lambda "]))
        if kind == "del":
            text = text[:i] + text[i + 1:]
        elif kind == "ins":
            text = text[:i] + ch + text[i:]
        else:
            text = text[:i] + ch + text[i + 1:]
    try:
        q = dsl.parse(text)
    except ParseError:
        return
    assert isinstance(q, dsl.Program)
    assert dsl.parse(dsl.to_text(q)) == q
