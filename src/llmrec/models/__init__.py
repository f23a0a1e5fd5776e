"""Recommendation models. MODELS is an explicit registry: name -> (config class, model class)."""

from __future__ import annotations

from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig, RecOutput

__all__ = ["MODELS", "NextItemLM", "NextItemLMConfig", "RecOutput"]

MODELS: dict[str, tuple[type[NextItemLMConfig], type[NextItemLM]]] = {
    "next-item-lm": (NextItemLMConfig, NextItemLM),
}
