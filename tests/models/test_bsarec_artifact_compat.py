"""BSARec artifacts written before its rewrite over the shared layers (`models/layers.py`) still load and score
the same: a tiny artifact is written here from fixed weights in the format of that time (config.json with
``model_type = "bsarec"`` and these state-dict keys), and its scores were recorded with the code of that time."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

CONFIG = {
    "model_type": "bsarec",
    "n_items": 6,
    "max_seq_len": 6,
    "d_model": 8,
    "n_layers": 1,
    "n_heads": 2,
    "d_ff": 16,
    "dropout": 0.4,
    "emb_dropout": 0.4,
    "pos_encoding": "rotary",
    "pos_origin": "start",
    "tie_weights": True,
    "loss": "ce",
    "n_negatives": 256,
    "label_smoothing": 0.0,
    "loss_exclude_seen": False,
    "ce_chunk_size": 2048,
    "n_attributes": 3,
    "max_item_attributes": 2,
    "text_dim": 0,
    "alpha": 0.6,
    "c": 2,
}
SHAPES = {
    "item_attributes": [7, 2],
    "log_q": [7],
    "item_emb.weight": [7, 8],
    "attr_emb.weight": [4, 8],
    "blocks.0.beta": [8],
    "blocks.0.ln_filter.weight": [8],
    "blocks.0.ln_filter.bias": [8],
    "blocks.0.qkv.weight": [24, 8],
    "blocks.0.qkv.bias": [24],
    "blocks.0.proj.weight": [8, 8],
    "blocks.0.proj.bias": [8],
    "blocks.0.ln_attn.weight": [8],
    "blocks.0.ln_attn.bias": [8],
    "blocks.0.mlp.0.weight": [16, 8],
    "blocks.0.mlp.0.bias": [16],
    "blocks.0.mlp.2.weight": [8, 16],
    "blocks.0.mlp.2.bias": [8],
    "blocks.0.ln_ff.weight": [8],
    "blocks.0.ln_ff.bias": [8],
    "emb_ln.weight": [8],
    "emb_ln.bias": [8],
}
HISTORIES = [[0, 0, 3, 1, 5], [2, 4, 6, 1, 3]]
# scores of items 1..6 for HISTORIES, recorded with the BSARec of commit 462ba6e (a subclass of the LM)
SCORES = [
    [
        -0.9626525044441223,
        0.783078134059906,
        0.41662803292274475,
        -0.0044186050072312355,
        -0.868848443031311,
        -0.6907395720481873,
    ],
    [-1.1738563776016235, 0.9175935387611389, 0.5875919461250305, -0.03313111141324043, -1.3263592720031738, -0.8997173309326172],
]
# state-dict keys of a learned-position, untied, text-featured two-block BSARec of that time
KEYS_LEARNED_TEXT = sorted(
    [
        f"blocks.{i}.{name}"
        for i in (0, 1)
        for name in (
            "beta",
            "ln_attn.bias",
            "ln_attn.weight",
            "ln_ff.bias",
            "ln_ff.weight",
            "ln_filter.bias",
            "ln_filter.weight",
            "mlp.0.bias",
            "mlp.0.weight",
            "mlp.2.bias",
            "mlp.2.weight",
            "proj.bias",
            "proj.weight",
            "qkv.bias",
            "qkv.weight",
        )
    ]
    + ["emb_ln.bias", "emb_ln.weight", "item_emb.weight", "item_text", "log_q", "out_emb.weight", "pos_emb.weight"]
    + ["text_proj.weight"]
)


def _write_old_artifact(path: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    weights = {}
    for key in sorted(SHAPES):
        if key == "item_attributes":
            weights[key] = torch.randint(0, 4, tuple(SHAPES[key]), generator=g)
        else:
            weights[key] = torch.randn(tuple(SHAPES[key]), generator=g) * 0.3
    path.mkdir()
    (path / "config.json").write_text(json.dumps(CONFIG))
    save_file(weights, str(path / "model.safetensors"))
    return path


def test_an_old_bsarec_artifact_loads_and_scores_the_same(tmp_path: Path) -> None:
    from llmrec.models import load_model

    model = load_model(_write_old_artifact(tmp_path / "bsa"))
    assert type(model).__name__ == "BSARec"
    scores = model.score(torch.tensor(HISTORIES))
    assert scores[:, 0].isinf().all()
    torch.testing.assert_close(scores[:, 1:], torch.tensor(SCORES), rtol=0, atol=1e-5)


def test_bsarec_keeps_its_state_dict_keys() -> None:
    from llmrec.models.bsarec import BSARec, BSARecConfig

    sizes = {"n_items": 6, "max_seq_len": 6, "d_model": 8, "n_heads": 2, "d_ff": 16, "c": 2}
    model = BSARec(BSARecConfig(**sizes, n_layers=2, text_dim=4, tie_weights=False))
    assert sorted(model.state_dict()) == KEYS_LEARNED_TEXT
    old = {k: v for k, v in CONFIG.items() if k != "model_type"}
    assert BSARec(BSARecConfig(**old)).config.to_dict() == old  # config.json's fields are unchanged
