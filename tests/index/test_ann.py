"""Approximate retrieval (llmrec.index.ann): exactness of flat, recall of ivf/hnsw, exclusion, persistence, and the
Recommender / service / CLI paths that use it. Small seeded fixtures; each test well under a second or two."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

pytest.importorskip("faiss")

import torch  # noqa: E402 - after the skip: this module only runs where faiss is installed

from llmrec.index import ann  # noqa: E402
from llmrec.index.ann import ItemIndex, exact_top_k, recall_at_k  # noqa: E402

if TYPE_CHECKING:
    from llmrec.data import PreparedDataset
    from llmrec.recommend import Recommender


def clustered(n_items: int, n_queries: int, seed: int, d: int = 16, n_clusters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A [n_items + 1, d] item table (row 0 = PAD, zeros) of Gaussian clusters with varied norms, and queries
    [n_queries, d] drawn around the same cluster centres (both seeded)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d))
    items = centres[rng.integers(0, n_clusters, n_items)] + 0.5 * rng.standard_normal((n_items, d))
    items *= rng.uniform(0.5, 2.0, size=(n_items, 1))  # norms vary, as popularity makes them do
    queries = centres[rng.integers(0, n_clusters, n_queries)] + 0.5 * rng.standard_normal((n_queries, d))
    table = np.vstack([np.zeros((1, d)), items]).astype(np.float32)
    return table, queries.astype(np.float32)


@pytest.fixture(scope="module")
def catalogue() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """table [3001, 16], calibration queries [200, 16], held-out test queries [200, 16] (other draws)."""
    table, calibration = clustered(3000, 200, seed=1)
    rng = np.random.default_rng(2)
    test = calibration + 0.3 * rng.standard_normal(calibration.shape).astype(np.float32)
    return table, calibration, test[rng.permutation(len(test))]


def torch_top_k(table: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: queries · table^T with PAD at -inf, torch.topk -> (scores, ids)."""
    scores = torch.from_numpy(queries) @ torch.from_numpy(table).T  # [B, V+1]
    scores[:, 0] = float("-inf")
    top = scores.topk(k, dim=1)
    return top.values.numpy(), top.indices.numpy()


# ---- the index on its own --------------------------------------------------------------------------------------
def test_flat_search_equals_brute_force_torch_topk(catalogue: tuple[np.ndarray, ...]) -> None:
    table, _, queries = catalogue
    scores, ids = ItemIndex.build(table, "flat").search(queries, 10)
    want_scores, want_ids = torch_top_k(table, queries, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    assert ids.dtype == np.int64 and scores.dtype == np.float32


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_reach_the_recall_target_on_held_out_queries(kind: str, catalogue: tuple[np.ndarray, ...]) -> None:
    table, calibration, queries = catalogue
    index = ItemIndex.build(table, kind, queries=calibration, target_recall=0.99)
    assert index.info.calibrated_recall >= 0.99 and index.info.calibration_queries == "given"
    found = index.search(queries, 10)[1]
    exact = exact_top_k(table, queries, 10)[1]
    assert recall_at_k(found, exact) >= 0.95
    assert index.search_parameter < (index.info.nlist if kind == "ivf" else 3000)  # cheaper than a full scan


def test_ivf_calibration_picks_the_smallest_nprobe_that_passes(catalogue: tuple[np.ndarray, ...]) -> None:
    table, calibration, _ = catalogue
    index = ItemIndex.build(table, "ivf", queries=calibration, target_recall=0.97)
    nprobe = index.info.nprobe
    assert nprobe > 1  # the fixture needs more than one list for this target: otherwise the test proves nothing
    exact = exact_top_k(table, calibration, 10)[1]
    assert recall_at_k(index.with_search_parameter(nprobe - 1).search(calibration, 10)[1], exact) < 0.97
    assert recall_at_k(index.search(calibration, 10)[1], exact) == pytest.approx(index.info.calibrated_recall)


def test_hnsw_that_stalls_below_the_target_keeps_the_cap_and_warns(
    catalogue: tuple[np.ndarray, ...], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    table, calibration, _ = catalogue
    monkeypatch.setattr(ann, "MAX_EF_SEARCH", 64)  # a sparse graph (M = 4) stays below recall 1 up to there
    index = ItemIndex.build(table, "hnsw", queries=calibration, target_recall=1.0, hnsw_m=4, ef_construction=8)
    assert index.info.ef_search == 64 and index.info.calibrated_recall < 1.0
    assert "below the target" in caplog.text


def test_given_search_parameter_skips_calibration(catalogue: tuple[np.ndarray, ...]) -> None:
    table, _, _ = catalogue
    index = ItemIndex.build(table, "ivf", nlist=20, nprobe=3)
    assert (index.info.nlist, index.info.nprobe, index.info.target_recall) == (20, 3, 0.0)
    assert ItemIndex.build(table, "hnsw", ef_search=24).info.ef_search == 24


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_search_never_returns_pad_or_excluded_items(kind: str, catalogue: tuple[np.ndarray, ...]) -> None:
    table, calibration, queries = catalogue
    queries = queries[:20]
    index = ItemIndex.build(table, kind, queries=calibration)
    first = index.search(queries, 10)[1]
    exclude: list[Any] = [row[:5] for row in first]  # each query's own top 5: the hardest items to skip
    exclude[3] = None  # no exclusion for this one
    exclude[4] = [first[4][0], first[4][0], 0]  # duplicates and PAD are fine
    scores, ids = index.search(queries, 10, exclude=exclude)
    assert (ids > 0).all() and np.isfinite(scores).all()
    for row, banned in zip(ids, exclude, strict=True):
        assert not set(row.tolist()) & set(np.asarray(banned if banned is not None else [], dtype=int).tolist())
    np.testing.assert_array_equal(ids[3], first[3])
    assert (np.diff(scores, axis=1) <= 1e-4).all()  # descending
    if kind == "flat":  # exactly the best 10 of what is left
        masked = torch.from_numpy(queries) @ torch.from_numpy(table).T
        masked[:, 0] = float("-inf")
        for i, banned in enumerate(exclude):
            if banned is not None:
                masked[i, torch.as_tensor(np.asarray(banned, dtype=np.int64))] = float("-inf")
        np.testing.assert_array_equal(ids, masked.topk(10, dim=1).indices.numpy())


def test_a_long_exclusion_list_searches_deeper_until_k_are_left(catalogue: tuple[np.ndarray, ...]) -> None:
    table, _, queries = catalogue
    queries = queries[:4]
    index = ItemIndex.build(table, "flat")
    ranked = index.search(queries, 1000)[1]  # [4, 1000] exact order
    exclude = [ranked[0][:300], ranked[1][::2], np.arange(1, 3001)[::-1][:2990], None]  # the top 300; every other one
    scores, ids = index.search(queries, 10, exclude=exclude)
    np.testing.assert_array_equal(ids[0], ranked[0][300:310])
    np.testing.assert_array_equal(ids[1], ranked[1][1:20:2])
    assert sorted(ids[2].tolist()) == list(range(1, 11))  # all that is left of the catalogue (3000 down to 11 excluded)
    np.testing.assert_array_equal(ids[3], ranked[3][:10])


def test_search_pads_when_the_catalogue_is_smaller_than_k() -> None:
    table, queries = clustered(8, 3, seed=3)
    scores, ids = ItemIndex.build(table, "flat").search(queries, 12, exclude=[[1, 2], None, []])
    assert ids.shape == (3, 12)
    assert sorted(ids[1][ids[1] > 0].tolist()) == list(range(1, 9))
    assert sorted(ids[0][ids[0] > 0].tolist()) == list(range(3, 9))
    assert (ids[0][6:] == 0).all() and np.isneginf(scores[0][6:]).all()


def test_save_and_load_give_identical_results(catalogue: tuple[np.ndarray, ...], tmp_path: Path) -> None:
    table, calibration, queries = catalogue
    for kind in ("flat", "ivf", "hnsw"):
        index = ItemIndex.build(table, kind, queries=calibration)
        index.save(tmp_path / kind)
        info = json.loads((tmp_path / kind / "index.json").read_text())  # the sidecar is plain JSON
        assert info["kind"] == kind and info["n_items"] == 3000
        loaded = ItemIndex.load(tmp_path / kind, table)
        assert loaded.info == index.info
        for got, want in zip(loaded.search(queries, 10), index.search(queries, 10), strict=True):
            np.testing.assert_array_equal(got, want)


def test_load_refuses_an_index_of_another_table(catalogue: tuple[np.ndarray, ...], tmp_path: Path) -> None:
    table, _, _ = catalogue
    ItemIndex.build(table, "flat").save(tmp_path / "ann")
    other = table.copy()
    other[5, 0] += 1.0
    with pytest.raises(ValueError, match="another item table"):
        ItemIndex.load(tmp_path / "ann", other)
    with pytest.raises(FileNotFoundError):
        ItemIndex.load(tmp_path / "nothing-here")


def test_auto_picks_flat_for_small_and_ivf_for_large_catalogues(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ann, "AUTO_FLAT_MAX", 500)
    small, _ = clustered(500, 1, seed=4)
    large, _ = clustered(501, 1, seed=4)
    assert ItemIndex.build(small, "auto").kind == "flat"
    large_index = ItemIndex.build(large, "auto")
    assert large_index.kind == "ivf" and large_index.info.calibration_queries == "item vectors"
    assert large_index.info.calibrated_recall >= 0.99


def test_bad_inputs_raise_value_errors(catalogue: tuple[np.ndarray, ...]) -> None:
    table, _, queries = catalogue
    index = ItemIndex.build(table, "flat")
    with pytest.raises(ValueError, match="kind"):
        ItemIndex.build(table, "lsh")
    with pytest.raises(ValueError, match=r"queries must be \[B, 16\]"):
        index.search(queries[:, :8], 5)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((1, 16), np.nan, dtype=np.float32), 5)
    with pytest.raises(ValueError, match="k must be"):
        index.search(queries, 0)
    with pytest.raises(ValueError, match="exclude has"):
        index.search(queries[:2], 5, exclude=[None])
    with pytest.raises(ValueError, match="row 0 = PAD"):
        ItemIndex.build(table[0], "flat")


def test_importing_the_module_does_not_import_faiss() -> None:
    import subprocess
    import sys

    code = "import sys, llmrec.index, llmrec.index.ann; assert 'faiss' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# ---- through the Recommender, the service and the CLI ----------------------------------------------------------
TINY_MODEL = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}


@pytest.fixture
def artifact(tiny_prepared: PreparedDataset, tmp_path: Path) -> Path:
    from llmrec.training import build_model, save_artifact

    model = build_model(tiny_prepared, TINY_MODEL, seed=0)[0].eval()
    return save_artifact(model, tiny_prepared, tmp_path / "model")


def _as_rows(recs: list[list[Any]]) -> list[list[tuple[str, float]]]:
    return [[(r.item_id, round(r.score, 5)) for r in row] for row in recs]


@pytest.mark.parametrize("options", [{}, {"exclude_seen": True}, {"diversity": 0.5}, {"k": 60}])
def test_recommender_with_a_flat_index_gives_the_full_scoring_top_k(artifact: Path, options: dict[str, Any]) -> None:
    from llmrec.recommend import Recommender

    full = Recommender.load(artifact)
    assert full.ann is None  # ~50 items: far below the threshold
    indexed = Recommender.load(artifact, ann="flat")
    assert indexed.ann is not None and indexed.ann.kind == "flat"
    histories = list(full.histories.values())
    k = options.pop("k", 10)
    got = indexed.recommend_batch(histories, k, **options)
    want = full.recommend_batch(histories, k, **options)
    assert _as_rows(got) == _as_rows(want)
    assert [[r.rank for r in row] for row in got] == [[r.rank for r in row] for row in want]


def test_recommender_auto_uses_an_index_only_above_the_threshold(artifact: Path) -> None:
    from llmrec.recommend import Recommender

    rec = Recommender.load(artifact)
    assert rec.use_ann("auto", threshold=rec.n_items) is None  # not above the threshold
    index = rec.use_ann("auto", threshold=rec.n_items - 1)
    assert index is not None and index.kind == "flat" and rec.ann is index
    assert rec.use_ann("off") is None and rec.ann is None
    with pytest.raises(ValueError, match="ann must be one of"):
        rec.use_ann("faiss")


def test_recommender_calibrates_on_user_hidden_states_and_reuses_a_saved_index(artifact: Path) -> None:
    from llmrec.recommend import ANN_DIR, Recommender

    rec = Recommender.load(artifact, ann="hnsw")
    assert rec.ann is not None and rec.ann.info.calibration_queries == "given"
    assert rec.ann.info.n_calibration_queries == len(rec.histories)
    rec.ann.save(artifact / ANN_DIR)
    again = Recommender.load(artifact, ann="auto", ann_threshold=10)
    assert again.ann is not None and again.ann.info == rec.ann.info  # loaded, not rebuilt
    assert Recommender.load(artifact, ann="ivf").ann.kind == "ivf"  # type: ignore[union-attr]  # another kind: built


def test_recommender_rebuilds_a_stale_saved_index(artifact: Path, tmp_path: Path) -> None:
    from llmrec.artifact import write_manifest
    from llmrec.recommend import ANN_DIR, Recommender

    rec = Recommender.load(artifact, ann="hnsw")
    assert rec.ann is not None
    rec.ann.save(artifact / ANN_DIR)
    with torch.no_grad():
        rec.model.item_emb.weight[3] += 1.0  # type: ignore[union-attr]
    rec.model.save_pretrained(artifact)  # type: ignore[union-attr]  # new weights, old index on disk
    write_manifest(artifact)  # as llmrec's own writers do after changing a file
    fresh = Recommender.load(artifact, ann="hnsw")
    assert fresh.ann is not None and fresh.ann.info.table_sha256 != rec.ann.info.table_sha256


def test_recommender_auto_without_faiss_scores_every_item(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from llmrec.recommend import Recommender

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else find_spec(name, *a))
    assert Recommender.load(artifact, ann="auto", ann_threshold=1).ann is None


def test_recommender_falls_back_to_full_scoring_for_adapt(artifact: Path) -> None:
    from llmrec.recommend import Recommender

    rec = Recommender.load(artifact, ann="flat")
    with pytest.raises(ValueError, match="adapter"):  # the full-scoring path's own message: no index involved
        rec.recommend_batch([np.array([1, 2])], 5, adapt=True)


def test_recommender_refuses_an_index_for_a_model_without_item_embeddings(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.models.baselines import MostPopular
    from llmrec.recommend import Recommender
    from llmrec.training import save_artifact

    path = save_artifact(MostPopular.fit(tiny_prepared.train_sequences(), tiny_prepared.n_items), tiny_prepared, tmp_path / "pop")
    assert Recommender.load(path, ann="auto", ann_threshold=1).ann is None  # auto: quietly off
    with pytest.raises(ValueError, match="next-item LM"):
        Recommender.load(path, ann="flat")


def _recommender(path: Path, ann_mode: str) -> Recommender:
    from llmrec.recommend import Recommender

    return Recommender.load(path, ann=ann_mode)


def test_service_answers_through_the_index_like_full_scoring(artifact: Path) -> None:
    from fastapi.testclient import TestClient

    from llmrec.serve import create_app

    bodies = [
        {"user_id": "u03", "k": 5},
        {"history": ["4", "5", "9"], "k": 7, "exclude_seen": True},
        {"history": ["4", "5"], "k": 5, "diversity": 0.3},
    ]

    def ids(found: list[dict[str, Any]]) -> list[list[str]]:
        return [[item["item_id"] for item in answer["items"]] for answer in found]

    def scores(found: list[dict[str, Any]]) -> list[float]:
        return [item["score"] for answer in found for item in answer["items"]]

    answers = {}
    for mode in ("off", "hnsw", "flat"):
        with TestClient(create_app(_recommender(artifact, mode))) as client:
            answers[mode] = [client.post("/v1/recommend", json=b).json() for b in bodies]
            batch = client.post("/v1/recommend/batch", json={"requests": bodies})
            assert batch.status_code == 200
            assert ids(batch.json()["results"]) == ids(answers[mode])  # one forward pass for all: same answers
            assert scores(batch.json()["results"]) == pytest.approx(scores(answers[mode]), abs=1e-5)
            bad = client.post("/v1/recommend", json={"history": ["4"], "k": 0})
            assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
            unknown = client.post("/v1/recommend", json={"history": ["no-such-item"], "strict": True})
            assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_ids")
            lenient = client.post("/v1/recommend", json={"history": ["no-such-item"]}).json()  # the default
            assert lenient["fallback"] == "popular" and lenient["ignored_items"] == ["no-such-item"]
    assert ids(answers["flat"]) == ids(answers["off"])
    assert scores(answers["flat"]) == pytest.approx(scores(answers["off"]), abs=1e-5)
    assert "4" not in ids(answers["hnsw"])[1] and len(ids(answers["hnsw"])[1]) == 7


def test_cli_build_index_then_serve_with_it(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from llmrec.cli import app

    runner = CliRunner()
    built = runner.invoke(app, ["build-index", "--model", str(artifact), "--kind", "ivf", "--threads", "1"])
    assert built.exit_code == 0, built.output
    assert "ivf index of " in built.stderr
    assert json.loads((artifact / "ann" / "index.json").read_text())["kind"] == "ivf"

    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: calls.append(target))
    served = runner.invoke(app, ["serve", "--model", str(artifact), "--ann", "auto", "--ann-threshold", "10"])
    assert served.exit_code == 0, served.output
    assert "retrieval through ItemIndex(kind='ivf'" in served.stderr  # the saved index, loaded
    refused = runner.invoke(app, ["serve", "--model", str(artifact), "--ann", "exact"])
    assert refused.exit_code == 2 and "--ann must be auto, off, flat, ivf or hnsw" in refused.stderr
    assert len(calls) == 1
