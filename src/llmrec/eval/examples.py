"""A few users of an evaluation shown by name, and the served seen-item rule, for a person to judge by eye.

`example_users` picks a handful of test users (evenly spread over the split, each with a history of at least a few
items) and lists the end of each history and the model's top-k under the report's protocol, with catalogue titles
and whether the held-out item is among them. `report_markdown` renders them and the seen-item rule that serving
uses (`llmrec.eval.seen_rule`) for report.md; report.json keeps the same under ``examples`` and ``protocol``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.eval.ranking import compute_ranks_and_topk

if TYPE_CHECKING:
    from llmrec.data.dataset import PreparedDataset
    from llmrec.eval.scoring import ScoreFn

__all__ = ["example_users", "report_markdown"]

N_USERS = 3  # example users in a report
N_HISTORY = 5  # most recent history items shown per user


def _item(items: Sequence[tuple[str, str | None]], idx: int) -> dict[str, Any]:
    raw, title = items[idx - 1]
    return {"item_id": raw, "title": title}


def example_users(
    score_fn: ScoreFn,
    dataset: PreparedDataset,
    *,
    split: str = "test",
    exclude_seen: bool,
    n_users: int = N_USERS,
    k: int = 10,
    min_history: int = 3,
) -> list[dict[str, Any]]:
    """Up to `n_users` users of `split`: ``user``, ``history`` (the last N_HISTORY items, oldest first), ``target``
    (the held-out item), ``hit`` (its rank if within k, else None) and ``top`` (the top-k, each with its title)."""
    ex = dataset.eval_examples(split)
    eligible = [i for i, h in enumerate(ex.histories) if len(h) >= min_history]
    if not eligible:
        return []
    picked = [eligible[int(j)] for j in np.unique(np.linspace(0, len(eligible) - 1, min(n_users, len(eligible))).round())]
    k = min(k, dataset.n_items)
    histories = [ex.histories[i] for i in picked]
    targets = ex.targets[picked]
    ranks, top = compute_ranks_and_topk(score_fn, histories, targets, k=k, exclude_seen=exclude_seen)
    users = dataset.users["user"].to_list()
    catalogue = dataset.items.sort("item_idx")
    items = list(zip(catalogue["item"].to_list(), catalogue["title"].to_list(), strict=True))
    out = []
    for row, i in enumerate(picked):
        out.append(
            {
                "user": str(users[int(ex.user_idx[i])]),
                "history": [_item(items, int(j)) for j in histories[row][-N_HISTORY:]],
                "history_length": len(histories[row]),
                "target": _item(items, int(targets[row])),
                "hit": int(ranks[row]) if ranks[row] <= k else None,
                "top": [_item(items, int(j)) for j in top[row] if j > 0],
            }
        )
    return out


def _name(item: Mapping[str, Any]) -> str:
    title = item.get("title")
    return f"{title} ({item['item_id']})" if title else str(item["item_id"])


def report_markdown(report: Mapping[str, Any]) -> list[str]:
    """Markdown lines: the served seen-item rule, then the example users (nothing when the report has neither)."""
    lines: list[str] = []
    protocol = report.get("protocol") or {}
    if "served_exclude_seen" in protocol:
        served = "leave out items already in the history" if protocol["served_exclude_seen"] else "keep history items"
        rule = protocol.get("seen_rule") or {}
        chosen = rule.get("valid_ndcg@10")
        why = (
            f"chosen on validation when the model was trained: NDCG@10 {chosen['exclude_seen']:.4f} with them excluded, "
            f"{chosen['include_seen']:.4f} kept"
            if isinstance(chosen, Mapping)
            else "the default for a model trained before the rule was recorded"
        )
        lines += ["## Served ranking", "", f"Recommendations **{served}** ({why}).", ""]
    examples = report.get("examples") or []
    if examples:
        lines += ["## Example users", "", "The end of each history, the held-out item, and the top 10 as ranked above.", ""]
    for ex in examples:
        hit = f"found at rank {ex['hit']}" if ex.get("hit") else "not in the top 10"
        lines += [f"### user {ex['user']} ({ex['history_length']} items; held-out item {hit})", ""]
        lines += ["- history (most recent last): " + "; ".join(_name(i) for i in ex["history"])]
        lines += [f"- held out: {_name(ex['target'])}"]
        lines += [f"- top {len(ex['top'])}: " + "; ".join(f"{r}. {_name(i)}" for r, i in enumerate(ex["top"], 1)), ""]
    return lines
