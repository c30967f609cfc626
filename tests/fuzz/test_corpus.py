"""Every input the fuzz targets ever found a problem with, replayed through the same checks.

``corpus/<target>/`` holds the findings as files (the smallest input Hypothesis shrank each to):

- ``images/warns_*.tif``: TIFFs whose damaged tags made Pillow warn on the user's terminal while opening;
  now a debug log line, and the decode returns or raises ImageLoadError as for any other file.
- ``model_config/empty_fusion_stage.json``: a config whose fused stage 4 has no blocks raised IndexError
  (a traceback from ``load_model``); now ValueError / ModelFileError naming the stage.
- ``checkpoint/*.pt``: training states with a field missing or of the wrong type loaded silently and
  failed later with a KeyError/TypeError deep in the resume; now CheckpointError naming the field.
- ``pickle/newline_in_*.bin``: ``.bin`` files whose refusal message quoted the file's bytes, newline and
  all; now one line.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from csnet.models import ChannelConfig, create_model, save_model
from csnet.train.checkpoint import CheckpointError, load_state
from tests.fuzz import test_fuzz_images, test_fuzz_model_files, test_fuzz_pickles
from tests.fuzz.strategies import corpus_files


def test_the_corpus_is_there() -> None:
    targets = {"images", "model_config", "checkpoint", "pickle"}
    assert {p.parent.name for t in targets for p in corpus_files(t)} == targets


@pytest.mark.parametrize("path", corpus_files("images"), ids=lambda p: p.name)
def test_image_findings(path: Path) -> None:
    test_fuzz_images._check(path.read_bytes())


@pytest.mark.parametrize("path", corpus_files("model_config"), ids=lambda p: p.name)
def test_model_config_findings(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    with pytest.raises(ValueError, match="not a valid ChannelConfig|fusion stage"):
        ChannelConfig.from_json(text)
    # the same config in a model file with real tensors: one ModelFileError line, no traceback
    model_file = tmp_path / "seed.safetensors"
    torch.manual_seed(0)
    save_model(create_model("csnet_l_x1"), model_file)
    header, payload = test_fuzz_model_files._split(model_file.read_bytes())
    header["__metadata__"]["config"] = json.dumps(json.loads(text))
    test_fuzz_model_files._check_load(tmp_path / "m.safetensors", test_fuzz_model_files._join(header, payload))


@pytest.mark.parametrize("path", corpus_files("checkpoint"), ids=lambda p: p.name)
def test_checkpoint_findings(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    with pytest.raises(CheckpointError, match="not a usable csnet training state"):
        load_state(copy)


@pytest.mark.parametrize("path", corpus_files("pickle"), ids=lambda p: p.name)
def test_pickle_findings(path: Path, tmp_path: Path) -> None:
    test_fuzz_pickles._check(tmp_path / path.name, path.read_bytes())
