import pytest


@pytest.fixture(scope="session")
def sweep_store(tmp_path_factory):
    """A store with three finished tiny runs: DPO at β = 0.1 and β = 0.5 (a sweep) and SFT (no β)."""
    from evalharness.config import DataConfig, TrainConfig
    from evalharness.store import Store
    from trainers.loop import train

    root = tmp_path_factory.mktemp("sweep")
    store = Store(str(root / "s.duckdb"))
    for loss, params in (("dpo", {"beta": 0.1}), ("dpo", {"beta": 0.5}), ("sft", {})):
        cfg = TrainConfig(loss=loss, model="tiny-llama", params=params, max_steps=1, batch_size=2, lr=1e-2,
                          data=DataConfig(name="synthetic", limit=6, eval_fraction=0.0), max_length=96,
                          max_prompt_length=48, name=f"{loss}-{params.get('beta', 0)}",
                          out=str(root / "runs" / f"{loss}-{params.get('beta', 0)}"))
        train(cfg, store, progress=False)
    return store
