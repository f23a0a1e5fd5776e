"""The demo page on a trained model in a real browser: a user's history, the recommendations, their reasons and the
LLM's text, checked in headless Chromium and saved as a screenshot (docs/trust.md).

Usage: python benchmarks/demo_page.py MODEL_DIR OUT.png [--user U] [--k 3] [--no-llm-text]

Serves MODEL_DIR with `llmrec.serve.create_app(..., llm_text=True)` under uvicorn on a free local port, opens the
page in Debian's Chromium (scripts/install-browser) through Playwright, asks for the user's top k with
explanations and reasons written by the LLM, and checks what the page shows against `Recommender.explain` with the
same writer: the titles, each reason's text and who wrote it, and the user's history beside the list. Exits 1
with the first difference; prints the page's rows and saves the screenshot otherwise.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from llmrec.recommend import Recommender
from llmrec.serve import create_app

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _serve(rec: Recommender, llm_text: bool) -> str:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(rec, llm_text=llm_text), log_level="warning", access_log=False))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 120  # start-up loads the LLM
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("error: the service did not start within 120 s")
        time.sleep(0.1)
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--user", default=None, help="default: the first user with at least 5 items")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--no-llm-text", action="store_true")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    llm_text = not a.no_llm_text
    rec = Recommender.load(a.model, device="cpu")
    user = a.user or next(u for u, h in rec.histories.items() if len(h) >= 5)
    base = _serve(rec, llm_text)
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=FLAGS, headless=True)
        context.set_default_timeout(120_000)
        page = context.new_page()
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(base + "/")
        page.wait_for_function("document.getElementById('model-info').textContent.startsWith('model ready')")
        page.fill("#k", str(a.k))
        if llm_text:
            page.wait_for_selector("#llm-text-box:not([hidden])")
            page.check("#llm-text")
        page.fill("#user-id", user)
        t = time.perf_counter()
        page.click("#recommend-user")
        page.wait_for_selector("#results:not([hidden]) tbody tr")
        page.wait_for_selector("#history:not([hidden]) li")
        seconds = time.perf_counter() - t
        expected = rec.explain(user=user, k=a.k, llm_text=llm_text)
        who = [
            ""
            if not llm_text
            else " (written by the LLM)"
            if e.written_by == "llm"
            else f" (the template's; the LLM's text was not used: {e.fallback})"
            for e in expected
        ]
        want = [(e.recommendation.title or "") + e.text + w for e, w in zip(expected, who, strict=True)]
        shown = page.locator("#results tbody td.title").all_text_contents()
        history = page.locator("#history-list li").all_text_contents()
        recent = rec.user_history(user)[::-1][:20]
        want_history = [f"{rec.titles[i - 1]} [{rec.raw_ids[i - 1]}]" for i in recent]
        page.screenshot(path=str(a.out), full_page=True)
        context.close()
    if shown != want or history != want_history:
        print(f"the page differs from Recommender.explain:\n  shown {shown}\n  want  {want}", file=sys.stderr)
        sys.exit(1)
    print(f"user {user}: {a.k} items with reasons, answered in {seconds:.1f} s; screenshot {a.out}")
    for row in shown:
        print("  " + row)


if __name__ == "__main__":
    main()
