"""Data: preference pairs, scored samples and prompts from presets, local files and the hub."""

from evalharness.data.types import DataError, Message, PreferencePair, Prompt, PromptText, ScoredSamples

__all__ = ["DataError", "Message", "PreferencePair", "Prompt", "PromptText", "ScoredSamples"]
