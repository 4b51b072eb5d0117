"""Run a search on a 3-node local Ray cluster and remove a worker node mid-search.

Prints the search stats as JSON on its last line. Used by tests/test_ray.py.
"""
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import ray
from ray.cluster_utils import Cluster

import toy_fitness
from evolve.config import SearchConfig
from evolve.ray_executor import RayExecutor
from evolve.search import Search



def slow_factory():
    def evaluate(jobs):
        time.sleep(0.3)
        return toy_fitness.toy_evaluate(jobs)
    return evaluate


def main(out: str) -> None:
    t0 = time.time()
    # fast failure detection, so a removed node is noticed in seconds
    system = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
              "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": system})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})
    cluster.wait_for_nodes()
    print(f"cluster up in {time.time() - t0:.1f}s", file=sys.stderr)
    cfg = SearchConfig(population=6, tournament=2, max_evals=40, batch_size=2, workers=3, out=out,
                       validate=False, test_top=0, progress=False, candidate_timeout=60)
    ex = RayExecutor(slow_factory, workers=3)
    search = Search.start(cfg, ex)

    def kill_later():
        while search.done < 8:
            time.sleep(0.1)
        print(f"removing a node at {time.time() - t0:.1f}s", file=sys.stderr)
        cluster.remove_node(nodes[0])
        print(f"removed at {time.time() - t0:.1f}s", file=sys.stderr)

    threading.Thread(target=kill_later, daemon=True).start()
    res = search.run()
    print(f"search done at {time.time() - t0:.1f}s", file=sys.stderr)
    stats = dict(res.stats, max_evals=cfg.max_evals)
    ray.shutdown()
    cluster.shutdown()
    print(json.dumps(stats))


if __name__ == "__main__":
    main(sys.argv[1])
