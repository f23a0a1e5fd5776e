"""The Dockerfile, read as text (no docker here): slim Python 3.11, CPU torch at the pinned version, no test tools,
a non-root user, and `llmrec serve` on 0.0.0.0 only inside the container."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_serves_as_a_non_root_user_with_cpu_torch() -> None:
    text = (ROOT / "Dockerfile").read_text()
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    assert "--index-url https://download.pytorch.org/whl/cpu" in text and "grep -E '^torch==' requirements.txt" in text
    assert any(line.startswith("torch==") for line in requirements)  # what the build greps for
    excluded = re.search(r"grep -v -E '\^\(([^)]*)\)==' requirements\.txt", text)
    assert excluded is not None
    pinned = {line.split("==")[0] for line in requirements if "==" in line}
    assert set(excluded.group(1).split("|")) <= pinned  # every test tool it leaves out is really pinned there
    user = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd is not None
    assert json.loads(cmd.group(1)) == ["llmrec", "serve", "--model", "/model", "--host", "0.0.0.0", "--port", "8000"]
    assert text.index("USER ") < text.index("CMD ")
    assert {"runs", ".venv", ".git"} <= set((ROOT / ".dockerignore").read_text().split())
