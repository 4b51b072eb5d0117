"""Data-flow graph output: Graphviz DOT text that parses back to the graph, and PNG drawings."""
from __future__ import annotations

import re

import pydot
from hypothesis import given, settings
import pytest

import dsl
import seeds
from dsl.draw import draw_png, layered_positions
from strategies import programs

PROGRAMS = {
    "adamw": dsl.to_text(seeds.load("adamw")),
    "quoted": """
def quoted(w, g, lr, m=0.0, prev=0.0):
    m = where(g > -0.5, interp(g, m, 0.9), norm(g) * 1e-3)
    prev = g
    return lr * (m + prev)
""",
}

_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(->)|([{}\[\];,=])|([A-Za-z_0-9.+-]+))')


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        assert m and m.end() > pos, f"cannot tokenize DOT at {text[pos:pos + 30]!r}"
        out.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    return out


def _unquote(tok: str) -> str:
    if tok.startswith('"'):
        return re.sub(r"\\(.)", r"\1", tok[1:-1])
    assert re.fullmatch(r"[A-Za-z_0-9.+-]+", tok), tok
    return tok


def parse_dot(text: str) -> tuple[str, dict, list]:
    """A small parser for the DOT subset `to_dot` writes: (name, {node: attrs}, [(a, b, attrs)])."""
    toks = _tokens(text)
    i = 0

    def take(expected=None):
        nonlocal i
        tok = toks[i]
        i += 1
        if expected is not None:
            assert tok == expected, f"expected {expected!r}, got {tok!r}"
        return tok

    def attrs():
        out = {}
        if toks[i] != "[":
            return out
        take("[")
        while toks[i] != "]":
            k = _unquote(take())
            take("=")
            out[k] = _unquote(take())
            if toks[i] == ",":
                take(",")
        take("]")
        return out

    take("digraph")
    name = _unquote(take())
    take("{")
    nodes, edges = {}, []
    while toks[i] != "}":
        a = _unquote(take())
        if toks[i] == "=":  # graph attribute
            take("=")
            take()
        elif toks[i] == "->":
            take("->")
            b = _unquote(take())
            edges.append((a, b, attrs()))
        else:
            nodes[a] = attrs()
        take(";")
    take("}")
    assert i == len(toks)
    return name, nodes, edges


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_dot_parses_back_to_the_graph(name):
    p = dsl.parse(PROGRAMS[name])
    gname, nodes, edges = parse_dot(dsl.to_dot(p))
    gr = dsl.dataflow_graph(p, with_constants=True)
    assert gname == p.name
    assert set(nodes) == set(gr.nodes)
    assert {(a, b) for a, b, _ in edges} == set(gr.edges)
    assert all(a in nodes and b in nodes for a, b, _ in edges)
    for n, d in gr.nodes(data=True):
        assert "label" in nodes[n] and "shape" in nodes[n]
        if d["kind"] == "stmt":
            assert nodes[n]["label"] == f"{n} = {d['op']}"
    dashed = {(a, b) for a, b, at in edges if at.get("style") == "dashed"}
    assert dashed == {(f"next:{x}", f"slot:{x}") for x in p.slot_names}


def test_dot_parses_with_pydot():
    p = dsl.parse(PROGRAMS["quoted"])
    (graph,) = pydot.graph_from_dot_data(dsl.to_dot(p))
    gr = dsl.dataflow_graph(p, with_constants=True)
    assert len(graph.get_edges()) == gr.number_of_edges()


def test_parse_dot_rejects_broken_text():
    good = dsl.to_dot(dsl.parse(PROGRAMS["adamw"]))
    for bad in (good.replace("->", "-"), good.rstrip().rstrip("}"), good.replace(";", "", 1)):
        with pytest.raises((AssertionError, IndexError)):
            parse_dot(bad)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_draw_png_writes_an_image(name, tmp_path):
    p = dsl.parse(PROGRAMS[name])
    path = draw_png(p, tmp_path / f"{name}.png")
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_layers_go_left_to_right():
    p = dsl.parse(PROGRAMS["adamw"])
    gr = dsl.dataflow_graph(p, with_constants=True)
    pos = layered_positions(gr)
    assert set(pos) == set(gr.nodes)
    for a, b, d in gr.edges(data=True):
        if not d.get("recurrent"):
            assert pos[a][0] < pos[b][0], (a, b)
    assert len(set(pos.values())) == len(pos)  # no two nodes on the same spot


@settings(max_examples=200, deadline=None)
@given(programs())
def test_live_nodes_are_the_ancestors_of_the_update_in_the_networkx_graph(p):
    import networkx as nx

    from dsl.graph import dataflow_graph, live_nodes

    assert live_nodes(p) == nx.ancestors(dataflow_graph(p), "update") | {"update"}
