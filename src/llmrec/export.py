"""A slim serving artifact, and optionally an ONNX graph of the scorer.

    export_artifact("runs/model", "deploy/model", onnx=True)

The export holds what `Recommender.load` reads (config, weights, catalogue, histories, dataset description, a
saved ANN index) and leaves out ``train/``: optimizer state, checkpoints and training logs, most of an
artifact's size. Only llmrec's own files are copied (`llmrec.artifact.artifact_files`: those the manifest lists),
never another file kept in the model folder, and symbolic links are not followed. It loads with
`Recommender.load` and gives the same recommendations as the original; its manifest is written anew, last.

With ``onnx=True`` (next-item LM only; needs the ``export`` extra: onnx, onnxscript, onnxruntime) it also writes
``scorer.onnx``: input ``item_ids`` int64 [B, max_seq_len], histories left-padded with 0 and cut to the most
recent max_seq_len items; output ``scores`` float32 [B, n_items + 1], column 0 (padding) = -inf, as
`NextItemLM.score`. ``onnx.json`` records these names and sizes. The graph comes from torch's exporter
(``torch.onnx.export(dynamo=True)``) and is checked against PyTorch's scores on stored histories before it is
kept (`check_onnx`). Beside it go ``onnx_items.json`` (the raw item ids in the graph's column order) and
``onnx_scorer.py``, a copy of `llmrec.onnx_scorer` (stdlib + numpy + onnxruntime): raw ids in, padded and masked,
top-k raw ids out, so serving with onnxruntime needs neither llmrec, torch, nor glue written by hand. It applies the
Recommender's rules (availability, filters, the seen-item rule, unknown ids, the popularity fallback) from
``onnx_rules.json`` with ``onnx_filters.py``, a copy of `llmrec.filters`. The
exporter's own warnings and progress lines are silenced around the export call only.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from llmrec.artifact import ANN_DIR, artifact_files, open_artifact, output_errors, write_manifest
from llmrec.atomic import atomic_directory

if TYPE_CHECKING:
    from llmrec.models.base import OnnxExportable

__all__ = ["ONNX_FILE", "check_onnx", "export_artifact"]

ONNX_FILE = "scorer.onnx"
ONNX_TOLERANCE = 1e-4  # largest |ONNX - PyTorch| score difference accepted (float32, different kernels)


def export_artifact(
    model_dir: str | Path, out: str | Path, *, onnx: bool = False, text_embeddings: bool | None = None
) -> dict[str, Any]:
    """Copy artifact `model_dir` without its training state to `out` (atomically); with `onnx`, add the scorer
    graph. Returns a summary: files, bytes before and after, the ONNX check's largest difference, and what became
    of the catalogue's text embeddings (``text_embeddings``: kept | stored | copied | none | not installed).

    text_embeddings: store the catalogue's text embeddings for queries (`llmrec.index.text_store`) unless the
    artifact already holds them for the packaged text encoder. None (default): when the text encoder is installed;
    True: a ValueError when it is not; False: copy what the artifact holds."""
    src, out = open_artifact(model_dir).path, Path(out)  # no config.json: "not a model directory"
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise ValueError(f"--out {out}: must be outside the model folder {src}")
    summary: dict[str, Any] = {"bytes_before": _size(src)}
    with output_errors(out), atomic_directory(out, kind="model") as tmp:
        for path in artifact_files(src):  # llmrec's own files only: never a user's file kept beside them
            shutil.copy2(path, tmp / path.name)
        _copy_index(src / ANN_DIR, tmp / ANN_DIR)
        write_manifest(tmp)  # the copy is an artifact that the steps below can open
        summary["text_embeddings"] = _store_text_embeddings(tmp, text_embeddings)
        if onnx:
            summary["onnx_max_abs_diff"] = write_onnx(tmp, tmp / ONNX_FILE)
        write_manifest(tmp)  # last: what the copy holds now
    summary["bytes_after"] = _size(out)
    summary["files"] = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return summary


def _copy_index(src: Path, dst: Path) -> None:
    """Copy the saved index folder `src` (when it is a real folder) file by file; symbolic links, to files or
    folders, are not followed into the serving copy."""
    if src.is_symlink() or not src.is_dir():
        return
    for root, dirs, files in os.walk(src, followlinks=False):
        here = Path(root)
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        (dst / here.relative_to(src)).mkdir(parents=True, exist_ok=True)
        for name in files:
            if (here / name).is_file() and not (here / name).is_symlink():
                shutil.copy2(here / name, dst / here.relative_to(src) / name)


def _store_text_embeddings(folder: Path, wanted: bool | None) -> str:
    """Make sure `folder` stores its catalogue's text embeddings for the packaged encoder (see `export_artifact`)."""
    from llmrec.artifact import text_cache_dir
    from llmrec.index.text_encoder import default_encoder, default_encoder_available, item_texts
    from llmrec.index.text_store import catalogue_embeddings

    art = open_artifact(folder)
    if wanted is False:
        return "copied" if art.has_text_embeddings else "none"
    if not default_encoder_available():
        if wanted:
            raise ValueError("--text-embeddings needs the text encoder: pip install 'llmrec[text]'")
        return "not installed"
    encoder = default_encoder()
    if art.text_embeddings(encoder.name, item_texts(art.items, art.domain))[0] is not None:
        return "kept"
    catalogue_embeddings(folder, art.items, art.domain, encoder, text_cache_dir(), store=True)
    return "stored"


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_onnx(model_dir: Path, path: Path) -> float:
    """Export the next-item LM of `model_dir` to `path` and check it (`check_onnx`); returns the largest difference."""
    from llmrec.models.base import OnnxExportable

    model = open_artifact(model_dir).model()
    if not isinstance(model, OnnxExportable):
        raise ValueError(f"--onnx: {model_dir} holds a {type(model).__name__}, which cannot be exported to ONNX")
    try:  # the exporter needs onnxscript, the check onnxruntime: a clear message beats their ImportError
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ValueError(f"--onnx needs the export extra (pip install 'llmrec[export]'): {e}") from None
    L = model.max_seq_len
    program = onnx_program(model)
    with _quiet_exporter():
        program.save(str(path))
    (path.parent / "onnx.json").write_text(
        json.dumps(
            {
                "file": path.name,
                "input": {"name": "item_ids", "dtype": "int64", "shape": ["batch", L], "padding": "left, 0"},
                "output": {"name": "scores", "dtype": "float32", "shape": ["batch", model.n_items + 1]},
                "max_seq_len": L,
            },
            indent=2,
        )
    )
    _write_serving_helper(model_dir, path.parent)
    return check_onnx(model_dir, path)


def onnx_program(model: OnnxExportable) -> Any:
    """torch's ONNX program of `model`'s scorer: item_ids [batch, max_seq_len] (int64, left-padded) -> scores
    [batch, V+1]; the exporter's own notes silenced, a failure one ValueError line."""
    scorer = model.onnx_module().eval()
    example = torch.zeros(2, model.max_seq_len, dtype=torch.long)
    example[:, -1] = 1
    with _quiet_exporter(), torch.no_grad():
        try:
            program = torch.onnx.export(
                scorer,
                (example,),
                input_names=["item_ids"],
                output_names=["scores"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                dynamo=True,
                verbose=False,
            )
        except Exception as e:  # noqa: BLE001 - an operator the exporter cannot convert: one line, not its report
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            kind = getattr(model, "model_type", type(model).__name__)
            raise ValueError(f"--onnx: torch's ONNX exporter could not convert this {kind} model ({first})") from None
    assert program is not None
    return program


def _write_serving_helper(model_dir: Path, folder: Path) -> None:
    """Into `folder`: onnx_items.json (raw ids in the graph's order), onnx_rules.json (what the serving rules need),
    onnx_scorer.py (`llmrec.onnx_scorer`) and onnx_filters.py (`llmrec.filters`, the rules it applies)."""
    from llmrec import filters, onnx_scorer
    from llmrec.eval.seen_rule import served_exclude_seen
    from llmrec.retrieval import popularity_scores

    art = open_artifact(model_dir)
    items = art.items.sort("item_idx")
    raw_ids = [str(i) for i in items["item"].to_list()]
    (folder / onnx_scorer.ITEMS_FILE).write_text(json.dumps(raw_ids), encoding="utf-8")
    histories = art.histories
    rules = {
        "exclude_seen": served_exclude_seen(art.training),  # the model's seen-item rule (`llmrec.eval.seen_rule`)
        "categories": items["categories"].to_list() if "categories" in items.columns else None,
        "available": items["available"].to_list() if "available" in items.columns else None,
        # the empty history's ranking (`Recommender.recommend_batch`), None without stored histories
        "popularity": popularity_scores(histories, len(raw_ids))[1:].tolist() if histories else None,
        "histories": {u: h.tolist() for u, h in histories.items()},  # the graph's item ids, oldest first
        # items a cold-item split held out of training: new items for `new_items` (`Recommender.new_item_mask`)
        "is_cold": items["is_cold"].fill_null(False).to_list() if "is_cold" in items.columns else None,
    }
    (folder / onnx_scorer.RULES_FILE).write_text(json.dumps(rules), encoding="utf-8")
    shutil.copyfile(onnx_scorer.__file__, folder / "onnx_scorer.py")
    shutil.copyfile(filters.__file__, folder / onnx_scorer.FILTERS_FILE)


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence torch.onnx / onnxscript around the export call only: their warnings, log records and progress lines
    (printed to stdout and stderr) are notes for their developers, not for the user of `llmrec export`."""
    import contextlib
    import io
    import logging

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def check_onnx(model_dir: Path, path: Path, *, n_histories: int = 64) -> float:
    """Largest |ONNX - PyTorch| score over up to `n_histories` stored histories (and a one-item one); raises
    ValueError above ONNX_TOLERANCE. -inf (the padding column) must match exactly."""
    import onnxruntime as ort

    from llmrec.recommend import Recommender

    rec = Recommender.load(model_dir, ann="off", device="cpu")  # compared with onnxruntime's CPU scores
    histories = [rec.histories[u] for u in sorted(rec.histories)[:n_histories]] or [np.array([1], dtype=np.int64)]
    histories.append(np.array([1], dtype=np.int64))
    ids = rec._padded(histories).cpu()  # [B, L]
    with torch.no_grad():
        expected = rec.model.score(ids).numpy()  # [B, V+1]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["scores"], {"item_ids": ids.numpy().astype(np.int64)})[0]
    if got.shape != expected.shape or not np.array_equal(np.isinf(got), np.isinf(expected)):
        raise ValueError(f"{path}: the ONNX scores do not have PyTorch's shape or -inf pattern")
    finite = np.isfinite(expected)
    diff = float(np.abs(got[finite] - expected[finite]).max()) if finite.any() else 0.0
    if diff > ONNX_TOLERANCE:
        raise ValueError(f"{path}: ONNX scores differ from PyTorch's by up to {diff:.2e} (> {ONNX_TOLERANCE:.0e})")
    return diff
