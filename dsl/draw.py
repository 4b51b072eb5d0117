"""Draw a program's data-flow graph as a PNG with networkx and matplotlib (no Graphviz needed).

Nodes are laid out in layers by topological generation (inputs on the left, the update and
the slots' next values on the right); a slot's next value feeds its previous value on the
following step, drawn as a dashed arc. Uses matplotlib's Agg canvas directly, so it never
touches pyplot's global state or needs a display.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import networkx as nx

from .graph import dataflow_graph
from .ops import OPS
from .printer import format_number
from .program import Program

__all__ = ["draw_png", "layered_positions"]

_COLORS = {"input": "#9ecae1", "hparam": "#c7e9c0", "slot": "#fdd0a2", "next": "#fdae6b",
           "update": "#fc9272", "const": "#f0f0f0", "stmt": "#dadaeb"}


def layered_positions(gr: nx.DiGraph) -> dict:
    """x = topological generation (ignoring the recurrent next -> slot edges), y spread per layer."""
    dag = nx.DiGraph()
    dag.add_nodes_from(gr.nodes)
    dag.add_edges_from((a, b) for a, b, d in gr.edges(data=True) if not d.get("recurrent"))
    layers = list(nx.topological_generations(dag))
    last = len(layers) - 1
    layer_of = {n: i for i, gen in enumerate(layers) for n in gen}
    for n, d in gr.nodes(data=True):  # outputs on the right, sources on the left
        if d["kind"] in ("update", "next"):
            layer_of[n] = max(last, 1)
        elif d["kind"] in ("input", "hparam", "slot"):
            layer_of[n] = 0
        elif d["kind"] == "const":  # just before its first reader
            readers = [layer_of[b] for b in gr.successors(n)]
            layer_of[n] = max(0, min(readers, default=1) - 1)
    by_layer: dict[int, list] = {}
    for n in gr.nodes:
        by_layer.setdefault(layer_of[n], []).append(n)
    pos = {}
    for x, nodes in by_layer.items():
        k = len(nodes)
        for i, n in enumerate(nodes):
            pos[n] = (float(x), (k - 1) / 2.0 - i)
    return pos


def _label(n: str, d: dict) -> str:
    kind = d["kind"]
    if kind == "stmt":
        o = OPS[d["op"]]
        return f"{n}\n{o.symbol or o.name}"
    if kind == "const":
        return format_number(d["value"])
    if kind == "slot":
        return n.split(":", 1)[1]
    if kind == "next":
        return n.split(":", 1)[1] + "'"
    if kind == "hparam":
        return f"{n}\n={format_number(d['value'])}"
    return n


def draw_png(program: Program, path: Union[str, os.PathLike], *, with_constants: bool = True,
             dpi: int = 100) -> Path:
    """Write the data-flow graph of ``program`` as a PNG image at ``path``; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    gr = dataflow_graph(program, with_constants=with_constants)
    pos = layered_positions(gr)
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    width = 2.0 + 1.6 * (max(xs) - min(xs) + 1)
    height = 1.5 + 0.75 * (max(ys) - min(ys) + 1)
    fig = Figure(figsize=(min(width, 40.0), min(height, 40.0)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    ax.set_title(program.name)
    plain = [(a, b) for a, b, d in gr.edges(data=True) if not d.get("recurrent")]
    loops = [(a, b) for a, b, d in gr.edges(data=True) if d.get("recurrent")]
    nx.draw_networkx_edges(gr, pos, edgelist=plain, ax=ax, arrows=True, arrowsize=10,
                           edge_color="#555555", node_size=1400)
    if loops:
        nx.draw_networkx_edges(gr, pos, edgelist=loops, ax=ax, arrows=True, arrowsize=10, style="dashed",
                               edge_color="#d94801", connectionstyle="arc3,rad=0.25", node_size=1400)
    for kind, color in _COLORS.items():
        nodes = [n for n, d in gr.nodes(data=True) if d["kind"] == kind]
        if nodes:
            shape = "s" if kind in ("input", "hparam") else "o"
            nx.draw_networkx_nodes(gr, pos, nodelist=nodes, ax=ax, node_color=color, node_shape=shape,
                                   node_size=1400 if kind != "const" else 700, edgecolors="#333333")
    labels = {n: _label(n, d) for n, d in gr.nodes(data=True)}
    nx.draw_networkx_labels(gr, pos, labels=labels, ax=ax, font_size=7)
    ax.margins(0.08)
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
