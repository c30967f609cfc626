"""The HTTP service: ``create_app(predictor)`` -> a FastAPI app (the ``serve`` extra).

``csnet serve`` only parses its options and runs this app with uvicorn on 127.0.0.1.
"""
from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from csnet.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'csnet.serve' has no attribute {name!r}")
