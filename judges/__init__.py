"""Judges: a reward model, PairRM, any OpenAI-compatible LLM, the synthetic task's oracle, and presets of them.

``register`` is the package's entry point in the ``evalharness.judges`` group: the built-ins arrive through the same
hook as a plugin's judges. Entries are ``"module:attr"`` strings, so listing them imports no judge's dependencies.
"""


def register(reg) -> None:
    reg.add("reward-model", "judges.reward_model:RewardModelJudge",
            "a sequence-classification reward model (e.g. one trained with bradley-terry); pointwise scores")
    reg.add("pairrm", "judges.pairrm:PairRMJudge",
            "PairRM pairwise ranker (DeBERTa-v2, llm-blender/PairRM-hf layout); both orders averaged")
    reg.add("llm", "judges.llm:LLMJudge",
            "any OpenAI-compatible chat endpoint with a pairwise template (--base-url, --model, OPENAI_API_KEY)")
    reg.add("oracle", "judges.oracle:OracleJudge", "the synthetic task's gold reward (rule-based; exact)")
    from judges.presets import register_presets

    register_presets(reg)  # last: a preset file that can't be read leaves the judges above registered
