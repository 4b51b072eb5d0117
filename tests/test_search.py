"""The search without Ray: evolution, cache, funnel, run directory, resume."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dsl
import seeds
from evolve.cache import FitnessCache, fingerprint
from evolve.candidate import Candidate, Fitness, Individual, Job
from evolve.config import SearchConfig, load_config
from evolve.evolution import Evolution
from evolve.executor import LocalExecutor, safe_evaluate
from evolve.hall_of_fame import HallOfFame
from evolve.search import Search
from toy_fitness import toy_evaluate

HERE = Path(__file__).parent


def small_config(tmp_path, **kw) -> SearchConfig:
    base = dict(population=8, tournament=3, max_evals=60, batch_size=3, checkpoint_every=7,
                out=str(tmp_path / "run"), validate=False, test_top=0, progress=False, seed=1)
    base.update(kw)
    return SearchConfig(**base)


def run_search(cfg: SearchConfig):
    return Search.start(cfg, LocalExecutor(toy_evaluate), overwrite=True).run()


def test_search_end_to_end_writes_a_run(tmp_path):
    res = run_search(small_config(tmp_path))
    run = Path(res.run_dir)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 60 and [e["eval"] for e in log] == list(range(1, 61))
    assert {"program", "hash", "fingerprint", "score", "stages", "status", "length", "memory", "time"} <= set(log[0])
    hof = json.loads((run / "hall_of_fame.json").read_text())
    assert hof["best"] and hof["pareto"]
    for row in hof["best"]:
        dsl.parse(row["text"])
    scores = [r["score"] for r in hof["best"]]
    assert scores == sorted(scores, reverse=True)
    assert res.stats["cache"]["hit_rate"] > 0.1   # copies of AdamW and repeated mutants
    assert res.stats["trained"] < res.stats["evaluations"]
    assert res.best[0].fitness.score >= 0.0 - 1e-12  # never worse than the AdamW warm start


def test_same_seed_same_run(tmp_path):
    a = run_search(small_config(tmp_path / "a"))
    b = run_search(small_config(tmp_path / "b"))
    la = [(e["hash"], e["score"]) for e in map(json.loads, (Path(a.run_dir) / "log.jsonl").read_text().splitlines())]
    lb = [(e["hash"], e["score"]) for e in map(json.loads, (Path(b.run_dir) / "log.jsonl").read_text().splitlines())]
    assert la == lb
    c = run_search(small_config(tmp_path / "c", seed=2))
    lc = [(e["hash"], e["score"]) for e in map(json.loads, (Path(c.run_dir) / "log.jsonl").read_text().splitlines())]
    assert lc != la


def test_resume_continues_without_duplicates(tmp_path):
    cfg = small_config(tmp_path, max_evals=30)
    first = run_search(cfg)
    assert first.stats["evaluations"] == 30
    resumed = Search.resume(cfg.out, LocalExecutor(toy_evaluate), max_evals=50).run()
    log = [json.loads(line) for line in (Path(cfg.out) / "log.jsonl").read_text().splitlines()]
    assert [e["eval"] for e in log] == list(range(1, 51))
    assert len({e["id"] for e in log}) == 50
    assert resumed.stats["evaluations"] == 50


def test_resume_after_kill_minus_9(tmp_path):
    """A search killed mid-run resumes from its checkpoint and finishes with a clean log."""
    out = tmp_path / "run"
    script = f"""
import sys, time
sys.path.insert(0, {str(HERE)!r})
from evolve.config import SearchConfig
from evolve.executor import LocalExecutor
from evolve.search import Search
from toy_fitness import toy_evaluate
def slow(jobs):
    time.sleep(0.05)
    return toy_evaluate(jobs)
cfg = SearchConfig(population=8, tournament=3, max_evals=100000, batch_size=2, checkpoint_every=5,
                   checkpoint_seconds=0.0, out={str(out)!r}, validate=False, test_top=0, progress=False)
Search.start(cfg, LocalExecutor(slow)).run()
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=HERE.parent)
    deadline = time.time() + 60
    while time.time() < deadline:
        ck = out / "checkpoint.json"
        if ck.exists() and json.loads(ck.read_text())["done"] >= 20:
            break
        time.sleep(0.2)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = len((out / "log.jsonl").read_text().splitlines())
    ck = json.loads((out / "checkpoint.json").read_text())
    assert before >= ck["done"]
    target = ck["done"] + 25
    res = Search.resume(str(out), LocalExecutor(toy_evaluate), max_evals=target).run()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["eval"] for e in log] == list(range(1, len(log) + 1))
    assert len({e["id"] for e in log}) == len(log)
    assert res.stats["evaluations"] == len(log) >= target - 2 * 2


def test_a_raising_evaluation_fails_alone():
    jobs = [Job(0, dsl.to_text(seeds.load("sgd"))), Job(1, "raise_here"), Job(2, dsl.to_text(seeds.load("adam")))]
    out = safe_evaluate(toy_evaluate, jobs, "w")
    assert [f.status for f in out] == ["ok", "crash", "ok"]
    assert "evaluator blew up" in out[1].reason and out[1].score == -10.0


def test_functional_fingerprint_merges_equivalent_programs():
    a = dsl.parse("def f(g, lr):\n    return lr * (g + g)\n")
    b = dsl.parse("def f(g, lr):\n    return 2 * lr * g\n")
    c = dsl.parse("def f(g, lr):\n    return 0.0246 * g\n")   # equals 2*lr*g at one lr only
    assert a != b and fingerprint(a) == fingerprint(b)
    assert fingerprint(c) != fingerprint(a)
    cache = FitnessCache()
    cache.store(a.hash, fingerprint(a), Fitness(0.5, (0.5,)))
    assert cache.lookup(b.hash, fingerprint(b))[1] == "function"
    assert cache.lookup(b.hash, fingerprint(b))[1] == "hash"
    assert cache.stats.hit_rate == 1.0


def test_tournament_prefers_higher_stage_then_score_then_shorter():
    rng = random.Random(0)
    evo = Evolution([seeds.load("sgd")], lambda p, r: (p, "none"), rng, population=3, tournament=3)
    short, long_ = seeds.load("sgd"), seeds.load("adamw")
    evo.report(Candidate(0, long_), Fitness(0.5, (0.1, 0.5)))
    evo.report(Candidate(1, short), Fitness(0.9, (0.9,)))
    evo.report(Candidate(2, short), Fitness(0.5, (0.2, 0.5)))
    assert evo.select().id == 2   # stage 2 beats stage 1; tie on score -> shorter
    assert evo.thresholds(evo.population[2]) == (0.2, 0.5)


def test_funnel_floor_keeps_bad_lineages_out_of_later_stages():
    # A bad parent's own bar is low; without the floor its children would reach stage 2 and
    # outrank good programs whose children failed their parents' higher bars.
    sgd = seeds.load("sgd")
    for floor, expect in ((0.0, (0.0, 0.0)), (-5.0, (-3.0, -2.5)), (float("-inf"), (-3.0, -2.5))):
        evo = Evolution([sgd], lambda p, r: (p, "none"), random.Random(0), population=3, tournament=3,
                        funnel_floor=floor)
        evo.report(Candidate(0, sgd), Fitness(-2.5, (-3.0, -2.5)))
        assert evo.thresholds(evo.population[0]) == expect
    evo.report(Candidate(1, sgd), Fitness(0.4, (0.6, 0.4)))
    assert evo.thresholds(evo.population[1]) == (0.6, 0.4)  # a good parent's own bar is higher
    # a mutant proposed while every member is still in flight (no parent) meets the floor too
    evo = Evolution([sgd], lambda p, r: (p, "mutated"), random.Random(0), population=1, tournament=1, stages=3)
    assert evo.propose().thresholds == ()            # the seed itself: every stage
    assert evo.propose().thresholds == (0.0, 0.0)    # a mutant of a seed, no parent in the population


def test_aging_removes_the_oldest_even_if_best():
    evo = Evolution([seeds.load("sgd")], lambda p, r: (p, "none"), random.Random(0), population=2, tournament=2)
    evo.report(Candidate(0, seeds.load("sgd")), Fitness(5.0, (5.0,)))
    evo.report(Candidate(1, seeds.load("sgd")), Fitness(0.0, (0.0,)))
    evo.report(Candidate(2, seeds.load("sgd")), Fitness(0.0, (0.0,)))
    assert [i.id for i in evo.population] == [1, 2]
    assert evo.best.id == 0


def test_restart_from_best_after_stagnation():
    evo = Evolution([seeds.load("sgd")], lambda p, r: (p, "none"), random.Random(0), population=4,
                    tournament=2, restart_after=3)
    evo.report(Candidate(0, seeds.load("adam")), Fitness(1.0, (1.0,)))
    for i in range(1, 4):
        evo.report(Candidate(i, seeds.load("sgd")), Fitness(0.0, (0.0,)))
    assert evo.restarts == 1 and all(ind.id == 0 for ind in evo.population)


def test_hall_of_fame_is_distinct_and_pareto():
    hof = HallOfFame(size=2)
    sgd, adam, adamw = seeds.load("sgd"), seeds.load("adam"), seeds.load("adamw")
    hof.add(Individual(Candidate(0, adam), Fitness(0.3, (0.3,))), "fa")
    hof.add(Individual(Candidate(1, adam), Fitness(0.4, (0.4,))), "fa")    # same rule, better: replaces
    hof.add(Individual(Candidate(2, sgd), Fitness(0.1, (0.1,))), "fs")
    hof.add(Individual(Candidate(3, adamw), Fitness(0.2, (0.2,))), "fw")
    assert [i.id for i in hof.best()] == [1, 3]
    front = {i.id for i in hof.pareto()}
    assert 1 in front and 2 in front      # best score; shortest program
    assert 3 not in front                 # adamw: longer and worse than adam here


def test_hall_of_fame_keeps_one_entry_per_behaviour():
    hof = HallOfFame(size=5)
    adam, adamw, sgd = seeds.load("adam"), seeds.load("adamw"), seeds.load("sgd")
    same = {"quadratic": 0.25, "rosenbrock": -0.5}
    hof.add(Individual(Candidate(0, adamw), Fitness(-0.125, (-0.125,), dict(same))), "f0")
    hof.add(Individual(Candidate(1, adam), Fitness(-0.125, (-0.125,), dict(same))), "f1")  # same scores, shorter
    hof.add(Individual(Candidate(2, sgd), Fitness(-0.3, (-0.3,), {"quadratic": 0.2, "rosenbrock": -0.8})), "f2")
    assert [i.id for i in hof.best()] == [1, 2]


def test_config_files_and_flags(tmp_path):
    (tmp_path / "c.toml").write_text('[search]\npopulation = 10\nseeds = ["adamw", "lion"]\nstages = [["a", "b"], ["c"]]\n')
    cfg = load_config(str(tmp_path / "c.toml"))
    assert cfg.population == 10 and cfg.seeds == ("adamw", "lion") and cfg.stages == (("a", "b"), ("c",))
    (tmp_path / "c.yaml").write_text("population: 12\nmax_evals: 5\n")
    assert load_config(str(tmp_path / "c.yaml")).population == 12
    assert cfg.replace(max_evals=7, out=None).max_evals == 7
    (tmp_path / "bad.toml").write_text("populaton = 3\n")
    with pytest.raises(ValueError, match="unknown config keys"):
        load_config(str(tmp_path / "bad.toml"))
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg


def test_task_evaluator_averages_seeds_as_the_job_asks():
    import tasks
    from evolve.worker import TaskEvaluator

    lion = seeds.load("lion")
    run = TaskEvaluator(stages=(("quadratic",),), device="cpu")()
    one, three = run([Job(1, dsl.to_text(lion)), Job(2, dsl.to_text(lion), (), None, 3)])
    expect1, = tasks.evaluate([lion], ["quadratic"], tasks.EvalConfig())
    expect3, = tasks.evaluate([lion], ["quadratic"], tasks.EvalConfig(repeats=3))
    assert one.score == expect1.aggregate and three.score == expect3.aggregate
    assert one.score != three.score
    with pytest.raises(ValueError, match="repeats"):
        SearchConfig(test_repeats=0)


def test_fitness_cache_is_a_bounded_lru():
    cache = FitnessCache(size=2)
    f = [Fitness(float(i), (float(i),)) for i in range(4)]
    cache.store("h0", "f0", f[0])
    cache.store("h1", "f1", f[1])
    assert cache.lookup("h0", "x")[0] == f[0]          # h0 is now the most recent
    cache.store("h2", "f2", f[2])                      # evicts h1 (least recently used), keeps h0
    assert cache.lookup("h1", "nope") is None
    assert cache.lookup("h0", "x")[1] == "hash" and len(cache) == 2
    assert cache.fingerprint_of("h2") == "f2" and cache.fingerprint_of("h1") is None
    cache.store("h3", "f2", f[3])                      # same behaviour as h2: first result kept
    assert cache.by_fingerprint["f2"] == f[2] and "f0" not in cache.by_fingerprint
    cache.store("h4", "f4", Fitness.failed("timeout", "slow"))
    assert cache.lookup("h4", "f4") is None            # timeouts are not cached
    with pytest.raises(ValueError, match="cache size"):
        FitnessCache(size=0)


def test_hall_of_fame_checks_equivalence_only_for_entrants_and_remembers():
    calls = []

    def same(a, b):
        calls.append((a.hash, b.hash))
        return False

    hof = HallOfFame(size=2, same_rule=same)
    progs = [seeds.load(n) for n in ("sgd", "adam", "adamw", "lion")]
    hof.add(Individual(Candidate(0, progs[0]), Fitness(0.5, (0.5,))), "a")
    hof.add(Individual(Candidate(1, progs[1]), Fitness(0.4, (0.4,))), "b")
    assert len(calls) == 1 and hof.checks == 1
    hof.add(Individual(Candidate(2, progs[2]), Fitness(0.1, (0.1,))), "c")   # cannot enter: no checks
    assert len(calls) == 1
    hof.add(Individual(Candidate(3, progs[3]), Fitness(0.9, (0.9,))), "d")   # enters: checked against both
    assert len(calls) == 3
    assert [i.id for i in hof.best()] == [3, 0]
    hof.add(Individual(Candidate(4, progs[3]), Fitness(0.95, (0.95,))), "e")  # lion vs sgd again: memo
    assert hof.checks == len(calls) == 4 and calls[-1] == (progs[3].hash, progs[3].hash)


def test_run_log_tail_reads_backwards(tmp_path):
    from evolve.rundir import RunDir

    run = RunDir(tmp_path / "r")
    run.create({})
    for i in range(300):
        run.append({"i": i, "pad": "x" * (i % 7)})
    size = run.log_size()
    run.append({"i": 300})
    assert [e["i"] for e in run.tail(5)] == [296, 297, 298, 299, 300]
    assert [e["i"] for e in run.tail(5, size)] == [295, 296, 297, 298, 299]
    assert len(run.tail(1000, size)) == 300 and run.tail(0) == []
    with open(run.log_path, "a") as f:
        f.write('{"i": 30')                        # a torn last line is skipped
    assert [e["i"] for e in run.tail(2)] == [299, 300]


def test_checkpoint_stays_small_and_resume_refills_the_cache_from_the_log(tmp_path):
    cfg = small_config(tmp_path, max_evals=80, cache_size=25)
    search = Search.start(cfg, LocalExecutor(toy_evaluate), overwrite=True)
    search.run()
    assert len(search.cache) == 25 and len(search.cache.by_fingerprint) <= 25
    ck = json.loads((Path(cfg.out) / "checkpoint.json").read_text())
    assert "cache" not in ck and ck["cache_stats"]["lookups"] == 80
    resumed = Search.resume(cfg.out, LocalExecutor(toy_evaluate), max_evals=100)
    log = [json.loads(line) for line in (Path(cfg.out) / "log.jsonl").read_text().splitlines()]
    want = {e["hash"] for e in log[-25:] if e["status"] not in ("timeout", "lost")}
    assert set(resumed.cache.by_hash) == want
    for e in log[-25:]:
        assert resumed.cache.by_hash[e["hash"]][0].score == e["score"]
    assert resumed.cache.stats.lookups == 80
    assert resumed.run().stats["evaluations"] == 100
