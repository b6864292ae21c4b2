"""Judges: reward model, PairRM and OpenAI-compatible pairwise judges (arriving with the judging issue)."""
