"""The service and text queries: /readyz waits for the encoder (loaded at start when the artifact stores its
catalogue's text embeddings), and a plain request is answered while a query is still being encoded.

The encoder blocks on an event instead of being slow, so nothing here depends on timings."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np

if TYPE_CHECKING:
    from llmrec.recommend import Recommender


class GatedEncoder:
    """Hash vectors; while `gate` is closed, an encode call signals `entered` and waits (an encoder mid-load)."""

    name = "gated-hash-8"
    dim = 8

    def __init__(self) -> None:
        self.entered, self.gate = threading.Event(), threading.Event()
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        self.calls.append(list(texts))
        out = np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8) for t in texts]) + 1.0
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def close_gate(self) -> None:
        self.entered.clear()
        self.gate.clear()


def test_ready_after_the_encoder_and_plain_requests_pass_a_query_being_encoded(
    recommender: Recommender, tiny_artifact: Path
) -> None:
    from llmrec.index.text_encoder import encode_items, item_texts
    from llmrec.index.text_store import write_item_text
    from llmrec.serve import create_app

    items, domain = recommender.items, str(recommender.meta.get("domain") or "generic")
    encoder = GatedEncoder()
    encoder.gate.set()
    write_item_text(tiny_artifact, encode_items(items, domain, encoder, progress=False), encoder.name, item_texts(items, domain))
    encoder.calls = []
    encoder.close_gate()
    recommender.text_encoder = encoder
    app = create_app(recommender)  # queries on (default): the stored embeddings make the encoder load at start

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            lifespan = app.router.lifespan_context(app)
            starting = asyncio.create_task(lifespan.__aenter__())
            assert await asyncio.to_thread(encoder.entered.wait, 30)  # start-up is loading the encoder
            assert (await client.get("/readyz")).status_code == 503  # not ready yet; the event loop still answers
            encoder.gate.set()
            await starting
            assert (await client.get("/readyz")).status_code == 200
            assert encoder.calls == [["warm-up"]]  # the catalogue came from the artifact

            encoder.close_gate()
            query = asyncio.create_task(client.post("/v1/recommend", json={"user_id": "u05", "k": 3, "query": "jazz"}))
            assert await asyncio.to_thread(encoder.entered.wait, 30)  # the query is being encoded
            plain = await client.post("/v1/recommend", json={"user_id": "u05", "k": 3})
            assert plain.status_code == 200 and not query.done()
            encoder.gate.set()
            assert (await query).status_code == 200
            assert encoder.calls[-1] == ["jazz"]
            await lifespan.__aexit__(None, None, None)

    asyncio.run(scenario())
