"""The one place tests find ``../shared`` (env ``CSNET_SHARED``, default ``<repo>/../shared``).

Locally, tests that need it skip when it is absent; in CI (``CI=true``) a missing folder fails loudly.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    return Path(os.environ.get("CSNET_SHARED", REPO_ROOT.parent / "shared")).resolve()


def require_shared(*relative: str) -> Path:
    """Path to ``../shared/<relative>``; skip the test locally if it is missing, fail in CI."""
    path = shared_root().joinpath(*relative)
    if not path.exists():
        message = f"shared data not found: {path} (set CSNET_SHARED)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path
