"""Explanations of recommendations.

- `llmrec.explain.attribution`: which history items drove a score (exact occlusion, gradient × input) and the
  deletion test of faithfulness; imports torch.
- `llmrec.explain.text`: short reasons in words from attributions and item metadata; no torch.

Nothing is imported here, so `import llmrec.explain.text` stays free of torch.
"""
