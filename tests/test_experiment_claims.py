"""[[claims]] in an experiment: checked at --dry-run, evaluated by `run` after its board, stored, and carried by
`leaderboard --format json` (the stored verdicts, or those of `--claims FILE`)."""

import json

import pytest
from typer.testing import CliRunner

from evalharness.cli import app
from evalharness.experiment import Runner, load_experiment
from evalharness.store import Store
from leaderboards.claims import VERDICTS

EXP = """
name = "claims"
[defaults]
model = "tiny-llama"
max_steps = 2
batch_size = 2
max_length = 48
max_prompt_length = 24
lr = 1e-3
[defaults.data]
name = "synthetic"
limit = 8
eval_fraction = 0.5

[[runs]]
name = "sft"
loss = "sft"

[[runs]]
name = "dpo"
loss = "dpo"
init_from = "sft"
grid = { beta = [0.1, 0.5] }

[generate]
limit = 4
n = 2
max_new_tokens = 6
backend = "hf"

[eval]
bootstrap = 50

[judge]
judges = ["oracle"]
baseline = "base"

[[claims]]
text = "dpo at beta 0.1 wins more often than sft"
quantity = "win_rate"
a = "dpo-beta0.1"
relation = "higher"
b = "sft"

[[claims]]
quantity = "win_rate"
a = "dpo"
relation = "higher"
b = "sft"
matched = "kl"

[[claims]]
quantity = "train:loss"
a = "dpo-beta0.1"
relation = "below_fraction"
b = "sft"
fraction = 0.5

[[claims]]
quantity = "kl"
a = "dpo-beta0.5"
relation = "lower"
b = "sft"
given = "perplexity"
within = 1000.0
"""


def _write(tmp_path, text=EXP, name="exp.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('b = "sft"\nmatched', 'b = "ipo"\nmatched'),
     r"claims\[1\] \(\"dpo's win_rate is higher than ipo's\"\): 'ipo' is not a policy run of this experiment"),
    (lambda t: t.replace('a = "dpo-beta0.1"\nrelation = "higher"', 'a = "dpo"\nrelation = "higher"'),
     r"'dpo' names a grid \(dpo-beta0.1, dpo-beta0.5\); a plain claim compares one configuration"),
    (lambda t: t.replace('quantity = "win_rate"', 'quantity = "win-rate"'),
     "quantity 'win-rate' is not a measured quantity; did you mean 'win_rate'"),
    (lambda t: t.replace("within = 1000.0", "within = -1"), "within must be a number > 0"),
])
def test_a_bad_claim_fails_the_dry_run_in_one_line(tmp_path, edit, message):
    path = _write(tmp_path, edit(EXP))
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--store", str(tmp_path / "s.duckdb")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
    import re

    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "s.duckdb").exists()


def test_run_prints_stores_and_the_board_json_carries_the_verdicts(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    exp = load_experiment(_write(tmp_path))
    assert [c.form for c in exp.claims] == ["plain", "matched", "ratio", "conditional"]
    runner = Runner(exp, store, progress=False, echo=lambda line: None)
    runner.run()
    lines = runner.leaderboard()
    start = lines.index(next(line for line in lines if line.startswith("claims (")))
    printed = lines[start + 1:start + 5]
    assert [line.split()[0] for line in printed if line.split()[0] in VERDICTS] == [line.split()[0] for line in printed]
    assert "dpo at beta 0.1 wins more often than sft" in printed[0] and "effect " in printed[0]
    # the matched claim: sft is one point, so its KL must fall inside dpo's range; either way the reason is said
    assert "kl matched over" in printed[1] or "no overlap in kl" in printed[1]
    stored = store.get_claims([exp.experiment_id])
    assert [r.position for r in stored] == [0, 1, 2, 3] and stored[0].text == exp.claims[0].text
    assert {r.verdict for r in stored} <= set(VERDICTS) and json.loads(stored[2].claim)["fraction"] == 0.5

    cli = CliRunner()
    out = cli.invoke(app, ["leaderboard", "--format", "json", "--store", store.path])
    assert out.exit_code == 0, out.output
    board = json.loads(out.stdout)
    assert [c["text"] for c in board["claims"]] == [c.text for c in exp.claims]
    assert board["claims"][0]["experiment"] == "claims" and board["claims"][0]["verdict"] == stored[0].verdict
    assert board["claims"][0]["difference"] == pytest.approx(stored[0].effect)

    # --claims FILE: evaluated on the board there and then, nothing stored
    other = _write(tmp_path, '[[claims]]\nquantity = "gold_reward"\na = "sft"\nrelation = "lower"\nb = "dpo-beta0.5"\n',
                   "more.toml")
    out = cli.invoke(app, ["leaderboard", "--format", "json", "--claims", str(other), "--store", store.path])
    assert out.exit_code == 0, out.output
    (only,) = json.loads(out.stdout)["claims"]
    assert only["a"] == "sft" and only["verdict"] in VERDICTS and only["form"] == "plain"
    assert len(store.get_claims([exp.experiment_id])) == 4
    out = cli.invoke(app, ["leaderboard", "--claims", str(tmp_path / "none.toml"), "--store", store.path])
    assert out.exit_code == 2 and "none.toml: no such file" in out.stderr
