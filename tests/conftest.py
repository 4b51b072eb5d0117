import os

import torch

torch.set_num_threads(1)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest
from hypothesis import settings

# `make test` (and CI) draw the same examples every run, so a red run can be reproduced;
# `pytest --hypothesis-profile=explore` draws new ones.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def ray_session():
    """One embedded local Ray for every test that needs it (starting Ray takes seconds)."""
    import ray

    from evolve.ray_executor import init_ray

    here = os.path.dirname(os.path.abspath(__file__))
    # workers import test helpers (toy_fitness) by name; the project's packages are shipped as in
    # a real search; init_ray starts a Ray of its own even when another cluster runs on the machine
    init_ray(num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": here}})
    yield ray
    ray.shutdown()
