# llmrec, CPU only: serves a trained model over HTTP (demo page at /, API under /v1, docs at /docs).
#
#   docker build -t llmrec .
#   docker run --rm -p 8000:8000 -v "$PWD/runs/shop/model:/model:ro" llmrec
#
# The model folder is mounted read-only at /model; any other llmrec command runs with
#   docker run --rm -v "$PWD/runs:/runs" llmrec llmrec evaluate --model /runs/shop/model
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    LLMREC_CACHE_DIR=/home/llmrec/.cache/llmrec

WORKDIR /opt/llmrec
COPY requirements.txt pyproject.toml README.md ./
COPY src ./src

# torch comes from PyTorch's CPU index at the version requirements.txt pins (PyPI's Linux wheel pulls CUDA);
# the rest of requirements.txt is installed as pinned, without the test tools.
RUN set -eux; \
    torch_pin="$(grep -E '^torch==' requirements.txt)"; \
    pip install --index-url https://download.pytorch.org/whl/cpu "$torch_pin"; \
    grep -v -E '^(pytest|pytest-timeout|hypothesis|schemathesis|playwright)==' requirements.txt > /tmp/runtime.txt; \
    pip install -r /tmp/runtime.txt; \
    pip install --no-deps .; \
    rm /tmp/runtime.txt

RUN useradd --create-home --uid 10001 llmrec
USER llmrec
WORKDIR /home/llmrec

EXPOSE 8000
# 0.0.0.0 inside the container only, so that `docker run -p` can reach the service; outside the container
# `llmrec serve` keeps its 127.0.0.1 default. Set an API key for anything beyond your own machine:
#   docker run -e LLMREC_API_KEY=... llmrec llmrec serve --model /model --host 0.0.0.0 --api-key-env LLMREC_API_KEY
CMD ["llmrec", "serve", "--model", "/model", "--host", "0.0.0.0", "--port", "8000"]
