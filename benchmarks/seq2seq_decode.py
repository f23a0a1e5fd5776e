"""Decoding throughput of a t5-semantic artifact: the tensor trie mask vs the plain `prefix_allowed_tokens_fn`.

Usage: python benchmarks/seq2seq_decode.py MODEL_DIR PREPARED_DIR [--beams 20] [--users 256] [--threads 1]
Prints one JSON line: users/s per batch size for both ways of constraining the beams (same beams: see
tests/models/test_seq2seq.py::test_tensor_mask_matches_the_plain_prefix_allowed_tokens_fn_reference).
Decodes the validation histories of the first --users users: no target is read.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import GenerationConfig

from llmrec.data import PreparedDataset
from llmrec.data.sequences import pad_left
from llmrec.models.seq2seq import T5SemanticRecommender


def _reference(model: T5SemanticRecommender, item_ids: torch.Tensor, beams: int) -> torch.Tensor:
    """Beam search constrained by a Python callback returning the allowed token list (the issue's recipe)."""
    T = model.config.depth

    def allowed(batch_id: int, prefix: torch.Tensor) -> list[int]:
        codes = model.token_code[prefix[1:]].tolist()
        return [int(model.code_tokens[len(codes)][c]) for c in model.trie.allowed(codes)] if len(codes) < T else [0]

    input_ids, mask = model.encoder_inputs(item_ids)
    cfg = model.t5.config
    gen = GenerationConfig(
        num_beams=beams,
        num_return_sequences=beams,
        max_new_tokens=T,
        length_penalty=0.0,
        early_stopping=True,
        decoder_start_token_id=cfg.decoder_start_token_id,
        pad_token_id=cfg.pad_token_id,
        eos_token_id=cfg.eos_token_id,
    )
    with torch.no_grad():
        return model.t5.generate(
            input_ids=input_ids, attention_mask=mask, generation_config=gen, prefix_allowed_tokens_fn=allowed
        )  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prepared")
    ap.add_argument("--beams", type=int, default=20)
    ap.add_argument("--users", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = T5SemanticRecommender.from_pretrained(a.model)
    histories = PreparedDataset.load(a.prepared).eval_examples("valid").histories[: a.users]
    out: dict[str, object] = {"beams": a.beams, "users": len(histories), "threads": a.threads}
    for batch in (1, 16, 64, 256):
        for name, fn in (
            ("tensor_mask", lambda ids: model.generate(ids, k=10, num_beams=a.beams)),
            ("prefix_allowed_tokens_fn", lambda ids: _reference(model, ids, a.beams)),
        ):
            n = min(len(histories), 32 if batch == 1 else max(64, batch))
            t0 = time.perf_counter()
            for s in range(0, n, batch):
                fn(pad_left(histories[s : s + batch], model.config.max_seq_len))
            out[f"{name}@batch{batch}"] = round(n / (time.perf_counter() - t0), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
