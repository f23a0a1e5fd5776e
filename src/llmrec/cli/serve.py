"""Serving commands: ``llmrec serve`` (FastAPI + uvicorn over a model artifact) and ``llmrec build-index`` (the
approximate-retrieval index, saved once). Both are thin doors over `llmrec.serve.launch`.

With ``--workers N`` uvicorn imports the app in each worker process by name (``llmrec.cli:_serve_app_from_env``),
so the settings travel there as JSON in the environment variable ``SERVE_SETTINGS_ENV``; the API key itself never
goes in it, only the name of the variable that holds it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llmrec.cli.common import DEVICE_HELP, Threads, err_console, say, use_threads, user_errors

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["SERVE_SETTINGS_ENV", "app_from_env", "build_index_cmd", "serve_cmd"]

SERVE_SETTINGS_ENV = "LLMREC_SERVE_SETTINGS"
WORKER_FACTORY = "llmrec.cli:_serve_app_from_env"  # what uvicorn imports in each worker process
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
ANN_MODES = ("auto", "off", "flat", "ivf", "hnsw")

_ANN_HELP = (
    "Top-k through a FAISS index (docs/scaling.md): auto = above --ann-threshold items; off = score every item; "
    "flat (exact) | ivf | hnsw = that index. A saved one in <model>/ann (llmrec build-index) is used when it matches."
)
_ANN_THRESHOLD_HELP = "--ann auto uses an index above this many items."


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process (``--workers`` > 1), from the settings the parent process left."""
    from llmrec.serve.launch import ServeSettings, build_app

    return build_app(ServeSettings.from_json(os.environ[SERVE_SETTINGS_ENV]))


def build_index_cmd(
    model: Annotated[Path, typer.Option(help="Model artifact folder (a next-item LM); the index goes to <model>/ann.")],
    kind: Annotated[str, typer.Option(help="auto (flat up to 100,000 items, else ivf) | flat | ivf | hnsw.")] = "auto",
    target_recall: Annotated[
        float, typer.Option(help="Recall@10 against exact search that the search parameter is calibrated to.")
    ] = 0.99,
    threads: Threads = 0,
) -> None:
    """Build the approximate-retrieval index of a large catalogue once, so that `serve --ann` loads it at start."""
    with user_errors():
        use_threads(threads)  # torch; build_index sets FAISS's
        from llmrec.artifact import ann_dir
        from llmrec.outputs import claim_folder
        from llmrec.serve.launch import build_index

        # <model>/ann is checked before any work; the lock is the model's, as the index is written into it
        with claim_folder(ann_dir(model), "index", option="--model", lock=model):
            info = build_index(model, kind, target_recall=target_recall, threads=threads)
    detail = {"ivf": f"nlist {info.nlist}, nprobe {info.nprobe}", "hnsw": f"M {info.hnsw_m}, efSearch {info.ef_search}"}
    recall = (
        f"; recall@{info.calibration_k} {info.calibrated_recall:.3f} on {info.n_calibration_queries} queries"
        if info.target_recall
        else ""
    )
    say(
        f"{info.kind} index of {info.n_items:,} items ({detail.get(info.kind, 'exact')}{recall}) "
        f"in {info.build_seconds:.1f} s -> {ann_dir(model)}",
        err=True,
    )


def serve_cmd(
    model: Annotated[Path, typer.Option(help="Model artifact folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on; the default keeps the service on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes, each with its own copy of the model.")] = 1,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding an API key; /v1 routes then need it as X-API-Key.")
    ] = None,
    max_batch: Annotated[int, typer.Option(help="Most requests in one forward pass.")] = 64,
    max_wait_ms: Annotated[float, typer.Option(help="Longest wait for more requests to join a batch.")] = 2.0,
    max_body_bytes: Annotated[int, typer.Option(help="Larger request bodies get 413.")] = 1 << 20,
    graceful_timeout: Annotated[int, typer.Option(help="Seconds in-flight requests get to finish on SIGTERM/Ctrl-C.")] = 30,
    access_log: Annotated[bool, typer.Option(help="Log one line per request.")] = True,
    ann: Annotated[str, typer.Option(help=_ANN_HELP)] = "auto",
    ann_threshold: Annotated[int, typer.Option(help=_ANN_THRESHOLD_HELP)] = 200_000,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    queries: Annotated[
        bool | None,
        typer.Option(
            "--queries/--no-queries",
            help="Accept natural-language queries; --queries loads the text encoder before /readyz says ready and "
            "needs the text extra. Default: on when the text extra is installed (encoder loaded at start-up only "
            "for a model that reads item text), else off.",
        ),
    ] = None,
    max_diverse_k: Annotated[int, typer.Option(help="Largest k of a request with diversity (422 above).")] = 100,
    max_explain_k: Annotated[int, typer.Option(help="Largest k of a request with explain (422 above).")] = 100,
    max_explained: Annotated[int, typer.Option(help="Most requests with explain in one batch call.")] = 16,
    max_option_requests: Annotated[int, typer.Option(help="Most requests with any option in one batch call.")] = 32,
    max_groups: Annotated[int, typer.Option(help="Most distinct option groups (query, diversity, adapt) in one batch call.")] = 8,
    options_queue: Annotated[int, typer.Option(help="Most requests with options queued at once (503 above).")] = 256,
    options_timeout: Annotated[float, typer.Option(help="Seconds a request with options may take (504 after).")] = 10.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds a request body may take to arrive (408 after).")] = 30.0,
    header_timeout: Annotated[float, typer.Option(help="Seconds a connection may take to send a request head.")] = 10.0,
    keep_alive_timeout: Annotated[int, typer.Option(help="Seconds an idle keep-alive connection stays open.")] = 5,
    max_connections: Annotated[
        int, typer.Option(help="Most open connections (503 above); 0 = from the file-descriptor limit.")
    ] = 0,
    max_head_bytes: Annotated[
        int, typer.Option(help="Largest request head: request line and header lines, in bytes (431 above).")
    ] = 32 * 1024,
    max_header_lines: Annotated[int, typer.Option(help="Most header lines in one request (431 above).")] = 100,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            help="CPU threads for torch in each of the service's two model threads; 0 = the default, 1 (requests "
            "are batched instead; more threads help large catalogues).",
        ),
    ] = 0,
    llm_text: Annotated[
        bool,
        typer.Option(
            "--llm-text/--no-llm-text",
            help="Let requests with explain ask for reasons written by the LLM (llm_text; SmolLM2-135M-Instruct, "
            "loaded at start-up, about 1-2 s per item on a CPU). Default: off.",
        ),
    ] = False,
) -> None:
    """Serve recommendations over HTTP (FastAPI + uvicorn): /v1/recommend, /metrics, /docs, a demo page at /."""
    with user_errors():
        from llmrec.config import check_range

        check_range("--threads", threads, 0, 4096)
        check_range("--port", port, 0, 65535)  # 0: a free port chosen by the system
        check_range("--workers", workers, 1, 1024)
        check_range("--max-batch", max_batch, 1, 1 << 16)
        check_range("--max-wait-ms", max_wait_ms, 0.0, 60_000.0)
        check_range("--max-body-bytes", max_body_bytes, 1, 1 << 40)
        check_range("--graceful-timeout", graceful_timeout, 0, 86_400)
        check_range("--ann-threshold", ann_threshold, 0, 2**31 - 1)
        if ann not in ANN_MODES:
            raise ValueError(f"--ann must be auto, off, flat, ivf or hnsw; got {ann!r}")
        from llmrec.serve.launch import ServeSettings, prepare_serving

        settings = ServeSettings(
            model=str(model.resolve()) if workers > 1 else str(model),
            ann=ann,
            ann_threshold=ann_threshold,
            device=device,
            api_key_env=api_key_env,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_body_bytes=max_body_bytes,
            queries=queries,
            body_timeout=body_timeout,
            max_diverse_k=max_diverse_k,
            max_explain_k=max_explain_k,
            max_explained=max_explained,
            max_option_requests=max_option_requests,
            max_groups=max_groups,
            options_queue=options_queue,
            options_timeout=options_timeout,
            threads=threads,
            llm_text=llm_text,
        )
        from llmrec.serve.connections import check_port_free, uvicorn_guards

        guards = uvicorn_guards(
            header_timeout,
            keep_alive_timeout,
            max_connections,
            workers=workers,
            max_head_bytes=max_head_bytes,
            max_header_lines=max_header_lines,
        )
        prepared = prepare_serving(settings, workers=workers)  # a bad folder fails here, before any port is bound
        check_port_free(host, port)  # a port in use: one line and exit 2, before "serving at"
    for note in prepared.notes:
        say(note, err=True)
    if prepared.app is None:  # each worker loads its own model
        os.environ[SERVE_SETTINGS_ENV] = prepared.settings.to_json()
    if host not in _LOOPBACK and api_key_env is None:
        err_console.print(f"warning: listening on {host} without an API key (see --api-key-env)", markup=False)
    say(f"serving {model} at http://{host}:{port}/ (demo page; API under /v1, docs at /docs)", err=True)
    import uvicorn

    uvicorn.run(
        prepared.app if prepared.app is not None else WORKER_FACTORY,
        host=host,
        port=port,
        workers=workers,
        factory=workers > 1,
        timeout_graceful_shutdown=graceful_timeout,
        access_log=access_log,
        **guards,
    )
