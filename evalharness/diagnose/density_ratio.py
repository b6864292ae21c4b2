"""EXO's density-ratio view (seed 004 §4.1, Fig. 3 and Fig. 9).

Per prompt x, M completions y_1..y_M are sampled from the reference (temperature 1, so they are draws from π_ref
itself) and sorted by log π_ref(y|x). Over these points seed 004 compares the self-normalised density ratios

    policy    ρ_θ(y_i) = M π_θ(y_i|x)/π_ref(y_i|x) / Σ_j π_θ(y_j|x)/π_ref(y_j|x)
    optimal   ρ*(y_i)  = M exp(r(x, y_i)/β) / Σ_j exp(r(x, y_j)/β)          (π*_β ∝ π_ref exp(r/β))

plotted against log π_ref(y_i|x): a mode-seeking policy (EXO) follows ρ* where π_ref is high, a mean-seeking one (DPO)
spreads mass into the tail. The reward is the synthetic task's rule-based gold reward, the one reward that needs no
model. The paper smooths with a kernel density estimate; the figure here draws every sample and a Gaussian-kernel
(Nadaraya-Watson) smoothing of ρ against log π_ref with Scott's bandwidth. Both log-probs are scored by the same
full forward (``sequence_logps``), so a policy equal to its reference has ρ_θ = 1 exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections import defaultdict
from dataclasses import dataclass

from evalharness.config import ConfigError
from evalharness.diagnose import common
from evalharness.diagnose.common import Row, Unit
from evalharness.diagnose.runner import Job, Plan, execute
from trainers.spec import check

KIND = "density-ratio"
DEFAULT_LIMIT = 4  # prompts; seed 004 draws one prompt per panel (Fig. 3) and ten in Fig. 9
REWARDS = ("oracle",)


@dataclass(frozen=True)
class DensitySettings:
    samples: int = 64  # M per prompt; seed 004 uses 256 on a GPU, 64 keeps a CPU run within a minute on tiny models
    max_new_tokens: int = 48  # the synthetic reviews end within ~40 tokens of SmolLM2's tokenizer
    beta: float = 0.1  # the β of π*_β; 0.1 is seed 004's β on its sentiment task (LOSSES: exo β_π there)
    seed: int = 0  # base seed; sample i of a prompt uses a seed derived from (seed, prompt, i), as `generate` does
    reward: str = "oracle"  # the synthetic task's gold reward (evalharness.data.synthetic.oracle_reward)
    max_prompt_length: int = 128
    prompt_style: str = "auto"

    def __post_init__(self):
        check(self.samples >= 2, f"samples must be >= 2 (a ratio needs a normaliser), got {self.samples}")
        check(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        check(self.beta > 0, f"beta must be > 0, got {self.beta}")
        check(self.reward in REWARDS, f"reward must be one of {', '.join(REWARDS)}, got {self.reward!r}")
        check(self.prompt_style in ("auto", "chat", "plain"), f"unknown prompt_style {self.prompt_style!r}")


@dataclass
class PromptSamples:
    prompt_id: str
    prompt_ids: tuple[int, ...]
    token_ids: list[tuple[int, ...]]  # M sampled completions (the stop token included)
    texts: list[str]
    sampled_logps: list[float]  # log π_ref(y|x) as the sampler saw it (incremental decode): a cross-check


def log_ratios(values, scale: float = 1.0) -> list[float]:
    """log of M·exp(v_i·scale)/Σ_j exp(v_j·scale), computed in float64 with log-sum-exp.

    >>> [round(math.exp(v), 6) for v in log_ratios([0.0, 0.0, 0.0, 0.0])]
    [1.0, 1.0, 1.0, 1.0]
    """
    import torch

    v = torch.tensor(values, dtype=torch.float64) * scale
    return (math.log(len(values)) + v - torch.logsumexp(v, 0)).tolist()


def draw(reference_path: str, prompts, settings: DensitySettings, batch_size: int) -> list[PromptSamples]:
    """M samples per prompt from the reference at temperature 1, each with its own seed (``generate``'s rule)."""
    from evalharness.generate import request_seed
    from evalharness.generation.base import Request, Sampling
    from evalharness.generation.hf import HFGenerator
    from evalharness.scoring import Encoder

    # Wide decode batches: a sample depends on its own seed only, so the width changes speed, not the draws.
    gen = HFGenerator(reference_path, batch_size=64)
    try:
        enc = Encoder(gen.tokenizer, settings.prompt_style, settings.max_prompt_length + settings.max_new_tokens,
                      settings.max_prompt_length)
        encoded = [(p.id, tuple(enc.prompt_ids(p.messages)[-settings.max_prompt_length:])) for p in prompts]
        requests = [Request(ids, request_seed(settings.seed, pid, 1, i))
                    for pid, ids in encoded for i in range(settings.samples)]
        sampling = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=settings.max_new_tokens, seed=settings.seed)
        samples = gen.generate(requests, sampling)
    finally:
        gen.close()
    m = settings.samples
    out = []
    for k, (pid, ids) in enumerate(encoded):
        mine = samples[k * m : (k + 1) * m]
        out.append(PromptSamples(pid, ids, [tuple(s.token_ids) for s in mine], [s.text for s in mine],
                                 [s.logp for s in mine]))
    return out


def score(model, ps: PromptSamples, pad: int, batch_size: int) -> list[float]:
    """Summed log-probs [M] of the sampled completions under ``model`` (temperature 1)."""
    import torch

    from evalharness.scoring import Seq, sequence_logps

    seqs = [Seq(ps.prompt_ids, ids) for ids in ps.token_ids]
    out = []
    with torch.no_grad():
        for batch in common.chunks(seqs, batch_size):
            out += sequence_logps(model, list(batch), pad).summed.double().tolist()
    return out


def prompt_rows(index: int, ps: PromptSamples, logp_ref: list[float], logp_pol: list[float], rewards: list[float],
                beta: float) -> Row:
    w = [a - b for a, b in zip(logp_pol, logp_ref)]
    return Row(f"prompt/{ps.prompt_id}", len(w), {
        "index": index, "prompt_id": ps.prompt_id, "logp_ref": logp_ref, "logp_policy": logp_pol, "reward": rewards,
        "logp_ref_sampled": ps.sampled_logps,
        "n_tokens": [len(t) for t in ps.token_ids], "log_ratio_policy": log_ratios(w),
        "log_ratio_optimal": log_ratios(rewards, 1.0 / beta),
    })


def summary_rows(prompt_rows_: list[Row]) -> list[Row]:
    import numpy as np

    kl, corr = [], []
    for r in prompt_rows_:
        ref, pol = np.asarray(r.data["logp_ref"]), np.asarray(r.data["logp_policy"])
        kl.append(float(np.mean(ref - pol)))  # Monte-Carlo KL(π_ref || π_θ) on the reference's own samples
        a, b = np.asarray(r.data["log_ratio_policy"]), np.asarray(r.data["log_ratio_optimal"])
        corr.append(float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else math.nan)
    return [common.ci_row("forward_kl", kl), common.ci_row("log_ratio_corr", corr)]


def run(cfg: common.DiagnoseConfig, store) -> common.Report:
    from evalharness.data.prompts import PromptSetSpec, load_prompts
    from evalharness.data.synthetic import off_task_warning

    settings = common.bind_settings(DensitySettings, cfg.settings, "density-ratio")
    try:
        spec = PromptSetSpec(name=cfg.data, path=cfg.path, limit=cfg.limit or DEFAULT_LIMIT)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    prompts = list(load_prompts(spec).prompts)
    if not prompts:
        raise ConfigError(f"prompt set {cfg.data!r} gave no prompts")
    dataset = common.dataset_key(cfg.data, [p.id for p in prompts])
    off_task = off_task_warning([p.messages for p in prompts], "density-ratio's oracle reward")
    if off_task:  # one stderr line: a Python warning would show the user this module's source line
        print(f"warning: {off_task}", file=sys.stderr)
    targets = common.resolve_targets(cfg.checkpoints, store, cfg.reference)
    by_reference = defaultdict(list)
    for t in targets:
        by_reference[t.reference].append(t)

    def jobs():
        for reference, group in by_reference.items():
            # Drawn once per reference, and only when some checkpoint of the group is not in the store yet.
            samples = functools.cache(lambda reference=reference: draw(reference, prompts, settings, cfg.batch_size))
            for target in group:
                models = common.TargetModels(target)
                unit = Unit(KIND, target.key, dataset, {**dataclasses.asdict(settings),
                                                        "reference": models.reference_key})
                yield Job(unit, functools.partial(_compute, models, samples, settings, cfg.batch_size), (target.label,))

    note = (f"{settings.samples} samples per prompt from the reference at temperature 1; "
            f"optimal π* ∝ π_ref·exp(r/β), β={settings.beta:g}, r = {settings.reward}")
    figure = functools.partial(render_figure, beta=settings.beta)
    notes = [note] + ([off_task] if off_task else [])
    return execute(Plan("density-ratio", jobs(), render_table, figure, lambda _: notes), store, cfg.out)


def _compute(models: common.TargetModels, samples, settings: DensitySettings, batch_size: int) -> list[Row]:
    from evalharness.data.synthetic import oracle_reward  # settings.reward == "oracle", the one choice

    rows = []
    for index, ps in enumerate(samples()):
        logp_ref = score(models.reference, ps, models.pad, batch_size * 4)
        same = models.reference is models.policy  # same weights: the ratio is 1 by construction, not by rounding
        logp_pol = logp_ref if same else score(models.policy, ps, models.pad, batch_size * 4)
        rows.append(prompt_rows(index, ps, logp_ref, logp_pol, [oracle_reward(t) for t in ps.texts], settings.beta))
    return rows + summary_rows(rows)


def prompt_rows_of(rows: dict[str, Row]) -> list[Row]:
    """The per-prompt rows of a unit in prompt-set order."""
    return sorted((r for n, r in rows.items() if n.startswith("prompt/")), key=lambda r: r.data["index"])


def render_table(results) -> str:
    headers = ["checkpoint", "prompt", "M", "mean log π_ref", "KL(ref||π)", "corr(log ρ_θ, log ρ*)", "max ρ_θ",
               "max ρ*"]
    body = []
    for label, rows in results:
        for r in prompt_rows_of(rows):
            d = r.data
            ref, pol = d["logp_ref"], d["logp_policy"]
            a, b = d["log_ratio_policy"], d["log_ratio_optimal"]
            corr = _corr(a, b)
            body.append([label, d["prompt_id"][:10], r.value, sum(ref) / len(ref),
                         sum(x - y for x, y in zip(ref, pol)) / len(ref), corr,
                         math.exp(max(a)), math.exp(max(b))])
    return common.format_table(headers, body)


def _corr(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else math.nan


def smooth(x, y, points):
    """Gaussian-kernel (Nadaraya-Watson) regression of y on x at ``points``; Scott's bandwidth. None if x is constant."""
    import numpy as np

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.std() == 0:
        return None
    h = 1.06 * x.std() * len(x) ** (-1 / 5)
    w = np.exp(-0.5 * ((np.asarray(points)[:, None] - x[None, :]) / h) ** 2)
    return (w * y[None, :]).sum(1) / w.sum(1)


def render_figure(results, out: str, parts, beta: float) -> str:
    """One panel per prompt (at most 6): ρ_θ of each checkpoint and ρ* against log π_ref, points and smoothed lines."""
    import numpy as np

    prompt_ids = [r.name for r in prompt_rows_of(results[0][1])][:6] if results else []
    ncols = max(1, min(3, len(prompt_ids)))
    nrows = max(1, math.ceil(len(prompt_ids) / ncols))
    fig, axes = common.new_figure(ncols, nrows)
    for k, name in enumerate(prompt_ids):
        ax = axes[k // ncols][k % ncols]
        first = results[0][1][name].data
        x = np.asarray(first["logp_ref"])
        grid = np.linspace(x.min(), x.max(), 100)
        series = [(f"optimal π* (β={beta:g})", np.exp(first["log_ratio_optimal"]), "black")]
        series += [(label, np.exp(rows[name].data["log_ratio_policy"]), None) for label, rows in results]
        for label, rho, color in series:
            dots = ax.scatter(x, rho, s=6, alpha=0.4, color=color)
            line = smooth(x, rho, grid)
            if line is not None:
                ax.plot(grid, line, color=tuple(dots.get_facecolor()[0][:3]), label=label)
        ax.set_yscale("log")
        ax.set_xlabel("log π_ref(y|x)")
        ax.set_ylabel("density ratio to π_ref")
        ax.set_title(f"prompt {first['prompt_id'][:10]}", fontsize=9)
        ax.legend(fontsize=7)
    return common.save_figure(fig, out, "density-ratio", parts, results[0][0] if results else "")
