"""Tuned AdamW baselines travel to workers as values; GPU shares and devices of workers."""
import pickle
from dataclasses import replace

import pytest

import dsl
import seeds
import tasks.baselines as baseline_mod
from evolve.baseline_job import compute, compute_remote, needed
from evolve.candidate import Job
from evolve.config import SearchConfig
from evolve.executor import safe_evaluate
from evolve.placement import GPU_WORKERS_PER_GPU, gpu_share, worker_count, worker_device
from evolve.worker import TaskEvaluator

STAGES = (("quadratic",), ("quadratic", "rosenbrock"))
TEXTS = [dsl.to_text(seeds.load("lion")), dsl.to_text(seeds.load("adamw"))]


def _jobs(repeats=None):
    return [Job(i, t, (-1.0,), None, repeats) for i, t in enumerate(TEXTS)]


def _no_tuning(*a, **k):
    raise AssertionError("a baseline was tuned in the worker")


@pytest.fixture
def no_driver_disk(tmp_path, monkeypatch):
    """A worker on another machine: no baseline file, a HOME without a cache, nothing in memory."""
    missing = tmp_path / "nowhere" / "baselines.json"
    monkeypatch.setenv(baseline_mod.CACHE_ENV, str(missing))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    baseline_mod.clear_memory_cache()
    yield missing
    baseline_mod.clear_memory_cache()


def test_shipped_baselines_give_the_scores_of_the_file_with_no_file(tmp_path, monkeypatch, no_driver_disk):
    path = tmp_path / "driver" / "baselines.json"
    monkeypatch.setenv(baseline_mod.CACHE_ENV, str(path))
    from_file = TaskEvaluator(STAGES, device="cpu", repeats=2)()(_jobs())  # the old way: tuned, read from disk
    shipped = tuple(baseline_mod.read_cache(str(path)).values())
    assert sorted((b.task, b.seed) for b in shipped) == [("quadratic", 0), ("quadratic", 1),
                                                         ("rosenbrock", 0), ("rosenbrock", 1)]

    monkeypatch.setenv(baseline_mod.CACHE_ENV, str(no_driver_disk))
    baseline_mod.clear_memory_cache()
    monkeypatch.setattr(baseline_mod, "_tune", _no_tuning)
    ev = pickle.loads(pickle.dumps(TaskEvaluator(STAGES, device="cpu", repeats=2, baselines=shipped)))
    assert ev.baselines == shipped  # pickling (what Ray does) carries them
    got = ev()(_jobs())
    assert [f.to_dict() | {"seconds": 0} for f in got] == [f.to_dict() | {"seconds": 0} for f in from_file]
    assert got[0].stage_scores[1] != 0.0 and got[1].score == 0.0  # lion vs AdamW; AdamW against itself
    assert not no_driver_disk.exists() and not baseline_mod._MEMORY


def test_missing_baseline_raises_naming_task_seed_device_dtype(no_driver_disk, monkeypatch):
    ev = TaskEvaluator(STAGES[:1], device="cpu")
    shipped = compute(ev, [("quadratic", 0)])
    monkeypatch.setattr(baseline_mod, "_tune", _no_tuning)
    run = TaskEvaluator(STAGES[:1], device="cpu", baselines=shipped)()
    assert run(_jobs())[1].score == 0.0
    with pytest.raises(baseline_mod.MissingBaseline) as e:  # a job asks for 2 seeds; seed 1 was not shipped
        run(_jobs(repeats=2))
    msg = str(e.value)
    assert "'quadratic' seed 1" in msg and "device cpu" in msg and "dtype float32" in msg and "size 1" in msg
    # In a search it is an infrastructure failure (retried elsewhere, never cached), not a silent re-tune.
    (f,) = safe_evaluate(run, _jobs(repeats=2)[:1], "w")
    assert f.status == "crash" and "no tuned AdamW baseline for task 'quadratic' seed 1" in f.reason
    # The error survives the trip back from a Ray worker.
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is baseline_mod.MissingBaseline and str(again) == msg


def test_worker_with_another_dtype_or_size_fails_at_start(no_driver_disk):
    shipped = compute(TaskEvaluator(STAGES[:1], device="cpu"), [("quadratic", 0)])
    with pytest.raises(baseline_mod.MissingBaseline, match="dtype bfloat16"):
        TaskEvaluator(STAGES[:1], device="cpu", baselines=shipped, dtype="bfloat16")()
    with pytest.raises(baseline_mod.MissingBaseline, match="size 2"):
        TaskEvaluator(STAGES[:1], device="cpu", baselines=shipped, task_size=2)()


def test_needed_pairs_cover_stages_validation_and_test_at_their_seeds():
    cfg = SearchConfig(stages=STAGES, repeats=2, validation=("logreg_digits", "zipf_bag"), validation_repeats=2,
                       test=("mlp_digits",), test_repeats=3)
    assert needed(cfg) == (("logreg_digits", 0), ("logreg_digits", 1), ("mlp_digits", 0), ("mlp_digits", 1),
                           ("mlp_digits", 2), ("quadratic", 0), ("quadratic", 1), ("rosenbrock", 0),
                           ("rosenbrock", 1), ("zipf_bag", 0), ("zipf_bag", 1))
    assert needed(cfg.replace(validate=False)) == (("mlp_digits", 0), ("mlp_digits", 1), ("mlp_digits", 2),
                                                   ("quadratic", 0), ("quadratic", 1), ("rosenbrock", 0),
                                                   ("rosenbrock", 1))
    assert needed(cfg.replace(validate=False, test_top=0)) == (("quadratic", 0), ("quadratic", 1),
                                                               ("rosenbrock", 0), ("rosenbrock", 1))
    assert ("quadratic", 5) in needed(cfg, seed=4)


def test_task_size_and_dtype_reach_the_tasks_and_key_the_baselines(no_driver_disk):
    from evolve.cli import build_parser

    a = build_parser().parse_args(["search", "--task-size", "2", "--dtype", "bfloat16", "--gpus-per-worker", "0.5"])
    cfg = SearchConfig().replace(task_size=a.task_size, dtype=a.dtype, gpus_per_worker=a.gpus_per_worker)
    ev = TaskEvaluator.from_config(cfg, device="cpu")
    ec = ev.eval_config()
    assert (ec.size, ec.dtype, ec.device) == (2, "bfloat16", "cpu")
    task = ec.task("quadratic")
    assert task.num_params == 200 and str(task.dtype) == "torch.bfloat16"
    (b,) = compute(ev, [("quadratic", 0)])
    (b1,) = compute(TaskEvaluator.from_config(SearchConfig(), device="cpu"), [("quadratic", 0)])
    assert b.key != b1.key and b.seed == 0
    with pytest.raises(ValueError, match="dtype 'float16'"):
        SearchConfig(dtype="float16")
    with pytest.raises(ValueError, match="task_size"):
        SearchConfig(task_size=0)
    with pytest.raises(ValueError, match="gpus_per_worker"):
        SearchConfig(gpus_per_worker=1.5)


def test_gpu_share_device_and_worker_count():
    auto = SearchConfig()
    assert gpu_share(auto, 0) == 0.0 and gpu_share(auto, 8) == 1.0 / GPU_WORKERS_PER_GPU
    assert gpu_share(auto.replace(gpus_per_worker=0.5), 8) == 0.5
    assert gpu_share(auto.replace(device="cpu"), 8) == 0.0  # CPU workers on a GPU cluster
    assert worker_device(auto, 0.25) == "cuda" and worker_device(auto, 0.0) == "cpu"
    with pytest.raises(ValueError, match="no GPU"):
        worker_device(auto.replace(device="cuda"), 0.0)
    assert worker_count(auto, {"CPU": 64, "GPU": 4}, 0.25) == 16
    assert worker_count(auto, {"CPU": 8, "GPU": 4}, 0.25) == 8     # each actor also takes a CPU
    assert worker_count(auto, {"CPU": 64, "GPU": 0.7}, 0.1) == 7    # no float truncation to 6
    assert worker_count(auto, {"CPU": 6}, 0.0) == 6
    assert worker_count(auto.replace(workers=3), {"CPU": 64, "GPU": 4}, 0.25) == 3


def test_local_executor_gets_shipped_baselines_and_fills_the_driver_file(tmp_path, monkeypatch):
    from evolve.launch import make_executor

    path = tmp_path / "baselines.json"
    monkeypatch.setenv(baseline_mod.CACHE_ENV, str(path))
    baseline_mod.clear_memory_cache()
    cfg = SearchConfig(stages=STAGES[:1], validate=False, test=("rosenbrock",), device="cpu")
    ex = make_executor(cfg, local=True)
    assert {(b["task"], b["seed"]) for b in baseline_mod._read(str(path)).values()} == {
        ("quadratic", 0), ("rosenbrock", 0), ("rosenbrock", 1), ("rosenbrock", 2)}
    ex.submit(_jobs()[1:])
    ((_, f),) = ex.wait()
    assert f.score == 0.0


def test_baselines_tuned_by_one_ray_task_equal_local_ones(ray_session, no_driver_disk):
    ev = TaskEvaluator(STAGES[:1], device="cpu")
    pairs = [("quadratic", 0), ("quadratic", 1)]
    remote = compute_remote(ev, pairs)
    untimed = lambda bs: [replace(b, seconds=0.0) for b in bs]  # noqa: E731
    assert untimed(remote) == untimed(compute(ev, pairs)) and [b.seed for b in remote] == [0, 1]
    # entries the driver already has are not tuned again there
    assert compute_remote(ev, pairs, {b.key: b for b in remote}) == remote
