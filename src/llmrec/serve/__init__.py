"""The HTTP service: ``create_app(recommender)`` (FastAPI); ``llmrec serve --model DIR`` runs it with uvicorn.

Importing this package imports FastAPI and pydantic but neither torch nor a model: the model is an argument.
"""

from llmrec.serve.app import create_app

__all__ = ["create_app"]
