"""llmrec."""
