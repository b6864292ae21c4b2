import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _shared_model_cache(tmp_path_factory):
    """Tiny models are built once per test session into a private cache (never the user's)."""
    if "EVALHARNESS_TEST_CACHE" in os.environ:  # reuse across runs (set by .ci/run or by hand)
        os.environ["EVALHARNESS_CACHE"] = os.environ["EVALHARNESS_TEST_CACHE"]
    else:
        os.environ["EVALHARNESS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
