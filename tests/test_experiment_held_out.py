"""Two experiments sharing a run, each evaluating it on its own held-out pairs: each board and its claims read the
held-out evaluation of their own experiment, not a choice between the two."""

from evalharness.experiment import Runner, parse_experiment
from evalharness.store import Store

RUN = {"model": "tiny-llama", "max_steps": 1, "batch_size": 2, "max_length": 64, "max_prompt_length": 32,
       "data": {"name": "synthetic", "limit": 16, "eval_fraction": 0.25}}


def _exp(name: str, held_out: str) -> dict:
    return {"name": name, "defaults": RUN,
            "runs": [{"name": "sft", "loss": "sft"}, {"name": "dpo", "loss": "dpo", "init_from": "sft"}],
            "generate": {"prompts": "synthetic", "limit": 2, "n": 1, "max_new_tokens": 4, "base": False},
            "eval": {"data": {"name": held_out}, "bootstrap": 20},
            "judge": {"judges": ["oracle"], "baseline": "sft"},
            "claims": [{"quantity": "perplexity", "a": "dpo", "relation": "lower", "b": "sft"}]}


def test_a_shared_run_evaluated_on_two_held_out_sets_leaves_each_board_its_own(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    lines, held = {}, {}
    for name, held_out in (("near", "synthetic:near_duplicates=0.5"), ("plain", "synthetic")):
        runner = Runner(parse_experiment(_exp(name, held_out), f"{name}.toml"), store, progress=False,
                        echo=lambda *_: None)
        runner.run()
        lines[name] = "\n".join(runner.leaderboard())  # the second saw sft with metrics on both sets
        held[name] = getattr(runner, "held_out", None)
    assert "perplexity" in lines["plain"] and "dpo's perplexity is lower than sft's" in lines["plain"]
    assert held["near"].startswith("synthetic:near_duplicates=0.5@") and held["plain"].startswith("synthetic@")
