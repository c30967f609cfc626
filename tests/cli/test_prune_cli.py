"""`csnet prune`: pruned model file, report, |gamma| histogram and one-line errors."""
from __future__ import annotations

import json
import sys

import pytest
import torch

from csnet.cli.main import main
from csnet.models import CSNet, csnet_channels, load_model, read_metadata, save_model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small CSNet whose BN gammas are ~0 on a third of the channels of every BN."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = CSNet(csnet_channels(0.5, fusion_stages=(2, 3), stage_depths=(1, 1, 1, 1), name="small"))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.data = 0.5 + torch.rand(module.num_features)
                module.weight.data[::3] = 1e-30
    path = tmp_path_factory.mktemp("prune") / "model.safetensors"
    save_model(model.eval(), path, metadata={"license": "test licence"})
    return path


def test_prune_writes_model_report_and_plot(model_file, tmp_path, capsys):
    out, report, plot = tmp_path / "small.safetensors", tmp_path / "report.json", tmp_path / "gammas.png"
    code = main(["prune", str(model_file), "--threshold", "1e-20", "-o", str(out), "--report", str(report),
                 "--plot", str(plot), "--size", "64", "64"])
    assert code == 0
    text = capsys.readouterr().out
    data = json.loads(report.read_text())
    pruned = load_model(out)
    params = sum(p.numel() for p in pruned.parameters())
    assert data["params_after"] == params < data["params_before"]
    assert f"{data['params_before']:,} -> {params:,}" in text and "MACs" in text and "stages.2.0" in text
    assert data["macs_after"] < data["macs_before"] and data["mode"] == "threshold"
    assert data["config"] == pruned.config.to_dict()
    assert {"name", "before", "after"} <= set(data["layers"][0])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = read_metadata(out)
    assert meta["license"] == "test licence" and json.loads(meta["pruning"])["threshold"] == 1e-20
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_prune_ratio(model_file, tmp_path, capsys):
    out = tmp_path / "ratio.safetensors"
    assert main(["prune", str(model_file), "--ratio", "0.5", "-o", str(out), "--size", "32", "32"]) == 0
    assert "ratio 0.5" in capsys.readouterr().out
    assert load_model(out)(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)


@pytest.mark.parametrize("content", [None, b"not a safetensors file"])
def test_missing_or_bad_model_is_a_one_line_error(tmp_path, capsys, content):
    path = tmp_path / "model.safetensors"
    if content is not None:
        path.write_bytes(content)
    assert main(["prune", str(path), "-o", str(tmp_path / "out.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    assert not (tmp_path / "out.safetensors").exists()


def test_pruning_everything_is_a_one_line_error(model_file, tmp_path, capsys):
    assert main(["prune", str(model_file), "--threshold", "100", "-o", str(tmp_path / "o.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "every channel" in err


def test_threshold_and_ratio_are_exclusive(model_file, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", str(model_file), "--threshold", "1e-20", "--ratio", "0.3", "-o", str(tmp_path / "o")])
    assert exit_info.value.code == 2


def test_missing_matplotlib_names_the_plot_extra(model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    code = main(["prune", str(model_file), "-o", str(tmp_path / "o.safetensors"), "--plot", str(tmp_path / "g.png")])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "csnet[plot]" in err


def test_registered_name_without_weights_says_so(tmp_path, capsys):
    assert main(["prune", "csnet_l_x1", "-o", str(tmp_path / "p.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "has no weights" in err and "no such file" not in err


def test_registered_name_with_weights_is_pruned(tmp_path, capsys):
    from csnet.models import DEFAULT_MODEL

    assert main(["prune", DEFAULT_MODEL, "-o", str(tmp_path / "p.safetensors"), "--min-channels", "1"]) == 0
    assert (tmp_path / "p.safetensors").is_file()


def test_nothing_removed_says_why(model_file, tmp_path, capsys):
    assert main(["prune", str(model_file), "-o", str(tmp_path / "p.safetensors"), "--threshold", "0"]) == 0
    assert "nothing removed: no channel has |gamma| below 0" in capsys.readouterr().out
