"""The `evalharness` command line: thin commands over library calls.

Imports of torch and friends happen inside commands, so `evalharness --help` stays fast.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Train, sample, judge and rank the losses that reward good examples and penalise bad ones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

STORE = typer.Option("evalharness.duckdb", "--store", envvar="EVALHARNESS_STORE", help="The DuckDB store file.")


@contextlib.contextmanager
def user_errors():
    """Known bad input becomes one line on stderr and exit code 2; work that passed its checks and then failed (a
    diverged run) one line and exit code 1; anything else is a bug and keeps its traceback."""
    from evalharness.errors import failure_types, user_error_types

    _quiet_libraries()
    try:
        yield
    except Exception as e:
        failed = isinstance(e, failure_types())
        if not failed and not isinstance(e, user_error_types()):
            raise
        from evalharness.textsafe import escape_controls

        typer.echo(f"error: {escape_controls(e)}", err=True)  # messages quote names and file rows as given
        raise typer.Exit(1 if failed else 2) from None


def _quiet_libraries() -> None:
    """Our progress bars say what is happening; transformers' per-file loading bars only add noise, and its load
    reports (e.g. a new reward head) are said once, by evalharness. Through the environment, which transformers
    reads when it is imported: importing it here would cost every command (a leaderboard, say) its 0.6 s."""
    import os
    import sys

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # already loaded (by a plugin, or the API in one process): tell it directly
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


@app.command()
def train(
    config: Optional[Path] = typer.Argument(None, help="A TOML file; flags given here override it."),
    loss: Optional[str] = typer.Option(None, help="Loss name, 'sft->dpo' stages, or '0.8*dpo + 1.0*sft'."),
    model: Optional[str] = typer.Option(None, help="Model name or path: smollm2-135m, tiny-llama, a local dir."),
    data: Optional[str] = typer.Option(None, help="Dataset preset: hh-rlhf, jsonl, parquet, scored-samples, …"),
    path: Optional[str] = typer.Option(None, help="Local data file for the preset."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="KEY=VALUE, VALUE a TOML value or text: a training "
                                                               "field (max_steps=3), data.KEY (data.limit=64), else a "
                                                               "loss parameter (beta=0.1, dpo.beta=0.1)."),
    max_steps: Optional[int] = typer.Option(None, help="Optimizer steps."),
    batch_size: Optional[int] = typer.Option(None, help="Pairs per micro-batch."),
    grad_accum: Optional[int] = typer.Option(None, help="Micro-batches per optimizer step."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate."),
    max_length: Optional[int] = typer.Option(None, help="Tokens per sequence; responses are cut from the right."),
    max_prompt_length: Optional[int] = typer.Option(None, help="Prompt tokens kept (from the left end cut)."),
    optimizer: Optional[str] = typer.Option(None, help="adamw | rmsprop."),
    scheduler: Optional[str] = typer.Option(None, help="constant | cosine | linear (after warm-up)."),
    warmup_steps: Optional[int] = typer.Option(None),
    dtype: Optional[str] = typer.Option(None, help="float32 | bfloat16 (autocast)."),
    reference: Optional[str] = typer.Option(None, help="Reference model (default: the starting weights)."),
    logit_temperature: Optional[float] = typer.Option(None, help="Divide logits by τ (EXO uses 0.8)."),
    limit: Optional[int] = typer.Option(None, help="Use only the first N examples of the data."),
    seed: Optional[int] = typer.Option(None),
    lora_r: Optional[int] = typer.Option(None, help="Train LoRA adapters of this rank instead of all weights."),
    save_every: Optional[int] = typer.Option(None, help="Checkpoint every N steps (the final one is always saved)."),
    init_from: Optional[str] = typer.Option(None, help="Start from a run (id or name) or a checkpoint directory."),
    out: Optional[str] = typer.Option(None, help="Output directory (default runs/<name>)."),
    name: Optional[str] = typer.Option(None, help="A name for the run."),
    restart: bool = typer.Option(False, help="Discard this run's earlier checkpoints instead of resuming."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    store: Path = STORE,
):
    """Train a policy with any registered loss. Re-running the same command resumes or reports it finished."""
    with user_errors():
        from evalharness.training import build_train_config, train_command

        flags = dict(loss=loss, model=model, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                     seed=seed, lora_r=lora_r, save_every=save_every, init_from=init_from, out=out, name=name,
                     max_length=max_length, max_prompt_length=max_prompt_length, optimizer=optimizer,
                     scheduler=scheduler, warmup_steps=warmup_steps, dtype=dtype, reference=reference,
                     logit_temperature=logit_temperature)
        cfg = build_train_config(config, flags, data=data, path=path, limit=limit, overrides=set_)
        import os

        from evalharness.textsafe import escape_controls

        quiet = int(os.environ.get("RANK", "0")) != 0  # under torchrun/accelerate only rank 0 reports
        for line in train_command(cfg, str(store), restart=restart, progress=progress):
            if not quiet:
                typer.echo(escape_controls(line))


@app.command()
def generate(
    checkpoint: list[str] = typer.Option(..., "--checkpoint", "-c",
                                         help="RUN[:STEP] from the store, or a model name/path; repeat for several."),
    prompts: str = typer.Option("synthetic", help="Prompt set: mt-bench, vicuna-bench, alpaca-eval, arena-hard, "
                                                  "hh-rlhf, synthetic, jsonl, json."),
    path: Optional[str] = typer.Option(None, help="Local file of the prompt set."),
    limit: Optional[int] = typer.Option(None, help="Use only the first N prompts."),
    n: int = typer.Option(4, help="Samples per prompt."),
    temperature: str = typer.Option("0.8", help="Sampling temperature, log-probs taken at it; 0 is greedy (log-probs "
                                                 "at 1); fastchat: FastChat's per-category MT-Bench temperatures."),
    top_p: float = typer.Option(1.0),
    max_new_tokens: int = typer.Option(256),
    seed: int = typer.Option(0, help="Base seed; each sample's seed derives from it, the prompt and its index."),
    backend: str = typer.Option("auto", help="auto | vllm | hf."),
    reference: Optional[str] = typer.Option(None, help="Reference model for log-probs (default: the run's)."),
    max_prompt_length: int = typer.Option(1024, help="Prompt tokens kept (the last ones)."),
    batch_size: int = typer.Option(16),
    data_parallel: int = typer.Option(1, help="Engines in worker processes (one GPU each), prompts dealt between "
                                              "them; the samples are those of one engine."),
    dtype: Optional[str] = typer.Option(None, help="float32 | bfloat16 | float16 (default: the backend's, float32)."),
    tensor_parallel_size: Optional[int] = typer.Option(None, help="vllm: GPUs per engine."),
    gpu_memory_utilization: Optional[float] = typer.Option(None, help="vllm: fraction of GPU memory for the engine, "
                                                                      "KV cache included."),
    max_model_len: Optional[int] = typer.Option(None, help="vllm: context length (default 2048, capped at the "
                                                           "model's)."),
    ray_address: Optional[str] = typer.Option(None, help="Run the --data-parallel engines as actors on this Ray "
                                                         "cluster: auto, local or HOST:PORT (needs the ray extra)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    store: Path = STORE,
):
    """Sample checkpoints on a prompt set into the store. Re-running generates only what is missing."""
    with user_errors():
        from evalharness.generate import GenerateConfig
        from evalharness.generate import generate as run_generate
        from evalharness.generation.base import Sampling, parse_temperature
        from evalharness.store import Store
        from evalharness.textsafe import escape_controls

        try:
            sampling = Sampling(parse_temperature(temperature), top_p, max_new_tokens, seed)
        except ValueError as e:
            from evalharness.config import ConfigError

            raise ConfigError(str(e)) from None
        cfg = GenerateConfig(list(checkpoint), prompts, path, limit, n=n, sampling=sampling, backend=backend,
                             reference=reference, max_prompt_length=max_prompt_length, batch_size=batch_size,
                             data_parallel=data_parallel, dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                             gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                             ray_address=ray_address)
        for report in run_generate(cfg, Store(str(store)), progress=progress):
            typer.echo(escape_controls(report.line()))


@app.command()
def validate(config: Path = typer.Argument(..., help="A training TOML file.")):
    """Bind every parameter of CONFIG (loss, params, data, model name) without loading weights or training."""
    with user_errors():
        from evalharness.training import build_train_config, validate_config

        cfg = build_train_config(config, {}, None, None, None, None)
        for line in validate_config(cfg):
            typer.echo(line)


@app.command("ls")
def ls(kind: str = typer.Argument(..., help="losses | datasets | judges | generators")):
    """List what is registered (built-ins and plugins)."""
    with user_errors():
        from evalharness.plugins import registry

        reg = registry(kind)
        for entry in reg.entries():
            src = "" if entry.source == "builtin" else f"  [{entry.source}]"
            typer.echo(f"{entry.name:<16} {entry.summary}{src}")


@app.command()
def runs(store: Path = STORE):
    """List training runs in the store."""
    with user_errors():
        from evalharness.store import Store
        from evalharness.textsafe import escape_controls

        for r in Store(str(store)).runs():
            shown = {k: escape_controls(r[k]) for k in ("status", "loss", "base_model", "name")}
            typer.echo(f"{r['run_id'][:12]}  {shown['status']:<11} step {r['final_step'] or '-':>6}  "
                       f"{shown['loss']:<16} {shown['base_model']:<14} {shown['name']}")


# Commands in evalharness/commands/ register themselves on `app` (imported here, after `app` exists).
from evalharness import commands as _commands  # noqa: E402

_commands.load()


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
