"""Explanations through the Python API (`Recommender.explain`) and the CLI (`llmrec explain`, `recommend --explain
--diversity --query`) on the tiny artifact."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data import PreparedDataset
from llmrec.explain.attribution import occlusion, occlusion_reasons
from llmrec.explain.text import Reason, TemplateGenerator
from llmrec.models.baselines import MostPopular
from llmrec.recommend import Recommender
from llmrec.training import save_artifact

runner = CliRunner()


def test_explain_attributes_each_recommended_item(tiny_artifact: Path) -> None:
    rec = Recommender.load(tiny_artifact)
    user = next(iter(rec.histories))
    h = rec.histories[user]
    explanations = rec.explain(user=user, k=3, n_contributions=4)
    assert [e.recommendation for e in explanations] == rec.recommend(user=user, k=3)
    targets = [rec.item_index[e.recommendation.item_id] for e in explanations]
    weights = occlusion(rec.model, h, targets, rec.max_seq_len)
    _, reasons = occlusion_reasons(rec.model, h, targets, rec.max_seq_len)
    for e, w, r in zip(explanations, weights, reasons, strict=True):
        per_item: dict[int, float] = {}
        for i, a in zip(h.tolist(), w.tolist(), strict=True):
            per_item[i] = per_item.get(i, 0.0) + a
        ranked = sorted(per_item.items(), key=lambda t: -t[1])
        named = [(i, a) for i, a in ranked if a > 0 and i in set(h[r].tolist())]  # items that pass the reason test
        cited = [i for i, a in named[:2] if a >= 0.25 * named[0][1]]
        causes = tuple(rec.item_info(i) for i in cited)
        best = ranked[:4] + [(i, a) for i, a in ranked[4:] if i in cited]  # the table shows every cited item
        assert [c.item_id for c in e.contributions] == [rec.raw_ids[i - 1] for i, _ in best]
        assert [c.weight for c in e.contributions] == pytest.approx([a for _, a in best], abs=1e-6)
        assert all(c.title == f"Item {c.item_id}" for c in e.contributions)
        item = rec.item_info(rec.item_index[e.recommendation.item_id])
        assert e.text == TemplateGenerator().generate(Reason(item, causes, "generic", weak=not named))


def test_explain_options_pass_through(tiny_artifact: Path) -> None:
    rec = Recommender.load(tiny_artifact)
    user = list(rec.histories)[1]

    class Shouting:
        def generate(self, reason: Reason) -> str:
            return reason.item.name.upper()

    diverse = rec.explain(user=user, k=4, diversity=1.0, exclude_seen=True, method="gradient", generator=Shouting())
    assert [e.recommendation for e in diverse] == rec.recommend(user=user, k=4, diversity=1.0, exclude_seen=True)
    assert all(e.text == (e.recommendation.title or "").upper() for e in diverse)
    with pytest.raises(ValueError, match="unknown attribution method"):
        rec.explain(user=user, method="rollout")


def test_explain_without_any_driving_item(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    path = save_artifact(MostPopular.fit(tiny_prepared.train_sequences(), tiny_prepared.n_items), tiny_prepared, tmp_path / "pop")
    rec = Recommender.load(path)
    (e,) = rec.explain(user=next(iter(rec.histories)), k=1)
    assert all(c.weight == 0.0 for c in e.contributions)  # the same list for everyone: the history plays no part
    assert e.text.startswith("Recommended to you: ")


# ---- CLI -----------------------------------------------------------------------------------------------------
class _WordEncoder:
    """Unit vector per distinct genre word: the query "jazz" is similar to the jazz items only."""

    name = "word-encoder"
    dim = 5
    GENRES = ("drama", "comedy", "jazz", "rock", "sports")

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.array([[float(g in t.lower()) for g in self.GENRES] for t in texts], dtype=np.float32)
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, n, out=np.zeros_like(out), where=n > 0)


def test_cli_explain_json_and_table(tiny_artifact: Path) -> None:
    user = next(iter(Recommender.load(tiny_artifact).histories))
    result = runner.invoke(app, ["explain", "--model", str(tiny_artifact), "--user", user, "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["rank"] for r in rows] == [1, 2]
    assert all(r["reason"] and len(r["contributions"]) == 5 for r in rows)
    table = runner.invoke(
        app, ["recommend", "--model", str(tiny_artifact), "--user", user, "-k", "2", "--explain", "--diversity", "0.3"]
    )
    assert table.exit_code == 0, table.output
    assert "top 2, explained" in table.stdout


def test_cli_recommend_query(tiny_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmrec.index import text_encoder

    monkeypatch.setattr(text_encoder, "SentenceTransformerEncoder", _WordEncoder)
    user = next(iter(Recommender.load(tiny_artifact).histories))
    args = ["recommend", "--model", str(tiny_artifact), "--user", user, "-k", "5", "--json", "--query", "some jazz"]
    result = runner.invoke(app, [*args, "--query-weight", "1.0"])
    assert result.exit_code == 0, result.output
    titles = [r["title"] for r in json.loads(result.stdout)]
    assert len(titles) == 5 and all(int(t.split()[1]) % 5 == 2 for t in titles)  # "Item i" is jazz when i % 5 == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "rollout"], "unknown attribution method 'rollout'"),
        (["--diversity", "2"], "diversity must be in [0, 1]"),
        (["--generator", "/nonexistent/gpt"], "not a causal-LM folder"),
    ],
)
def test_cli_explain_user_errors(tiny_artifact: Path, args: list[str], message: str) -> None:
    user = next(iter(Recommender.load(tiny_artifact).histories))
    result = runner.invoke(app, ["explain", "--model", str(tiny_artifact), "--user", user, *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr


def test_explain_never_cites_the_item_it_explains(tiny_artifact: Path) -> None:
    rec = Recommender.load(tiny_artifact)
    user = next(iter(rec.histories))
    seen = {rec.raw_ids[i - 1] for i in rec.histories[user]}
    reasons: list[Reason] = []

    class Recording:
        def generate(self, reason: Reason) -> str:
            reasons.append(reason)
            return TemplateGenerator().generate(reason)

    # every item, history included: some recommended items are in the history, yet none explains itself
    explanations = rec.explain(user=user, k=rec.n_items, exclude_seen=False, generator=Recording())
    assert {e.recommendation.item_id for e in explanations} >= seen
    for e, reason in zip(explanations, reasons, strict=True):
        item = e.recommendation.item_id
        assert item not in {c.item_id for c in e.contributions}
        assert item not in {c.item_id for c in reason.causes}
        assert e.text.count(f"Item {item} ") + e.text.count(f"Item {item})") <= 1  # named once, as the explained item


def test_explain_and_recommend_leave_out_the_history_by_default(tiny_artifact: Path) -> None:
    rec = Recommender.load(tiny_artifact)
    user = next(iter(rec.histories))
    seen = {rec.raw_ids[i - 1] for i in rec.histories[user]}
    assert not {r.item_id for r in rec.recommend(user=user, k=rec.n_items)} & seen
    assert not {e.recommendation.item_id for e in rec.explain(user=user, k=10)} & seen
    assert {r.item_id for r in rec.recommend(user=user, k=rec.n_items, exclude_seen=False)} >= seen


def test_explain_says_when_a_query_shaped_the_list(tiny_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmrec.index import text_encoder

    monkeypatch.setattr(text_encoder, "SentenceTransformerEncoder", _WordEncoder)
    rec = Recommender.load(tiny_artifact)
    rec.text_cache_dir = tiny_artifact / "text-cache"
    user = next(iter(rec.histories))
    shaped = rec.explain(user=user, k=2, query="some jazz")
    assert all('Your request "some jazz" also shaped this list.' in e.text for e in shaped)
    unweighted = rec.explain(user=user, k=2, query="some jazz", query_weight=0.0)  # the query changed nothing
    assert not any("request" in e.text for e in unweighted)


def test_cli_recommend_excludes_the_history_unless_asked(tiny_artifact: Path) -> None:
    rec = Recommender.load(tiny_artifact)
    user = next(iter(rec.histories))
    seen = {rec.raw_ids[i - 1] for i in rec.histories[user]}
    base = ["--model", str(tiny_artifact), "--user", user, "-k", str(rec.n_items), "--json"]
    default = runner.invoke(app, ["recommend", *base])
    assert default.exit_code == 0, default.output
    assert not {r["item_id"] for r in json.loads(default.stdout)} & seen
    included = runner.invoke(app, ["recommend", *base, "--include-seen"])
    assert {r["item_id"] for r in json.loads(included.stdout)} >= seen
    explained = runner.invoke(app, ["explain", *base[:-3], "-k", "3", "--json"])
    assert explained.exit_code == 0, explained.output
    assert not {r["item_id"] for r in json.loads(explained.stdout)} & seen
