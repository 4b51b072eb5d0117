"""The HTML run report: valid, self-contained, every section present, run text escaped."""
import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

import dsl

from evolve.cli import main
from evolve.config import SearchConfig
from evolve.executor import LocalExecutor
from evolve.report_html import SECTIONS, build_report
from evolve.search import Search
from toy_fitness import toy_evaluate

VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Checker(HTMLParser):
    """Collects section ids, image sources, links and text; fails on unbalanced tags."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.sections, self.srcs, self.hrefs, self.text, self.tags = [], [], [], [], [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "img":
            self.srcs.append(a.get("src", ""))
        if "href" in a:
            self.hrefs.append(a["href"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Checker:
    c = _Checker()
    c.feed(text)
    c.close()
    assert c.stack == [], f"unclosed: {c.stack}"
    return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    cfg = SearchConfig(population=6, tournament=3, max_evals=30, batch_size=3, out=str(out), validate=False, test_top=0,
                       progress=False, seed=1, stages=(("quadratic",),))
    Search.start(cfg, LocalExecutor(toy_evaluate), overwrite=True).run()
    # held-out rows as validate() writes them: one scored, one that ran out of time (score null)
    (out / "heldout.json").write_text(json.dumps({"tasks": ["mlp_digits"], "rows": [
        {"name": "#3", "score": 0.125, "status": "ok", "reason": "", "task_scores": {"mlp_digits": 0.125}},
        {"name": "lion", "score": None, "status": "timeout", "reason": "ran <b>past</b> 900 s & more",
         "task_scores": {"mlp_digits": -99.0}}]}))
    return out


def test_report_is_valid_self_contained_html_with_every_section(run, tmp_path, monkeypatch):
    monkeypatch.setenv("OPTSEARCH_BASELINE_CACHE", str(tmp_path / "baselines.json"))
    text = build_report(str(run), task="quadratic", steps=30, top=3)
    c = _parse(text)
    assert c.sections == list(SECTIONS)
    assert len(c.srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in c.srcs)  # + meta_overfit
    assert all(h.startswith("#") for h in c.hrefs) and "script" not in c.tags and "http" not in text.replace(
        "http-equiv", "")
    body = "".join(c.text)
    # a held-out row without a score prints its status, never a number; its reason is escaped text
    assert "no score: timeout" in body and "-99" not in body
    assert "ran <b>past</b> 900 s & more" in body and "<b>past</b>" not in text
    assert "+0.1250" in body
    # the hall of fame's best is shown as code, math (plain and LaTeX) and traced back to a seed
    hof = json.loads((run / "hall_of_fame.json").read_text())["best"]
    assert f"#1: id {hof[0]['id']}" in body and "LaTeX" in body and "update" in body
    assert f"Lineage of the best (id {hof[0]['id']})" in body and "(seed)" in body
    # loss curves: the best, AdamW and Lion each trained on the chosen task
    curves = text[text.index('id="curves"'):]
    for label in ("best", "AdamW", "Lion"):
        assert f"<td class=l>{label}</td>" in curves
    assert "quadratic, 30 of its" in body


def test_cli_report_without_curves_and_bad_run(run, tmp_path, capsys):
    out = tmp_path / "sub" / "r.html"
    assert main(["report", str(run), "--out", str(out), "--no-curves"]) == 0
    c = _parse(out.read_text())
    assert c.sections == list(SECTIONS) and "loss curves skipped" in "".join(c.text)
    assert main(["report", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "not a run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_report_opens_in_a_headless_browser(run, tmp_path):
    """Chromium renders the report to a PNG without errors (skipped where chromium is absent)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("no chromium here")
    html_path = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(html_path), "--no-curves"]) == 0
    png = tmp_path / "r.png"
    p = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                        "--window-size=1200,3000", html_path.as_uri()], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert png.exists() and png.stat().st_size > 10_000


def test_hall_of_fame_shows_the_simplified_rule_and_its_math():
    from evolve.report_html import _hall_of_fame

    flat = dsl.to_text(dsl.parse("def r(w, g, lr, m=0.0, *, beta2=0.99):\n    m = interp(g, m, 0.9)\n"
                                 "    return lr * sign(m) * (beta2 >= beta2)\n"))
    html = _hall_of_fame([{"id": 3, "score": 0.1, "length": 4, "memory": 1, "flat": flat}])
    raw, rest = html.split("# simplified", 1)
    assert "&gt;=" in raw                        # the program as mutation left it
    assert "&gt;=" not in rest and "sign" in rest   # the simplified code and its math
