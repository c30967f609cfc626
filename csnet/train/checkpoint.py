"""Training-state checkpoints that load without executing code.

The state (model, its EMA when on, optimizer, scheduler, grad scaler, RNG states, epoch, best score) is written with
``torch.save`` as plain containers of tensors, numbers and strings only, and read back with
``torch.load(weights_only=True)``, whose unpickler refuses anything else. Objects whose ``state_dict``
holds other types (MultiStepLR's ``Counter``, numpy's RNG tuple) are converted to plain ones here.
Every write is atomic (temp file + rename), so a run killed mid-write keeps the previous checkpoint.
"""
from __future__ import annotations

import collections
import os
import random
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from csnet.io.atomic import atomic_path

__all__ = ["STATE_FILE", "CheckpointError", "save_state", "load_state", "rng_state", "set_rng_state",
           "scheduler_state", "load_scheduler_state"]

STATE_FILE = "last_state.pt"
# Version 2 adds ``progress`` (a state written mid-epoch); version 1 states (epoch ends only) still load.
FORMAT = "csnet-train-state/2"
READABLE_FORMATS = ("csnet-train-state/1", FORMAT)


class CheckpointError(ValueError):
    """A training-state file that is missing, unreadable or not a csnet training state."""


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as plain containers and tensors."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (the CUDA part only where the same number of devices is visible)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state((nps["name"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
                         nps["gauss"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """``scheduler.state_dict()`` with ``Counter`` values as plain dicts."""
    return {k: dict(v) if isinstance(v, collections.Counter) else v for k, v in scheduler.state_dict().items()}


def load_scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any]) -> None:
    current = scheduler.state_dict()
    restored = {k: collections.Counter(v) if isinstance(current.get(k), collections.Counter) else v
                for k, v in state.items()}
    scheduler.load_state_dict(restored)


def save_state(path: Union[str, os.PathLike], state: dict[str, Any]) -> Path:
    """Write a training state atomically (``state`` must hold plain containers and tensors only)."""
    path = Path(path)
    payload = {"format": FORMAT, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_state(path: Union[str, os.PathLike], map_location: Optional[Union[str, torch.device]] = "cpu") -> dict[str, Any]:
    """Read a training state with ``torch.load(weights_only=True)``: nothing in the file is executed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no training state (was the run interrupted before its first epoch ended?)")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols of a damaged file
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        first = str(error).strip().splitlines()
        raise CheckpointError(f"{path}: not a loadable csnet training state ({first[0] if first else error})") from None
    if not isinstance(payload, dict) or payload.get("format") not in READABLE_FORMATS:
        raise CheckpointError(f"{path}: not a csnet training state (format {payload.get('format') if isinstance(payload, dict) else None!r})")
    problem = _state_problem(payload)
    if problem:
        raise CheckpointError(f"{path}: not a usable csnet training state ({problem})")
    return payload


#: The fields a state must have, with their types (``progress`` is absent from version 1 states).
_FIELDS = {"epoch": int, "model_config": str, "model": dict, "optimizer": dict, "scheduler": dict, "rng": dict,
           "history": list, "best": dict, "scaler": dict, "config": str}
_PROGRESS = {"step": int, "sums": torch.Tensor, "seen": int, "checked_steps": int, "elapsed_s": (int, float)}


def _state_problem(state: dict[str, Any]) -> Optional[str]:
    """What makes ``state`` unusable for a resume (a missing field, a wrong type), or None: checked here so a
    damaged or hand-edited file fails with one line instead of a traceback deep in the resume."""
    for key, kind in _FIELDS.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            return f"{key} is {type(state.get(key)).__name__}, expected {kind.__name__}"
    if state["epoch"] < 0:
        return f"epoch {state['epoch']} is negative"
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["model"].items()):
        return "model is not a dict of tensors"
    # ``ema`` (the AveragedModel's state_dict, empty with ema_decay off) is absent from older states.
    ema = state.get("ema", {})
    if not isinstance(ema, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ema.items()):
        return "ema is not a dict of tensors"
    if not all(isinstance(row, dict) for row in state["history"]):
        return "history is not a list of rows"
    if not isinstance(state["optimizer"].get("state"), dict) or not isinstance(state["optimizer"].get("param_groups"), list):
        return "optimizer has no state and param_groups"
    if not all(isinstance(state["rng"].get(k), kind) for k, kind in
               (("python", dict), ("numpy", dict), ("torch", torch.Tensor))):
        return "rng lacks the python, numpy and torch states"
    progress = state.get("progress") or {}
    if not isinstance(progress, dict):
        return "progress is not a dict"
    if progress:
        for key, kind in _PROGRESS.items():
            if not isinstance(progress.get(key), kind) or isinstance(progress.get(key), bool):
                return f"progress.{key} is {type(progress.get(key)).__name__}"
        if progress["step"] < 1 or progress["sums"].shape != (3,):
            return "progress has no valid step and sums"
    return None
