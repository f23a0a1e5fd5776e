"""Item text at scoring time: a trained model's scores blended with the title similarity to the user's recent items.

    score(u, i) = z(model(u))_i + beta * z(cos(profile(u), text_i))

z standardises each user's row over the catalogue (so beta means the same for every model); profile(u) is the mean
text embedding of the user's `--recent` newest history items; text_i the item's frozen text embedding (the
MiniLM titles of a text model's artifact, `item_text.safetensors`, or any `--text` file of the same layout).
Nothing is trained: the blend asks whether the titles still know something the model did not learn, above all for
long-tail targets (at most `--max-count` training interactions) and short histories.

Full ranking over all items, seen items excluded, ties counted pessimistically (as `llmrec evaluate`). Validation
targets by default, every `--betas` value in one pass; ``--split test --final`` reads the test targets (one read per
reported recipe: give the beta chosen on validation only).

    python benchmarks/text_blend.py runs/beauty/data runs/beauty/text-s0 --betas 0,0.1,0.2,0.3,0.5
    python benchmarks/text_blend.py runs/beauty/data runs/beauty/id-s0 --text runs/beauty/text-s0 --betas 0,0.2
    python benchmarks/text_blend.py runs/beauty/data runs/beauty/text-s0 --betas 0,0.2 --split test --final
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from llmrec.data import PreparedDataset
from llmrec.data.sequences import pad_left
from llmrec.eval.metrics import summarize
from llmrec.models import load_model
from llmrec.models.layers import standardise_rows


def _text(path: Path) -> torch.Tensor:
    """[V+1, E] unit-norm item text embeddings from a model folder's item_text.safetensors (or the file itself)."""
    file = path / "item_text.safetensors" if path.is_dir() else path
    tensors = load_file(str(file))
    emb = next(iter(tensors.values())).float()
    return F.normalize(emb, dim=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prepared", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("--text", type=Path, help="item_text.safetensors or a folder with it (default: the model's)")
    ap.add_argument("--betas", default="0,0.1,0.2,0.3,0.5")
    ap.add_argument(
        "--rare-extra",
        default="0",
        help="extra title weight for long-tail items (at most --max-count training events): beta + extra on them",
    )
    ap.add_argument("--recent", type=int, default=1, help="history items averaged into the text profile")
    ap.add_argument("--max-count", type=int, default=5, help="long-tail targets: at most this many training events")
    ap.add_argument("--short-user", type=int, default=5, help="short users: at most this many training items")
    ap.add_argument("--split", choices=("valid", "test"), default="valid")
    ap.add_argument("--final", action="store_true", help="required with --split test: this run reads the test targets")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if a.split == "test" and not a.final:
        sys.exit("error: --split test reads the test targets; mark the run --final")
    torch.set_num_threads(a.threads)
    grid = [(float(b), float(r)) for b in a.betas.split(",") for r in a.rare_extra.split(",")]
    ds = PreparedDataset.load(a.prepared)
    ex = ds.eval_examples(a.split)
    valid = ds.eval_examples("valid")
    train_len = dict(zip(valid.user_idx.tolist(), (len(h) for h in valid.histories), strict=True))
    popularity = ds.item_popularity()
    rare = popularity[ex.targets] <= a.max_count
    rare_item = torch.from_numpy(popularity <= a.max_count).float()  # [V+1]
    short = np.array([train_len.get(int(u), 0) <= a.short_user for u in ex.user_idx])
    model = load_model(a.model)
    if getattr(getattr(model, "config", None), "text_blend", 0.0):  # its own title term off: beta is the only one
        model.config = dataclasses.replace(model.config, text_blend=0.0)  # type: ignore[attr-defined]
    if isinstance(model, torch.nn.Module):
        model.eval()
    text = _text(a.text or a.model)  # [V+1, E]
    if text.shape[0] != ds.n_items + 1:
        sys.exit(f"error: {a.text or a.model}: {text.shape[0] - 1} items of text, the dataset has {ds.n_items}")
    ranks = {g: np.empty(len(ex.targets), dtype=np.int64) for g in grid}
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(ex.targets), a.batch):
            hist = ex.histories[start : start + a.batch]
            targets = torch.as_tensor(ex.targets[start : start + a.batch])
            ids = pad_left(list(hist), model.max_seq_len)
            scores = model.score(ids).float()  # [B, V+1]
            recent = ids[:, -a.recent :]  # [B, R] (0 = padding)
            profile = (text[recent] * (recent > 0).unsqueeze(-1)).sum(1)  # [B, E]
            sim = F.normalize(profile, dim=1) @ text.T  # [B, V+1]
            zm, zs = standardise_rows(scores), standardise_rows(sim)
            seen = torch.zeros_like(scores, dtype=torch.bool)
            for row, h in enumerate(hist):
                seen[row, torch.as_tensor(h)] = True
            seen[:, 0] = True
            rows = torch.arange(len(targets))
            for b, r in grid:
                s = (zm + (b + r * rare_item) * zs).masked_fill(seen, float("-inf"))
                target = s[rows, targets].unsqueeze(1)
                rank = (s > target).sum(1) + (s == target).sum(1)  # pessimistic ties (the target counts itself)
                rank = torch.where(torch.isinf(target.squeeze(1)), ds.n_items, rank)  # a seen target is a miss
                ranks[b, r][start : start + len(targets)] = rank.numpy()
    out = []
    for b, r in grid:
        row: dict[str, object] = {"beta": b, "rare_extra": r, "split": a.split, "model": str(a.model), "recent": a.recent}
        for name, mask in (("", np.ones_like(rare)), (f"rare_le{a.max_count}_", rare), (f"short_le{a.short_user}_", short)):
            m = summarize(ranks[b, r][mask], (10,))
            row[f"{name}n"] = int(mask.sum())
            row[f"{name}ndcg@10"] = round(m["ndcg@10"], 4)
            row[f"{name}recall@10"] = round(m["recall@10"], 4)
        print(json.dumps(row), flush=True)
        out.append(row)
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
