"""A real Ray cluster whose nodes do not have this project: started with `ray start` from an
environment that holds only the dependencies, driven from a directory outside the checkout.

The environment is a bare virtualenv whose one ``.pth`` line points at this interpreter's
site-packages: the dependencies import, the project does not (its editable-install hook lives
in a ``.pth`` file of that directory, which a plain path entry does not run). Slow: `make test-all`.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

TASK_MODULE = '''
import torch
import tasks
from tasks import Task

@tasks.register("tiny_regression")
def tiny_regression(size=1, device="cpu", dtype=torch.float32):
    x = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
    y = x @ torch.arange(8.0)
    return Task("tiny_regression", init=lambda gen: {"w": torch.zeros(8)},
                loss=lambda p, batch: ((x.to(p["w"]) @ p["w"] - y.to(p["w"])) ** 2).mean(),
                steps=100, device=device, dtype=dtype)
'''

BAD_MODULE = '''
import ray
if ray.is_initialized():          # only inside workers: a dependency the nodes lack
    import a_package_the_nodes_lack
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(address, dashboard url, env for clients) of a 2-CPU head node without the project."""
    base = tmp_path_factory.mktemp("cluster")
    venv = base / "deps-only"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.check_output([str(venv / "bin" / "python"), "-c",
                                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    py = str(venv / "bin" / "python")
    check = subprocess.run([py, "-c", "import ray, torch, sympy\ntry:\n import evolve\nexcept ImportError: print('no project')"],
                           capture_output=True, text=True, cwd=base)
    assert check.stdout.strip() == "no project", check.stdout + check.stderr
    port, dash = _free_port(), _free_port()
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}", RAY_AUTH_MODE="disabled")
    env.pop("PYTHONPATH", None)
    env.pop("RAY_ADDRESS", None)
    # `ray start --head --block` in a session of its own: teardown signals that process group
    # only. (`ray stop` would kill every Ray process of this user on the machine, a search the
    # user is running included: it killed one while this suite ran beside it.)
    start = [py, "-c", "from ray.scripts.scripts import main; main()", "start", "--head", f"--port={port}",
             "--num-cpus=2", f"--dashboard-port={dash}", "--include-dashboard=true", "--disable-usage-stats",
             "--block"]
    head = subprocess.Popen(start, env=env, cwd=base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    client = dict(os.environ, RAY_AUTH_MODE="disabled", OPTSEARCH_BASELINE_CACHE=str(base / "baselines.json"))
    client.pop("RAY_ADDRESS", None)
    client.pop("PYTHONPATH", None)
    try:
        _wait_for_head(py, f"127.0.0.1:{port}", env, base, head)
        yield f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", client, base
    finally:
        _stop_group(head)


def _wait_for_head(py: str, address: str, env: dict, cwd, head: subprocess.Popen, timeout: float = 120) -> None:
    """Until `ray status` reaches the head (or the head process exits)."""
    status = [py, "-c", "from ray.scripts.scripts import main; main()", "status", f"--address={address}"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert head.poll() is None, f"ray start --head exited with {head.returncode}"
        if subprocess.run(status, env=env, cwd=cwd, capture_output=True, timeout=60).returncode == 0:
            return
        time.sleep(1)
    raise TimeoutError(f"the Ray head at {address} did not come up in {timeout} s")


def _stop_group(head: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the head's process group (its GCS, raylet, dashboard, workers)."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        try:
            head.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(1)   # the group's other members after its leader


def _evolve(args, env, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "evolve", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_search_with_a_user_task_module_on_a_cluster_without_the_project(cluster, tmp_path):
    address, _, env, _ = cluster
    (tmp_path / "my_tasks.py").write_text(TASK_MODULE)
    t0 = time.monotonic()
    p = _evolve(["search", "--address", address, "--tasks-module", "my_tasks.py", "--stages", "tiny_regression",
                 "--no-validation", "--test", "quadratic", "--test-repeats", "1",
                 "--max-evals", "12", "--population", "4", "--tournament", "2", "--out", "run", "--no-progress"],
                env, tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert f"run directory: {tmp_path / 'run'}" in p.stdout
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 12
    trained = [e for e in log if e["cached"] is None]
    assert all(e["fitness"]["worker"].startswith("worker-") for e in trained)
    assert all("tiny_regression" in e["fitness"]["task_scores"] for e in trained)
    held = json.loads((tmp_path / "run" / "test.json").read_text())
    assert [r["name"] for r in held["rows"]][-2:] == ["adamw", "lion"] and abs(held["rows"][-2]["score"]) < 1e-6
    assert time.monotonic() - t0 < 400


def test_workers_that_cannot_import_stop_the_search_with_the_cause(cluster, tmp_path):
    address, _, env, _ = cluster
    (tmp_path / "bad_tasks.py").write_text(BAD_MODULE)
    t0 = time.monotonic()
    p = _evolve(["search", "--address", address, "--tasks-module", "bad_tasks.py", "--stages", "quadratic",
                 "--no-validation", "--test-top", "0", "--max-evals", "8", "--population", "4",
                 "--tournament", "2", "--out", "run", "--no-progress"], env, tmp_path)
    took = time.monotonic() - t0
    assert p.returncode == 3, p.stdout[-2000:] + p.stderr[-4000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == p.stderr.strip().splitlines()[-1], p.stderr[-3000:]
    assert errors[0].startswith("error: evaluation workers cannot start") and "a_package_the_nodes_lack" in errors[0]
    assert took < 180


def test_ray_job_submit_with_the_working_dir(cluster, tmp_path):
    _, dashboard, env, _ = cluster
    ray_cli = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
    out = tmp_path / "job-run"
    cmd = ray_cli + ["job", "submit", "--address", dashboard, "--working-dir", str(ROOT), "--",
                     "python", "-m", "evolve", "search", "--address", "auto", "--stages", "quadratic",
                     "--no-validation", "--test-top", "0", "--max-evals", "8",
                     "--population", "4", "--tournament", "2", "--out", str(out), "--no-progress"]
    for _ in range(12):   # the head's job agent takes a while to come up after `ray start`
        p = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        if "No available agent" not in p.stderr:
            break
        time.sleep(5)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"run directory: {out}" in p.stdout
    assert len((out / "log.jsonl").read_text().splitlines()) == 8
