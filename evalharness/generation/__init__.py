"""Generation backends (vllm, hf) and their contract (base.py)."""
