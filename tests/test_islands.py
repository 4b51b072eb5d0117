"""Islands: layout, one island == one Evolution, ring migration, checkpoints, the search with islands."""
import json
import random
from pathlib import Path

import pytest

import seeds
from evolve.candidate import Candidate, Fitness
from evolve.config import SearchConfig
from evolve.evolution import Evolution
from evolve.executor import LocalExecutor
from evolve.islands import Islands, Layout
from evolve.mutate import MutationWeights, mutate
from evolve.search import Search
from toy_fitness import toy_evaluate


def _mutator(p, rng):
    return mutate(p, rng, MutationWeights(), max_length=20, max_slots=3)


def _score(c: Candidate) -> Fitness:
    s = (int(c.program.hash[:6], 16) % 1000) / 1000.0
    return Fitness(s, (s,))


def test_layout_follows_the_workers_unless_set():
    assert Layout.resolve(0, 0, 0, 0, workers=1, batch_size=4) == Layout(1, 32, 16, 0)
    assert Layout.resolve(0, 0, 0, 0, workers=16, batch_size=1) == Layout(1, 32, 16, 0)
    # 64 workers x 4 candidates: 4 islands, 64 in flight each, population twice that
    assert Layout.resolve(0, 0, 0, 0, workers=64, batch_size=4) == Layout(4, 128, 64, 512)
    assert Layout.resolve(0, 0, 0, 0, workers=512, batch_size=1) == Layout(32, 32, 16, 1024)
    assert Layout.resolve(3, 10, 4, 7, workers=512, batch_size=4) == Layout(3, 10, 4, 7)
    with pytest.raises(ValueError, match="tournament"):
        Layout.resolve(2, 8, 9, 0, workers=1)
    with pytest.raises(ValueError, match="islands"):
        SearchConfig(islands=-1)


def test_one_island_is_exactly_one_evolution():
    adamw = seeds.load("adamw")
    evo = Evolution([adamw], _mutator, random.Random(5), population=6, tournament=3)
    isl = Islands([adamw], _mutator, 5, Layout(1, 6, 3, 0))
    for _ in range(80):
        a, b = evo.propose(), isl.propose()
        assert (a.id, a.program.hash, a.parent, a.mutation, a.thresholds) == \
               (b.id, b.program.hash, b.parent, b.mutation, b.thresholds) and b.island == 0
        evo.report(a, _score(a))
        isl.report(b, _score(b))
    assert evo.best.id == isl.best.id


def test_islands_take_turns_with_unique_ids_and_results_go_home():
    isl = Islands([seeds.load("adamw")], _mutator, 0, Layout(3, 4, 2, 0))
    cands = [isl.propose() for _ in range(30)]
    assert [c.island for c in cands] == [0, 1, 2] * 10
    assert [c.id for c in cands] == list(range(30))
    for c in cands:
        isl.report(c, _score(c))
    for i, ev in enumerate(isl.islands):
        assert {ind.candidate.island for ind in ev.population} == {i}
        assert ev.reported == 10
    # the streams differ: island 1 and 2 do not breed the same mutants
    assert {c.program.hash for c in cands if c.island == 1} != {c.program.hash for c in cands if c.island == 2}


def test_ring_migration_moves_each_best_to_the_next_island():
    sgd = seeds.load("sgd")
    isl = Islands([sgd], _mutator, 0, Layout(3, 3, 2, 9))
    scores = {0: [0.1, 0.9, 0.2], 1: [0.5, 0.3, 0.4], 2: [0.6, 0.7, 0.05]}
    cid = 0
    for k in range(3):
        for i in range(3):
            isl.report(Candidate(cid, sgd, island=i), Fitness(scores[i][k], (scores[i][k],)))
            cid += 1
    # the 9th report triggered one migration: island i's best is now island i+1's youngest
    assert isl.migrations == 1
    bests = {0: 0.9, 1: 0.5, 2: 0.7}
    for i in range(3):
        dest = isl.islands[(i + 1) % 3]
        assert dest.population[-1].fitness.score == bests[i]
        assert len(dest.population) == 3
    assert isl.islands[1].best.fitness.score == 0.9   # a better migrant becomes the island's best


def test_islands_state_round_trip_continues_identically():
    adamw = seeds.load("adamw")
    a = Islands([adamw], _mutator, 3, Layout(2, 5, 2, 7))
    for _ in range(40):
        c = a.propose()
        a.report(c, _score(c))
    state = json.loads(json.dumps(a.state_dict()))
    # programs travel as text, and printing may reorder statements (a mutation then picks other
    # ones), so compare two searches restored from the same state
    a = Islands([adamw], _mutator, 3, Layout(2, 5, 2, 7))
    a.load_state_dict(state)
    b = Islands([adamw], _mutator, 99, Layout(2, 5, 2, 7))   # other random streams, other counters
    b.report(b.propose(), Fitness(0.5, (0.5,)))
    b.load_state_dict(state)
    assert a.next_id == 40 and a.turn == 0 and a.since_migration == 40 % 7
    for _ in range(40):
        ca, cb = a.propose(), b.propose()
        assert (ca.id, ca.island, ca.program.hash, ca.parent) == (cb.id, cb.island, cb.program.hash, cb.parent)
        a.report(ca, _score(ca))
        b.report(cb, _score(cb))
    assert a.migrations == b.migrations > 0
    with pytest.raises(ValueError, match="islands"):
        Islands([adamw], _mutator, 3, Layout(3, 5, 2, 7)).load_state_dict(state)


def _cfg(tmp_path, **kw):
    base = dict(population=6, tournament=3, max_evals=60, batch_size=3, checkpoint_every=7,
                checkpoint_seconds=0.0, out=str(tmp_path / "run"), validate=False, test_top=0, progress=False, seed=1,
                islands=3, migration_every=12)
    base.update(kw)
    return SearchConfig(**base)


def _log(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


def test_search_with_islands_logs_each_island_and_resumes(tmp_path):
    cfg = _cfg(tmp_path)
    res = Search.start(cfg, LocalExecutor(toy_evaluate), overwrite=True).run()
    log = _log(res.run_dir)
    assert {e["island"] for e in log} == {0, 1, 2}
    assert res.stats["islands"] == 3 and res.stats["migrations"] >= 4
    ck = json.loads((Path(cfg.out) / "checkpoint.json").read_text())
    assert len(ck["evolution"]["islands"]) == 3 and "cache" not in ck
    # resume keeps the layout it started with, even with other settings now
    resumed = Search.resume(cfg.out, LocalExecutor(toy_evaluate), max_evals=90, workers=64)
    assert resumed.layout == Layout(3, 6, 3, 12)
    assert len(resumed.cache) > 0          # refilled from the log
    res2 = resumed.run()
    log = _log(res2.run_dir)
    assert [e["eval"] for e in log] == list(range(1, 91)) and len({e["id"] for e in log}) == 90
    # the same seed gives the same run with islands too (one worker)
    again = Search.start(_cfg(tmp_path / "b", max_evals=90), LocalExecutor(toy_evaluate)).run()
    first = Search.start(_cfg(tmp_path / "c", max_evals=90), LocalExecutor(toy_evaluate)).run()
    assert [(e["hash"], e["island"]) for e in _log(again.run_dir)] == \
           [(e["hash"], e["island"]) for e in _log(first.run_dir)]
