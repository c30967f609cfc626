"""Importer of the authors' checkpoints: exact equivalence through the CLI, and no pickled code ever runs."""
import os
import pickle

import numpy as np
import pytest
import torch

from csnet.cli.main import main
from csnet.io.safe_pickle import UnsafePickleError, load_numpy_pickle, load_torch_checkpoint
from csnet.models import load_model
from csnet.models.official import OfficialImportError, import_official, read_official_config
from tests.shared_data import require_shared


@pytest.mark.shared
@pytest.mark.parametrize("variant, params", [("x1", 93_647), ("x2", 140_894)])
def test_cli_imported_models_reproduce_the_release(tmp_path, variant, params):
    official = require_shared("weights", "official")
    reference = np.load(require_shared("reference", "official_io.npz"))
    out = tmp_path / f"csnet_l_{variant}.safetensors"
    code = main(["import-official", str(official / f"csnet-L-{variant}.pth.tar"),
                 str(official / f"csnet-L-{variant}.bin"), "-o", str(out)])
    assert code == 0
    model = load_model(out)
    assert sum(p.numel() for p in model.parameters()) == params
    with torch.no_grad():
        logits = model(torch.from_numpy(reference["inputs"])).numpy()
    error = np.abs(logits - reference[f"logits_L_{variant}"]).max()
    assert error <= 1e-4, f"max abs logit difference {error}"


@pytest.mark.shared
def test_release_configs_are_the_registered_learned_configs():
    import csnet

    official = require_shared("weights", "official")
    for variant in ("x1", "x2"):
        theirs = read_official_config(official / f"csnet-L-{variant}.bin")
        ours = csnet.create_model(f"csnet_l_{variant}").config
        assert theirs.stages == ours.stages and theirs.fusion == ours.fusion


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_config_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps([_Exploit(marker)]))
    with pytest.raises(UnsafePickleError, match=r"evil.bin: refused global (posix|os)\.system"):
        load_numpy_pickle(evil)
    assert not marker.exists()


@pytest.mark.parametrize("zipfile", [False, True])
def test_malicious_checkpoint_is_refused_without_running(tmp_path, zipfile):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Exploit(marker)}, evil,
               _use_new_zipfile_serialization=zipfile)
    with pytest.raises(UnsafePickleError, match="evil.pth.tar: refused to load"):
        load_torch_checkpoint(evil)
    assert not marker.exists()


def test_cli_reports_a_malicious_file_in_one_line(tmp_path, capsys):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.bin"
    config.write_bytes(pickle.dumps(_Exploit(marker)))
    checkpoint = tmp_path / "ok.pth.tar"
    torch.save({"state_dict": {}}, checkpoint)
    assert main(["import-official", str(checkpoint), str(config), "-o", str(tmp_path / "o.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "evil.bin" in err and "refused" in err
    assert not marker.exists() and not (tmp_path / "o.safetensors").exists()


def test_plain_numpy_pickles_load(tmp_path):
    path = tmp_path / "ok.bin"
    data = [3, np.array([8.0, 10.0]), {"a": np.arange(3)}]
    path.write_bytes(pickle.dumps(data))
    loaded = load_numpy_pickle(path)
    assert loaded[0] == 3 and np.array_equal(loaded[1], data[1]) and np.array_equal(loaded[2]["a"], np.arange(3))


@pytest.mark.shared
def test_mismatched_checkpoint_and_config(tmp_path):
    official = require_shared("weights", "official")
    with pytest.raises(OfficialImportError, match="csnet-L-x1.pth.tar"):
        import_official(official / "csnet-L-x1.pth.tar", official / "csnet-L-x2.bin")
