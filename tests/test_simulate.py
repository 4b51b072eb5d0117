"""The simulated cluster: virtual time, busy fraction, the synthetic fitness, the search on it."""
import time

import pytest

import dsl
import seeds
from evolve.candidate import WORST, Job
from evolve.config import SearchConfig
from evolve.search import Search
from evolve.simulate import SimulatedExecutor, target_fitness


def _job(i, name="adamw"):
    return Job(i, dsl.to_text(seeds.load(name)))


def test_virtual_time_advances_to_each_completion():
    ex = SimulatedExecutor(2, target_fitness("signsgd"), seconds=1.0, sigma=0.0, charge_driver=False)
    assert ex.capacity() == 2
    ex.submit([_job(0)])
    ex.submit([_job(1), _job(2)])          # one worker, two jobs: 2 s
    assert ex.capacity() == 0 and ex.in_flight() == 3
    with pytest.raises(RuntimeError, match="busy"):
        ex.submit([_job(3)])
    assert ex.wait(timeout=0.5) == [] and ex.clock() == 0.5   # nothing done within the timeout
    done = ex.wait(timeout=5.0)
    assert [j.id for j, _ in done] == [0] and ex.clock() == 1.0
    assert ex.busy_fraction() == pytest.approx(3.0 / (2 * 1.0))   # running batches count in full
    assert [j.id for j, _ in ex.wait()] == [1, 2] and ex.clock() == 2.0
    assert ex.busy_fraction() == pytest.approx(3.0 / 4.0)
    assert ex.wait() == [] and ex.in_flight() == 0
    # over [0, 1]: worker 1 ran job 0 for all of it, worker 2 its 2-second batch for 1 s of it
    assert ex.last_submit == 0.0 and ex.busy_fraction(until=1.0) == pytest.approx(2.0 / 2.0)
    assert ex.busy_fraction(until=2.0) == pytest.approx(3.0 / 4.0)


def test_the_driver_time_is_charged_to_the_virtual_clock():
    wall = SimulatedExecutor(1, target_fitness("signsgd"), seconds=1.0, sigma=0.0, driver_clock="wall")
    t0 = wall.clock()
    time.sleep(0.05)                        # the "driver" takes time between calls
    assert wall.clock() - t0 >= 0.05 and wall.driver_seconds >= 0.05
    cpu = SimulatedExecutor(1, target_fitness("signsgd"), seconds=1.0, sigma=0.0)   # CPU time (default)
    t0 = cpu.clock()
    time.sleep(0.05)                        # sleeping is not computing
    assert cpu.clock() - t0 < 0.03
    c0 = time.process_time()
    while time.process_time() - c0 < 0.05:  # computing is
        sum(range(1000))
    assert cpu.clock() - t0 >= 0.05
    free = SimulatedExecutor(1, target_fitness("signsgd"), charge_driver=False)
    time.sleep(0.02)
    assert free.clock() == 0.0


def test_target_fitness_has_its_optimum_at_the_target():
    lion = target_fitness("lion")
    assert lion(_job(0, "lion")).score == pytest.approx(1.0)
    adamw = lion(_job(1, "adamw")).score
    assert 0.0 < adamw < 0.9
    sign = target_fitness("signsgd")
    assert sign(_job(2, "signsgd")).score == pytest.approx(1.0)
    bad = sign(Job(3, "def f(g, lr):\n    return lr * g / (g - g)\n"))
    assert bad.score == WORST and not bad.ok
    with pytest.raises(ValueError, match="unknown target"):
        target_fitness("adam")


def test_search_on_a_simulated_cluster_keeps_workers_busy_and_climbs(tmp_path):
    ex = SimulatedExecutor(16, target_fitness("signsgd"), seconds=1.0, sigma=0.5, seed=0)
    cfg = SearchConfig(max_evals=400, batch_size=1, out=str(tmp_path / "run"), validate=False, test_top=0, progress=False,
                       stages=(("sim",),), seed=0)
    search = Search.start(cfg, ex)
    res = search.run()
    seed_score = target_fitness("signsgd")(_job(0)).score
    assert res.stats["evaluations"] == 400
    assert res.best[0].fitness.score > seed_score + 0.1
    # the run's time is virtual: about (trained / workers) seconds, far more than the real time taken
    assert res.stats["elapsed"] == pytest.approx(ex.now, abs=0.05)
    assert res.stats["trained"] / 16 * 0.8 < ex.now < res.stats["trained"] / 16 * 2.0
    # 16 workers barely load the driver: idle time is the start and the drain at the end
    assert ex.busy_fraction() > 0.7


def test_time_limit_uses_the_executors_clock(tmp_path):
    ex = SimulatedExecutor(4, target_fitness("signsgd"), seconds=1.0, sigma=0.0, seed=0)
    cfg = SearchConfig(max_evals=100_000, time_limit=5.0, batch_size=1, out=str(tmp_path / "run"),
                       validate=False, test_top=0, progress=False, stages=(("sim",),))
    t0 = time.perf_counter()
    res = Search.start(cfg, ex).run()
    assert time.perf_counter() - t0 < 30
    assert 5.0 <= ex.now <= 7.0               # stops proposing after 5 virtual s, drains the last batches
    assert 12 <= res.stats["trained"] <= 4 * 7
