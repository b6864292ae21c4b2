"""The oracle judge and density-ratio's oracle reward warn when the prompts are not the synthetic review task's."""

import json
import warnings

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


def test_the_oracle_warns_once_on_prompts_of_another_task(capsys):
    judge = OracleJudge()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a UserWarning would show the user a source line: one stderr line instead
        judge.compare([Comparison(TASK, "great", "awful"), Comparison(HH, "lovely", "rude")])
        assert judge.score([(HH, "great")]) == [1.0]  # warned already: said once per judge
    err = capsys.readouterr().err
    assert err.startswith("warning: the oracle judge: 1 of 2 prompts are not the synthetic review task's")
    assert err.count("\n") == 1


def test_judge_cli_states_the_oracle_off_task_warning_in_one_line(tmp_path):
    from tests.leaderboards.lbstore import make_store
    from tests.reliability.helpers import invoke

    make_store(tmp_path / "s.duckdb", [("p1", "m1", "base")])  # its prompt reads "question p1", not the task's; both orders counted
    result = invoke(["judge", "--judge", "oracle", "--models", "m1", "--baseline", "base", "--prompts", "set",
                     "--no-progress", "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == ["warning: the oracle judge: 2 of 2 prompts are not the synthetic review "
                                          "task's ('Write a short review of …'); its gold reward is lexicon "
                                          "sentiment, which says nothing about answers to other prompts"]


def test_the_oracle_is_silent_on_its_own_task():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [v] = OracleJudge().compare([Comparison(TASK, "great", "awful")])
    assert v.winner == "first"


def test_density_ratio_warns_and_notes_prompts_of_another_task(tmp_path, capsys):
    from evalharness.diagnose import run
    from evalharness.diagnose.common import DiagnoseConfig
    from evalharness.store import Store

    data = tmp_path / "hh.jsonl"
    data.write_text(json.dumps({"prompt": HH[0].content}) + "\n")
    cfg = DiagnoseConfig(checkpoints=["tiny-llama"], data="jsonl", path=str(data), limit=1, out=str(tmp_path),
                         settings={"samples": "2", "max_new_tokens": "4"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one stderr line, not a Python warning with this module's source line
        report = run("density-ratio", cfg, Store(str(tmp_path / "s.duckdb")))
    err = [line for line in capsys.readouterr().err.splitlines() if "prompts are not the synthetic" in line]
    assert len(err) == 1 and err[0].startswith("warning: density-ratio's oracle reward: 1 of 1 prompts")
    assert any("1 of 1 prompts are not the synthetic" in n for n in report.notes)
