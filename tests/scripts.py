"""The one place tests import the repository's scripts (``tools/``, ``benchmarks/``: files to run, not a package)."""
from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.shared_data import REPO_ROOT


def load_script(relative: str) -> ModuleType:
    """``<repo>/<relative>`` (e.g. ``tools/ablate.py``) as a module, so a test can call its ``main(argv)``."""
    path = REPO_ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
