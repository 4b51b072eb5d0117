"""The Ray layer: actors evaluate, die, time out and get replaced; nothing is lost."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dsl
import seeds
import toy_fitness
from evolve.candidate import Job
from evolve.config import SearchConfig
from evolve.ray_executor import RayExecutor
from evolve.search import Search

HERE = Path(__file__).parent


_toy_factory = toy_fitness.factory
_Flaky = toy_fitness.Flaky


def _text(name, tag=""):
    return dsl.to_text(seeds.load(name)) + tag


def _drain(ex, n, timeout=60):
    out, deadline = [], time.time() + timeout
    while len(out) < n and time.time() < deadline:
        out += ex.wait(timeout=1.0)
    return out


def test_actor_that_dies_is_replaced_and_its_jobs_rerun(ray_session, tmp_path):
    ex = RayExecutor(_Flaky(str(tmp_path / "died")), workers=2, candidate_timeout=30)
    ex.submit([Job(0, _text("sgd")), Job(1, _text("adam", "\n#die"))])
    ex.submit([Job(2, _text("lion"))])
    got = {j.id: f for j, f in _drain(ex, 3)}
    ex.close()
    assert sorted(got) == [0, 1, 2]
    assert all(f.status == "ok" for f in got.values()), got
    assert ex.lost_workers == 1


def test_slow_candidate_is_scored_as_timeout_alone(ray_session, tmp_path):
    ex = RayExecutor(_Flaky(str(tmp_path / "unused")), workers=1, candidate_timeout=3)
    ex.submit([Job(0, _text("sgd")), Job(1, _text("adam", "\n#hang"))])
    got = {j.id: f for j, f in _drain(ex, 2, timeout=90)}
    ex.close()
    assert got[0].status == "ok"
    assert got[1].status == "timeout" and "ran past" in got[1].reason


@pytest.mark.slow
def test_search_on_ray_with_two_workers(ray_session, tmp_path):
    """An end-to-end search on Ray (`make test-all`). In the default suite, searches run end to
    end in-process (tests/test_search.py) and two actors share jobs in the tests above."""
    cfg = SearchConfig(population=8, tournament=3, max_evals=40, batch_size=2, workers=2,
                       out=str(tmp_path / "run"), validate=False, test_top=0, progress=False)
    res = Search.start(cfg, RayExecutor(_toy_factory, workers=2)).run()
    log = [json.loads(line) for line in (Path(res.run_dir) / "log.jsonl").read_text().splitlines()]
    assert len(log) == 40
    workers = {e["fitness"]["worker"] for e in log if e["cached"] is None}
    assert len(workers) == 2   # both actors did work


@pytest.mark.slow
def test_node_loss_mid_search(tmp_path):
    """A real multi-node local cluster; a worker node is removed mid-search; the search finishes.
    (40 s on 2 loaded cores, up to its 400 s limit; `make test-all`. In the default suite a lost
    worker is covered by test_actor_that_dies_is_replaced_and_its_jobs_rerun.)"""
    script = HERE / "node_loss_script.py"
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True,
                          timeout=400, cwd=HERE.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["evaluations"] == result["max_evals"]
    assert result["workers_lost"] >= 1
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == result["max_evals"] and len({e["id"] for e in log}) == len(log)
