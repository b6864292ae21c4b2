"""Packing the responses of a shared-prompt forward into few rows (``scoring.shared_prompt_logps``).

After the distinct prompts of a batch have gone through the model once, every response continues from its prompt's
key/value cache. Laid out one response per row, each row is padded to the longest response of the batch: on HH-RLHF
pairs at 256 tokens, 414 response tokens took 704 positions. Packed, the responses of several prompts share one row:
the row's keys are those prompts' cached keys followed by the row's own response tokens, and a block mask lets each
response token see its own prompt and the earlier tokens of its own response, nothing else. Every linear layer then
runs on (nearly) only real tokens; attention, a small part of a step, runs over the longer rows.

``plan`` chooses the layout with a cost model (linear-layer FLOPs per position plus attention FLOPs per query-key
pair) and returns ``None`` where one response per row is as cheap. ``Packing`` holds the index tensors that move the
cache, the position ids, the mask and the logits between the layouts. Values and gradients are those of the unpacked
forward to rounding: the mask admits exactly the keys causal attention admits there.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Packing:
    """One packed layout: B rows, each ``prompt_slots`` cached prompt keys then ``width`` response positions."""

    prompt_index: Tensor  # [B, Kp] long: index into the flattened prompt cache [U * Pmax] (pads point at 0)
    ids: Tensor  # [B, W] long: response tokens, pads = pad_id
    positions: Tensor  # [B, W] long: each token's position in its own prompt + response
    mask: Tensor  # [B, 1, W, Kp + W] bool: True where a query may attend to a key
    keep: Tensor  # [K] long: the response positions whose logits are needed (a token predicting the next)
    gather: Tensor  # [N, R - 1] long: into the [B * K] kept logits, the one predicting response token j + 1 of seq i


def _cost(rows: list[list[int]], resp_len: list[int], p_len: list[int], row_of: list[int], per_token: float,
          per_pair: float) -> float:
    """FLOPs (up to a shared factor) of a response forward over ``rows`` of sequence indices."""
    width = max(sum(resp_len[i] for i in r) for r in rows)
    slots = max(sum(p_len[u] for u in dict.fromkeys(row_of[i] for i in r)) for r in rows)
    return len(rows) * width * per_token + len(rows) * width * (slots + width) * per_pair


def _first_fit(groups: list[list[int]], sizes: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing of prompt groups (all responses of one prompt stay in one row) into rows of ``capacity``
    response tokens."""
    rows: list[list[int]] = []
    room: list[int] = []
    for g in sorted(range(len(groups)), key=lambda g: -sizes[g]):
        for r, left in enumerate(room):
            if sizes[g] <= left:
                rows[r].extend(groups[g])
                room[r] -= sizes[g]
                break
        else:
            rows.append(list(groups[g]))
            room.append(capacity - sizes[g])
    return rows


def plan(row_of: list[int], p_len: list[int], resp_len: list[int], per_token: float, per_pair: float,
         ) -> list[list[int]] | None:
    """Rows of sequence indices for the cheapest packed layout, or ``None`` where one response per row costs no
    more. ``row_of[i]``: sequence i's prompt; ``p_len[u]``: prompt u's length; ``resp_len[i]``: response length."""
    n = len(row_of)
    if n < 2 or min(resp_len) < 1:
        return None
    unpacked = n * max(resp_len) * per_token + n * max(resp_len) * (max(p_len) + max(resp_len)) * per_pair
    groups: dict[int, list[int]] = {}
    for i, u in enumerate(row_of):
        groups.setdefault(u, []).append(i)
    members = list(groups.values())
    sizes = [sum(resp_len[i] for i in g) for g in members]
    best, best_cost = None, unpacked
    capacity = max(sizes)
    while True:
        rows = _first_fit(members, sizes, capacity)
        cost = _cost(rows, resp_len, p_len, row_of, per_token, per_pair)
        if cost < best_cost:
            best, best_cost = rows, cost
        if len(rows) == 1:
            return best
        capacity *= 2


def layout(rows: list[list[int]], row_of: list[int], p_len: list[int], p_width: int, responses: list[tuple[int, ...]],
           pad_id: int, device) -> Packing:
    """The index tensors of ``rows`` (from ``plan``); ``p_width``: the padded width of the prompt batch."""
    n, b = len(row_of), len(rows)
    r_max = max(len(r) for r in responses)
    slots_of = []  # per row: its prompts in order, each with its first slot
    for r in rows:
        start, slots = 0, {}
        for u in dict.fromkeys(row_of[i] for i in r):
            slots[u] = start
            start += p_len[u]
        slots_of.append((slots, start))
    kp = max(total for _, total in slots_of)
    width = max(sum(len(responses[i]) for i in r) for r in rows)
    prompt_index = torch.zeros((b, kp), dtype=torch.long)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    positions = torch.zeros((b, width), dtype=torch.long)
    mask = torch.zeros((b, 1, width, kp + width), dtype=torch.bool)
    where = torch.zeros((n, r_max), dtype=torch.long)  # (row * width + column) of response token j of seq i
    needed = torch.zeros(width, dtype=torch.bool)  # columns whose token predicts the next: all but a response's last
    for row, (r, (slots, _)) in enumerate(zip(rows, slots_of)):
        for u, s in slots.items():
            prompt_index[row, s:s + p_len[u]] = u * p_width + torch.arange(p_len[u])
        col = 0
        for i in r:
            m, u = len(responses[i]), row_of[i]
            ids[row, col:col + m] = torch.tensor(responses[i], dtype=torch.long)
            positions[row, col:col + m] = p_len[u] + torch.arange(m)
            mask[row, 0, col:col + m, slots[u]:slots[u] + p_len[u]] = True  # its own prompt
            mask[row, 0, col:col + m, kp + col:kp + col + m] = torch.ones((m, m), dtype=torch.bool).tril()
            where[i, :m] = row * width + col + torch.arange(m)
            needed[col:col + m - 1] = True
            col += m
        for c in range(col, width):  # a pad query sees itself alone: finite, and read by nothing
            mask[row, 0, c, kp + c] = True
    keep = needed.nonzero().squeeze(-1)
    to_kept = torch.zeros(width, dtype=torch.long)
    to_kept[keep] = torch.arange(len(keep))
    # past a response's second-to-last token the index is any valid one: the response mask zeroes what it reads
    gather = ((where // width) * len(keep) + to_kept[where % width])[:, :r_max - 1]
    return Packing(*(t.to(device) for t in (prompt_index, ids, positions, mask, keep, gather)))


def pack_cache(cache, prompt_index: Tensor) -> None:
    """Replace each layer's [U, H, Pmax, D] prompt keys/values by the packed rows' [B, H, Kp, D] (graph kept)."""
    b, kp = prompt_index.shape
    flat = prompt_index.reshape(-1)
    for layer in cache.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name)
            u, h, p, d = t.shape
            moved = t.transpose(1, 2).reshape(u * p, h, d).index_select(0, flat)
            setattr(layer, name, moved.view(b, kp, h, d).transpose(1, 2))


_COSTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def costs(model) -> tuple[float, float]:
    """(FLOPs per position of the linear layers, FLOPs per query-key pair of attention) of one forward of ``model``."""
    key = model
    if key not in _COSTS:
        cfg = model.config
        per_token = 2.0 * sum(p.numel() for p in model.parameters() if p.dim() == 2)
        head_dim = getattr(cfg, "head_dim", None)
        hidden = cfg.num_attention_heads * head_dim if head_dim else getattr(cfg, "hidden_size", 1)
        per_pair = 4.0 * hidden * getattr(cfg, "num_hidden_layers", 1)
        _COSTS[key] = (per_token, per_pair)
    return _COSTS[key]
