import pytest
import torch

from trainers.recipes import WeightedParams, build_stage, check_overrides, parse_stages
from trainers.spec import LossInputs, ParamError


def test_parse_stages_and_weights():
    assert parse_stages("sft->dpo") == [[(1.0, "sft")], [(1.0, "dpo")]]
    assert parse_stages("0.8*dpo + 1.0*sft") == [[(0.8, "dpo"), (1.0, "sft")]]
    assert parse_stages("exmate → 0.5*dpo+sft") == [[(1.0, "exmate")], [(0.5, "dpo"), (1.0, "sft")]]
    with pytest.raises(ParamError, match="can't read loss term"):
        parse_stages("dpo + *sft")
    with pytest.raises(ParamError, match="appears twice"):
        parse_stages("dpo + dpo")


def _pair_inputs():
    # lpπ(y+)=-4, lpπ(y-)=-6, lpref(y+)=-5, lpref(y-)=-5, T+=2, T-=3
    return LossInputs(
        policy_chosen_logps=torch.tensor([-4.0], requires_grad=True),
        policy_rejected_logps=torch.tensor([-6.0], requires_grad=True),
        chosen_lengths=torch.tensor([2.0]),
        rejected_lengths=torch.tensor([3.0]),
        reference_chosen_logps=torch.tensor([-5.0]),
        reference_rejected_logps=torch.tensor([-5.0]),
    )


def test_weighted_sum_is_the_weighted_sum_of_its_parts():
    spec, params = build_stage([(0.8, "dpo"), (1.0, "sft")], {"beta": "0.1"})
    assert isinstance(params, WeightedParams)
    assert spec.needs == frozenset({"reference"})
    out = spec.fn(_pair_inputs(), params)
    # h = (-4+5) - (-6+5) = 2; dpo = -log σ(0.2) = 0.5981389; sft = -(-4)/2 = 2.0
    # 0.8 * 0.5981389 + 1.0 * 2.0 = 2.4785111
    assert out.losses.item() == pytest.approx(2.4785111, abs=1e-6)
    assert out.metrics["dpo/loss"].item() == pytest.approx(0.5981389, abs=1e-6)


def test_prefixed_params_go_to_their_loss_and_typos_are_caught():
    spec, params = build_stage([(1.0, "dpo"), (1.0, "ipo")], {"dpo.beta": "0.5", "ipo.beta": "0.25"})
    assert params.parts[0].params.beta == 0.5 and params.parts[1].params.beta == 0.25
    with pytest.raises(ParamError, match="did you mean 'beta'"):
        check_overrides("dpo", {"betta": "0.1"})
    with pytest.raises(ParamError, match="no loss 'kto'"):
        check_overrides("sft->dpo", {"kto.beta": "0.1"})
    check_overrides("sft->dpo", {"dpo.beta": "0.1", "beta": "0.2"})


def test_single_loss_stage_is_the_plain_spec():
    spec, params = build_stage([(1.0, "dpo")], {"beta": 0.3})
    assert spec.name == "dpo" and params.beta == 0.3
