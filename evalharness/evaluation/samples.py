"""KL to the reference from stored samples: nothing is re-generated.

``kl`` / ``kl_per_token`` (seed 004): the policy's own samples y_i ~ π carry ``policy_logp`` and ``reference_logp``,
both summed at the sampling temperature, so per prompt KL ≈ (1/M) Σ_i [lpπ(y_i) - lpref(y_i)]. Samples whose
reference log-prob is still NULL are scored now with the checkpoint's reference (``evalharness.generate.
score_reference``, exactly what ``generate`` does after sampling) or, with ``score_missing=False``, left out and
counted.

``forward_kl`` (seed 003): KL(ref || π) needs samples of the reference itself. When the reference model's own
generations exist for the same prompts, sampling parameters and backend, their tokens are scored by the policy at the
sampling temperature and KL ≈ (1/M) Σ_i [lpref(y_i) - lpπ(y_i)], lpref being the reference sampler's own log-prob.

The unit is a (prompt, turn): the bootstrap resamples units, and each (prompt set, sampling, backend, reference) group
of samples gives its own rows, tagged with its temperature.
"""

from __future__ import annotations

import json
from pathlib import Path

from evalharness.evaluation.common import CheckpointReport, EvalConfig, LazyModel, Planned, reference_key, write_rows
from evalharness.generate import Target
from evalharness.hashing import content_hash
from evalharness.store import Store

_COLUMNS = ("generation_id", "prompt_id", "turn", "sampling", "temperature", "backend", "reference", "policy_logp",
            "reference_logp", "n_tokens", "prompt_set")


def sample_metrics(cfg: EvalConfig, store: Store, target: Target, wanted: list[str], policy: LazyModel,
                   report: CheckpointReport, progress: bool) -> None:
    if not Path(store.path).exists():
        return
    _fill_reference_logps(cfg, store, target, report, progress)
    rows = read_samples(store, target.key, cfg.prompts)
    if not rows:
        for m in ("kl", "kl_per_token", "forward_kl"):
            if m in wanted:
                report.skipped[m] = f"no generations of this checkpoint{_in_set(cfg.prompts)} in the store"
        return
    unscored = [r for r in rows if r["reference_logp"] is None]
    if unscored:
        report.notes.append(f"{len(unscored)} samples without a reference log-prob left out of KL")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["reference_logp"] is not None:
            groups.setdefault((r["prompt_set"], r["sampling"], r["backend"], r["reference"]), []).append(r)
    own_ref = None
    for (prompt_set, sampling, backend, ref), group in sorted(groups.items(), key=lambda kv: str(kv[0])):
        base = {"sampling": json.loads(sampling), "temperature": group[0]["temperature"], "backend": backend,
                "reference": ref, "bootstrap": cfg.bootstrap, "seed": cfg.seed}
        if base["sampling"].get("top_p", 1.0) < 1.0:
            report.notes.append(f"{prompt_set} T={base['temperature']:g}: samples were drawn with top_p < 1; the "
                                "log-probs are of the untruncated distribution at that temperature")
        if not isinstance(base["sampling"].get("temperature", 1.0), (int, float)) or not base["sampling"]["temperature"]:
            report.notes.append(f"{prompt_set} at temperature {base['sampling']['temperature']}: greedy samples (some "
                                "or all) are not draws from the policy, so KL over them is not a Monte-Carlo estimate; "
                                "their log-probs are at temperature 1")
        dataset = f"{prompt_set}@{content_hash(['samples', sorted(r['generation_id'] for r in group)], 8)}"
        _kl_rows(cfg, store, target, wanted, group, dataset, base, report)
        if "forward_kl" in wanted:
            if own_ref is None:
                own_ref = reference_key(target.reference)
            ref_keys = _checkpoint_keys(store, ref, target.reference if ref == own_ref else None)
            _forward_rows(cfg, store, target, group, prompt_set, sampling, backend, ref_keys, base, policy, report,
                          progress)


def _in_set(prompts: str | None) -> str:
    return f" on prompt set {prompts!r}" if prompts else ""


def _fill_reference_logps(cfg: EvalConfig, store: Store, target: Target, report: CheckpointReport,
                          progress: bool) -> None:
    with store.connect() as con:
        (missing,) = con.execute("SELECT count(*) FROM generations WHERE checkpoint = ? AND reference_logp IS NULL "
                                 "AND n_tokens > 0", [target.key]).fetchone()
    if not missing or not cfg.score_missing:
        return
    from evalharness.generate import GenerateConfig, score_reference

    done = score_reference(store, target, GenerateConfig(checkpoints=[target.key], batch_size=cfg.batch_size),
                           progress)
    report.notes.append(f"{done} samples had no reference log-prob: scored now with {target.reference}")


def read_samples(store: Store, checkpoint: str, prompt_set: str | None = None) -> list[dict]:
    """A checkpoint's generations with their prompt set ('?' when the prompt is not in the prompts table)."""
    sql = (f"SELECT {', '.join('g.' + c for c in _COLUMNS[:-1])}, coalesce(p.prompt_set, '?') "
           "FROM generations g LEFT JOIN prompts p ON g.prompt_id = p.prompt_id WHERE g.checkpoint = ?")
    args: list = [checkpoint]
    if prompt_set:
        sql += " AND p.prompt_set = ?"
        args.append(prompt_set)
    with store.connect() as con:
        rows = con.execute(sql + " ORDER BY g.generation_id", args).fetchall()
    return [dict(zip(_COLUMNS, r)) for r in rows]


def _kl_rows(cfg, store, target, wanted, group, dataset, base, report) -> None:
    from evalharness import metrics as M

    settings = {m: dict(base) for m in ("kl", "kl_per_token") if m in wanted}
    if not settings:
        return
    plan = Planned(store, target, dataset, settings)
    if plan.missing:
        units = [(r["prompt_id"], r["turn"]) for r in group]
        est = M.kl_metrics(units, [r["policy_logp"] for r in group], [r["reference_logp"] for r in group],
                           [r["n_tokens"] for r in group], cfg.bootstrap, cfg.seed)
        for name, e in est.items():
            plan.add(name, e)
        write_rows(store, plan.new, {"samples": len(group)})
    report.rows += plan.rows()
    report.skipped.update(plan.undefined)


def _checkpoint_keys(store: Store, ref: str, ref_path: str | None) -> list[str]:
    """Every key the reference's own generations may be stored under: ``model:<fp>``, or a run checkpoint's id."""
    keys = [ref]
    if ref_path:
        from evalharness.models import resolve_model

        try:
            path = str(Path(resolve_model(ref_path)).resolve())
        except Exception:  # a reference that no longer resolves has no checkpoint rows either
            return keys
        with store.connect() as con:
            for cid, p in con.execute("SELECT checkpoint_id, path FROM checkpoints").fetchall():
                if p and Path(p).resolve() == Path(path):
                    keys.append(cid)
    return keys


def _forward_rows(cfg, store, target, group, prompt_set, sampling, backend, ref_keys, base, policy, report,
                  progress) -> None:
    from evalharness import metrics as M
    from evalharness.evaluation.pairs import score_seqs
    from evalharness.scoring import Seq

    if target.key in ref_keys:
        report.skipped.setdefault("forward_kl", "the model is its own reference (give --reference)")
        return
    prompts = sorted({r["prompt_id"] for r in group})
    with store.connect() as con:
        ref_rows = con.execute(
            "SELECT generation_id, prompt_id, turn, prompt_ids, token_ids, policy_logp, temperature FROM generations "
            "JOIN (SELECT unnest(?) AS c) ON checkpoint = c JOIN (SELECT unnest(?) AS q) ON prompt_id = q "
            "WHERE sampling = ? AND backend = ? ORDER BY generation_id",
            [ref_keys, prompts, sampling, backend]).fetchall()
    tag = f"{prompt_set} T={base['temperature']:g}"
    if not ref_rows:
        report.skipped.setdefault("forward_kl", f"no samples of the reference with the same prompts and sampling "
                                                f"({tag}); generate them with -c {target.reference}")
        return
    dataset = f"{prompt_set}@{content_hash(['samples', [r[0] for r in ref_rows]], 8)}"
    plan = Planned(store, target, dataset, {"forward_kl": {**base, "samples_of": "reference"}})
    if plan.missing:
        model, _, pad = policy.get()
        seqs = [Seq(tuple(r[3]), tuple(r[4])) for r in ref_rows]
        lp_policy = [0.0] * len(ref_rows)
        for temp in sorted({r[6] for r in ref_rows}):  # each at its own: a temperature rule mixes them in one group
            idx = [i for i, r in enumerate(ref_rows) if r[6] == temp]
            lps, _ = score_seqs(model, [seqs[i] for i in idx], pad, cfg.batch_size,
                                f"policy on reference samples ({tag})", progress, temperature=temp)
            for i, lp in zip(idx, lps):
                lp_policy[i] = float(lp)
        units = [(r[1], r[2]) for r in ref_rows]
        plan.add("forward_kl", M.forward_kl(units, [r[5] for r in ref_rows], lp_policy, cfg.bootstrap, cfg.seed))
        write_rows(store, plan.new, {"samples": len(ref_rows), "batch_size": cfg.batch_size})
    report.rows += plan.rows()
    report.skipped.update(plan.undefined)
