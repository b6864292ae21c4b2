"""On-policy pairs: sample a run, score every sample with a pointwise judge, and write the training file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from evalharness.config import ConfigError
from evalharness.experiment.schema import PairsSpec
from evalharness.store import Store


def build_pairs(spec: PairsSpec, store: Store, policy_run_id: str, path: Path, progress: bool,
                judge_spec: str | None = None) -> str:
    """Sample the policy, score every sample with the judge, and write the training file: ``kind = "pairs"`` keeps best
    vs worst per prompt (ties skipped), ``kind = "scored"`` keeps all n samples with their scores (prompts with fewer
    than n non-empty samples skipped, since K must be the same on every row).

    ``judge_spec`` is ``spec.judge`` with its ``@run`` references bound to checkpoint paths. Scores come from the
    store's scores cache where the judge has scored a text before, and go there otherwise. Written to ``path`` as jsonl
    that the ``jsonl`` ({prompt, chosen, rejected}) or ``scored-samples`` ({prompt, completions, rewards}) preset
    reads; the file name carries nothing run-specific, and re-building gives identical bytes. Returns the summary line.
    """
    from evalharness.generate import GenerateConfig, generate
    from evalharness.generation.base import Sampling
    from judges.base import build_judge, can_score

    judge = build_judge(judge_spec or spec.judge)
    if not can_score(judge):
        raise ConfigError(f"[[pairs]] {spec.name!r}: judge {spec.judge!r} does not score single responses")
    sampling = Sampling(spec.temperature, 1.0, spec.max_new_tokens, spec.seed)
    gen_cfg = GenerateConfig([policy_run_id], spec.prompts, spec.path, spec.limit, n=spec.n, sampling=sampling,
                             backend=spec.backend, max_prompt_length=spec.max_prompt_length, score_reference=False)
    generate(gen_cfg, store, progress=progress)
    with store.connect() as con:
        rows = con.execute(
            "SELECT g.prompt_id, g.generation_id, g.text, p.messages FROM generations g JOIN prompts p USING "
            "(prompt_id) WHERE g.checkpoint = (SELECT checkpoint_id FROM checkpoints WHERE run_id = ? AND is_final) "
            "AND p.prompt_set = ? AND g.sampling = ? AND g.sample_index < ? AND g.turn = 1 "
            "ORDER BY g.prompt_id, g.sample_index",
            [policy_run_id, spec.prompts, json.dumps(dataclasses.asdict(sampling)), spec.n]).fetchall()
    from evalharness.data.types import Message

    by_prompt: dict[str, list] = {}
    for pid, gid, text, msgs in rows:
        by_prompt.setdefault(pid, []).append((text, msgs, gid))
    need = spec.n if spec.kind == "scored" else 2
    kept: dict[str, list] = {}
    empty = 0
    for pid in sorted(by_prompt):
        samples = [s for s in by_prompt[pid] if s[0].strip()]  # an empty answer is no training example
        empty += len(by_prompt[pid]) - len(samples)
        if len(samples) >= need:
            kept[pid] = samples
    skipped = len(by_prompt) - len(kept)
    scores = _scores(judge, store, {pid: (tuple(Message(m["role"], m["content"]) for m in json.loads(s[0][1])), s)
                                    for pid, s in kept.items()})
    lines = []
    for pid, samples in kept.items():
        prompt = json.loads(samples[0][1])
        values = scores[pid]
        if spec.kind == "scored":
            lines.append(json.dumps({"prompt": prompt, "completions": [t for t, _, _ in samples],
                                     "rewards": [float(x) for x in values]}, sort_keys=True))
            continue
        best, worst = max(range(len(samples)), key=values.__getitem__), min(range(len(samples)), key=values.__getitem__)
        if values[best] == values[worst]:
            skipped += 1
            continue
        lines.append(json.dumps({"prompt": prompt, "chosen": samples[best][0], "rejected": samples[worst][0],
                                 "score_chosen": values[best], "score_rejected": values[worst]}, sort_keys=True))
    if not lines:
        why = (f"no prompt has {spec.n} non-empty samples" if spec.kind == "scored"
               else f"every prompt's samples scored the same under {spec.judge!r}")
        raise ConfigError(f"[[pairs]] {spec.name!r}: {why}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    if spec.kind == "scored":
        return (f"{len(lines)} prompts x {spec.n} scored samples from {len(by_prompt)} prompts "
                f"({skipped} skipped: fewer than {spec.n} non-empty; {empty} empty samples)")
    return (f"{len(lines)} pairs from {len(by_prompt)} prompts ({skipped} skipped: all samples tied or "
            f"fewer than two non-empty; {empty} empty samples)")


def _scores(judge, store: Store, prompts: dict[str, tuple]) -> dict[str, list[float]]:
    """Each prompt's samples scored by ``judge`` through the store's scores cache (``judging.pointwise_scores``, shared
    with judging and the eval's reward metrics): a text scored before is read, the rest scored in one call and stored."""
    from evalharness.judging import pointwise_scores
    from evalharness.store_rows import score_key

    keys = {pid: [score_key(judge, messages, text) for text, _, _ in samples]
            for pid, (messages, samples) in prompts.items()}
    items = {key: (messages, text, gid, pid) for pid, (messages, samples) in prompts.items()
             for key, (text, _, gid) in zip(keys[pid], samples)}
    known, _ = pointwise_scores(store, judge, items)
    return {pid: [known[k] for k in ks] for pid, ks in keys.items()}
