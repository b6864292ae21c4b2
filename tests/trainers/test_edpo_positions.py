"""ε-DPO's perturbed log-probs: the mixed logits are formed on response positions only, with the values of the
whole-tensor formula."""

import torch

from trainers.losses import edpo

B, L, V = 3, 7, 13
LENGTHS = [7, 2, 4]


def _inputs():
    g = torch.Generator().manual_seed(0)
    mask = torch.arange(L)[None, :] < torch.tensor(LENGTHS)[:, None]
    labels = torch.randint(0, V, (B, L), generator=g).masked_fill(~mask, -100)  # padded labels as HF writes them
    return torch.randn(B, L, V, generator=g), torch.randn(B, L, V, generator=g), labels, mask


def _whole(logits, labels, mask):
    """Σ_t log softmax(logits_t)[y_t] over every position, masked after the fact (the formula before)."""
    token = torch.log_softmax(logits, -1).gather(-1, torch.where(mask, labels, 0)[..., None]).squeeze(-1)
    return torch.where(mask, token, 0.0).sum(-1)


def test_perturbed_logps_equal_the_whole_tensor_formula():
    f_pi, f_ref, labels, mask = _inputs()
    eps = 0.3
    got = edpo.perturbed_logps(f_pi, f_ref, labels, mask, eps)
    want = (_whole((1 + eps) * f_pi - eps * f_ref, labels, mask), _whole(f_pi, labels, mask),
            _whole((1 - eps) * f_pi + eps * f_ref, labels, mask))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_the_mixed_logits_are_normalised_on_response_positions_only(monkeypatch):
    f_pi, f_ref, labels, mask = _inputs()
    shapes = []
    log_softmax = torch.log_softmax

    def recording(x, *args, **kwargs):
        shapes.append(tuple(x.shape))
        return log_softmax(x, *args, **kwargs)

    monkeypatch.setattr(torch, "log_softmax", recording)
    edpo.perturbed_logps(f_pi, f_ref, labels, mask, 0.1)
    # 7 + 2 + 4 = 13 response tokens of the 21 positions, for each of the three policies
    assert shapes == [(sum(LENGTHS), V)] * 3
