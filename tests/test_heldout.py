"""Test rows: the winner (validation order) and the references, their own time budget, and a row
without a score never prints one."""
import io

import dsl
import seeds
from evolve.candidate import Candidate, Fitness, Individual
from evolve.config import SearchConfig
from evolve.executor import LocalExecutor
from evolve.heldout import row_text, score_test
from evolve.launch import report
from evolve.search import SearchResult


def test_rows_carry_their_own_timeout_and_a_timed_out_row_has_no_score():
    seen = []

    def evaluate(jobs):
        seen.extend(jobs)
        return [Fitness.failed("timeout", "ran past 300s") if "lion" in j.text.split("(")[0]
                else Fitness(0.25, (0.25,), {"quadratic": 0.5, "rosenbrock": -0.25, "mlp_digits": 0.5}) for j in jobs]

    ranked = [Individual(Candidate(7, seeds.load("signum")), Fitness(0.5, (0.5,), {"quadratic": 0.5})),
              Individual(Candidate(9, seeds.load("sgd")), Fitness(0.9, (0.9,), {"quadratic": 0.9}))]
    cfg = SearchConfig(test_top=1, test_timeout=300.0, test_repeats=2, candidate_timeout=5.0)
    tasks = ("quadratic", "rosenbrock", "mlp_digits")
    rows = score_test(LocalExecutor(evaluate), cfg, ranked, tasks, validations={7: {"score": 0.125}})
    assert [(r["name"], r["role"]) for r in rows] == [("#7", "winner"), ("adamw", "reference"),
                                                       ("lion", "reference")]
    assert all(j.timeout == 300.0 and j.repeats == 2 and j.stages == (tasks,) for j in seen)
    assert rows[0]["validation"] == 0.125 and (rows[0]["won"], rows[0]["lost"]) == (2, 1)
    assert rows[0]["mean"] == 0.25
    lion = rows[-1]
    assert lion["score"] is None and lion["mean"] is None and lion["status"] == "timeout"
    assert row_text(lion).split()[:4] == ["lion", "no", "score:", "timeout"]
    assert "-10" not in row_text(lion)
    assert row_text(rows[0]).split()[:5] == ["#7", "+0.2500", "(2", "won", "1"]
    assert "median +0.2500" in row_text(rows[0], "median")
    # test_top=2: the next program in the given (validation) order, whatever its search score
    two = score_test(LocalExecutor(evaluate), cfg.replace(test_top=2), ranked, tasks)
    assert [(r["name"], r["role"]) for r in two][:2] == [("#7", "winner"), ("#9", "runner-up")]
    assert score_test(LocalExecutor(evaluate), cfg.replace(test_top=0), ranked, tasks) == []


def test_report_prints_the_simplified_program_beside_the_raw_one():
    raw = dsl.parse("def r(w, g, lr, m=0.0, *, beta2=0.99):\n"
                    "    m = interp(g, m, 0.9)\n"
                    "    return lr * sign(m) * (beta2 >= beta2)\n")
    ind = Individual(Candidate(3, raw), Fitness(0.1, (0.1,), {"quadratic": 0.1}))
    stats = {"evaluations": 1, "trained": 1, "elapsed": 1.0, "evals_per_second": 1.0, "workers_lost": 0,
             "cache": {"hit_rate": 0.0, "structural_hits": 0, "functional_hits": 0, "inflight_hits": 0}}
    buf = io.StringIO()
    report(SearchResult("/tmp/x", [ind], stats,
                        [{"name": "lion", "score": None, "status": "timeout", "reason": "ran past 300s",
                          "task_scores": {}}]), buf)
    text = buf.getvalue()
    assert "(beta2 >= beta2)" in text                       # as mutation left it
    simplified = text.split("simplified")[1]
    assert ">=" not in simplified and "sign(" in simplified   # and simplified
    assert "no score: timeout (ran past 300s)" in text
