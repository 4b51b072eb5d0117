"""Code shipping and worker failures: what travels to a cluster, and searches that cannot run
stop quickly with the worker's own error (the real multi-node runs are in test_cluster.py)."""
import json
import sys
import time
from pathlib import Path

import pytest

import dsl
import seeds
import toy_fitness
from evolve.candidate import Fitness, Job
from evolve.cache import FitnessCache
from evolve.cli import main
from evolve.config import SearchConfig
from evolve.executor import LocalExecutor
from evolve.launch import load_tasks
from evolve.ray_executor import RayExecutor, WorkerStartupError, cause
from evolve.search import Search
from evolve.shipping import PROJECT_PACKAGES, import_task_modules, load_task_module, runtime_env

TASK_MODULE = '''
import torch
import tasks
from tasks import Task

@tasks.register("{name}")
def factory(size=1, device="cpu", dtype=torch.float32):
    x = torch.randn(128, 4, generator=torch.Generator().manual_seed(0))
    y = x @ torch.arange(4.0)
    return Task("{name}", init=lambda gen: {{"w": torch.zeros(4)}},
                loss=lambda p, batch: ((x.to(p["w"]) @ p["w"] - y.to(p["w"])) ** 2).mean(),
                steps=60, device=device, dtype=dtype)
'''


def _adamw_text():
    return dsl.to_text(seeds.load("adamw"))


# ---------------------------------------------------------------------- what is shipped
def test_runtime_env_ships_the_packages_and_task_modules(tmp_path):
    (tmp_path / "mine_a.py").write_text(TASK_MODULE.format(name="mine_a_task"))
    mod = load_task_module(str(tmp_path / "mine_a.py"))
    env = runtime_env((mod,), base={"env_vars": {"X": "1"}})
    shipped = [Path(p) for p in env["py_modules"]]
    assert [p.name for p in shipped[:4]] == list(PROJECT_PACKAGES)
    assert all((p / "__init__.py").exists() for p in shipped[:4])
    assert shipped[4] == (tmp_path / "mine_a.py").resolve()
    assert env["env_vars"] == {"X": "1"} and "__pycache__" in env["excludes"]


def test_a_submitted_job_that_ships_its_own_modules_is_left_alone(monkeypatch):
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"py_modules": ["s3://x.zip"]}}))
    assert "py_modules" not in runtime_env((), base={"env_vars": {"A": "b"}})
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"working_dir": "."}}))
    assert len(runtime_env(())["py_modules"]) == 4   # working_dir and py_modules merge


def test_task_module_from_file_package_and_name(tmp_path, monkeypatch):
    import tasks

    (tmp_path / "mine_b.py").write_text(TASK_MODULE.format(name="mine_b_task"))
    pkg = tmp_path / "mine_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(TASK_MODULE.format(name="mine_pkg_task"))
    try:
        assert load_task_module(str(tmp_path / "mine_b.py")).name == "mine_b"
        assert load_task_module(str(pkg)).name == "mine_pkg"
        assert {"mine_b_task", "mine_pkg_task"} <= set(tasks.names())
        assert import_task_modules(("mine_b",))[0].__name__ == "mine_b"   # as a worker imports it
        m = load_task_module("toy_fitness")                                 # a dotted name on sys.path
        assert m.name == "toy_fitness" and m.path.endswith("toy_fitness.py")
    finally:
        for t in ("mine_b_task", "mine_pkg_task"):
            tasks.registry.unregister(t)


def test_task_module_errors_say_what_and_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_task_module(str(tmp_path / "nope.py"))
    (tmp_path / "evolve.py").write_text("")
    with pytest.raises(ValueError, match="taken by this project"):
        load_task_module(str(tmp_path / "evolve.py"))
    (tmp_path / "2bad.py").write_text("")
    with pytest.raises(ValueError, match="not a valid module name"):
        load_task_module(str(tmp_path / "2bad.py"))
    with pytest.raises(ImportError, match="not on this worker: pass it with --tasks-module"):
        import_task_modules(("no_such_task_module_xyz",))
    (tmp_path / "needs_dep.py").write_text("import a_dependency_nobody_has\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ImportError, match="'needs_dep' failed to import.*a_dependency_nobody_has"):
            import_task_modules(("needs_dep",))
    finally:
        sys.path.remove(str(tmp_path))


def test_unknown_tasks_are_refused_on_the_driver():
    with pytest.raises(ValueError, match="unknown task.*not_a_task.*--tasks-module"):
        load_tasks(SearchConfig(stages=(("quadratic", "not_a_task"),)))


def test_cli_resolves_out_and_task_module(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine_c.py").write_text(TASK_MODULE.format(name="mine_c_task"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPTSEARCH_BASELINE_CACHE", str(tmp_path / "baselines.json"))
    import tasks

    try:
        code = main(["search", "--local", "--tasks-module", "mine_c.py", "--stages", "mine_c_task",
                     "--no-validation", "--test-top", "0", "--max-evals", "6", "--population", "3", "--tournament", "2",
                     "--out", "rel/run", "--no-progress"])
    finally:
        tasks.registry.unregister("mine_c_task")
    assert code == 0
    out = capsys.readouterr()
    assert f"run directory: {tmp_path / 'rel' / 'run'}" in out.out
    cfg = json.loads((tmp_path / "rel" / "run" / "config.json").read_text())
    assert cfg["out"] == str(tmp_path / "rel" / "run")
    assert cfg["tasks_modules"] == [str(tmp_path / "mine_c.py")]
    log = [json.loads(x) for x in (tmp_path / "rel" / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 6 and "mine_c_task" in log[0]["fitness"]["task_scores"]


# ---------------------------------------------------------------------- failures
def test_cause_takes_the_workers_own_error():
    text = ("ray::_Worker.__init__() (pid=1, ip=1.2.3.4)\n  At least one of the input arguments for this task "
            "could not be computed:\nray.exceptions.RaySystemError: System error: No module named 'evolve'\n"
            "traceback: Traceback (most recent call last):\n  File \"x.py\", line 1\n"
            "ModuleNotFoundError: No module named 'evolve'\n")
    assert cause(RuntimeError(text)) == "ModuleNotFoundError: No module named 'evolve'"
    assert cause(RuntimeError("")) == "RuntimeError: RuntimeError"


def test_crashes_and_timeouts_are_never_cached_as_the_programs_score():
    cache = FitnessCache()
    for status in ("crash", "lost", "timeout"):
        cache.store(f"h-{status}", f"f-{status}", Fitness.failed(status, "infrastructure"))
        assert cache.lookup(f"h-{status}", f"f-{status}") is None
    cache.store("h", "f", Fitness.failed("failed", "nan at step 3"))   # the program's own failure
    assert cache.lookup("h", "f") is not None


def test_an_evaluator_that_raises_is_reported_but_not_cached(tmp_path):
    calls = {"n": 0}

    def flaky(jobs):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise MemoryError("out of memory (simulated)")
        return toy_fitness.toy_evaluate(jobs)

    cfg = SearchConfig(population=3, tournament=2, max_evals=6, batch_size=1, out=str(tmp_path / "run"),
                       validate=False, test_top=0, progress=False, seeds=("adamw",))
    s = Search.start(cfg, LocalExecutor(flaky))
    res = s.run()
    log = [json.loads(x) for x in (Path(res.run_dir) / "log.jsonl").read_text().splitlines()]
    assert [e["status"] for e in log][:1] == ["crash"]
    assert all(f.status != "crash" for f, _ in s.cache.by_hash.values())
    assert all(f.status != "crash" for f in s.cache.by_fingerprint.values())
    assert log[-1]["status"] == "ok"


def _import_error_factory():
    def build():
        raise ImportError("No module named 'a_dependency_the_nodes_lack'")
    return build


def test_workers_that_cannot_start_stop_the_search_with_their_error(ray_session):
    t0 = time.monotonic()
    ex = RayExecutor(_import_error_factory(), workers=2, candidate_timeout=30, start_timeout=120)
    ex.submit([Job(0, _adamw_text())])
    with pytest.raises(WorkerStartupError) as err:
        for _ in range(120):
            ex.wait(timeout=1.0)
    ex.close()
    assert "a_dependency_the_nodes_lack" in str(err.value) and "Install" in str(err.value)
    assert time.monotonic() - t0 < 90


def test_no_node_with_the_resources_stops_the_search_after_the_start_timeout(ray_session):
    ex = RayExecutor(toy_fitness.factory, workers=1, num_gpus=1, start_timeout=3)
    ex.submit([Job(0, _adamw_text())])
    with pytest.raises(WorkerStartupError, match="No node can place a worker.*GPU: 1"):
        for _ in range(30):
            ex.wait(timeout=1.0)
    ex.close()


def test_an_evaluator_crash_is_retried_on_a_fresh_worker(ray_session, tmp_path):
    ex = RayExecutor(toy_fitness.CrashOnce(str(tmp_path / "crashed")), workers=1, candidate_timeout=60)
    ex.submit([Job(0, _adamw_text())])
    got = []
    for _ in range(60):
        got += ex.wait(timeout=1.0)
        if got:
            break
    ex.close()
    assert len(got) == 1 and got[0][1].status == "ok", got
    assert ex.lost_workers == 1 and (tmp_path / "crashed").exists()
