"""The oracle judge and density-ratio's oracle reward warn when the prompts are not the synthetic review task's."""

import json
import warnings

import pytest

from evalharness.data import synthetic
from evalharness.data.types import Message
from judges.base import Comparison
from judges.oracle import OracleJudge

TASK = (Message("user", "Write a short review of the zoo."),)
HH = (Message("user", "How do I get my dog to stop barking at night?"),)


def test_the_rule_is_the_prompt_form_and_counts_the_off_task_prompts():
    assert synthetic.off_task_warning([TASK, (Message("system", "Be brief."), *TASK)], "x") is None
    assert synthetic.off_task_warning([TASK, HH, HH], "x").startswith("x: 2 of 3 prompts are not the synthetic")
    # the answers' words play no part: a prompt of another task is off-task whatever the answer says
    assert synthetic.off_task_warning([({"role": "user", "content": "Summarise this."},)], "x") is not None


def test_the_oracle_warns_once_on_prompts_of_another_task():
    judge = OracleJudge()
    with pytest.warns(UserWarning, match="the oracle judge: 1 of 2 prompts are not the synthetic review task's"):
        judge.compare([Comparison(TASK, "great", "awful"), Comparison(HH, "lovely", "rude")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert judge.score([(HH, "great")]) == [1.0]  # warned already: said once per judge


def test_the_oracle_is_silent_on_its_own_task():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [v] = OracleJudge().compare([Comparison(TASK, "great", "awful")])
    assert v.winner == "first"


def test_density_ratio_warns_and_notes_prompts_of_another_task(tmp_path):
    from evalharness.diagnose import run
    from evalharness.diagnose.common import DiagnoseConfig
    from evalharness.store import Store

    data = tmp_path / "hh.jsonl"
    data.write_text(json.dumps({"prompt": HH[0].content}) + "\n")
    cfg = DiagnoseConfig(checkpoints=["tiny-llama"], data="jsonl", path=str(data), limit=1, out=str(tmp_path),
                         settings={"samples": "2", "max_new_tokens": "4"})
    with pytest.warns(UserWarning, match="density-ratio's oracle reward: 1 of 1 prompts are not the synthetic"):
        report = run("density-ratio", cfg, Store(str(tmp_path / "s.duckdb")))
    assert any("1 of 1 prompts are not the synthetic" in n for n in report.notes)
