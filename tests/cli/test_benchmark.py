"""``csnet benchmark``: rows with the documented keys, several runtimes side by side, end to end over a folder.

Speed is never asserted; these check that the numbers exist, are sane and that every runtime is correct.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from csnet.cli.main import main
from tests.shared_data import require_shared

REQUIRED = {"model", "runtime", "preset", "device", "dtype", "batch_size", "median_ms", "images_per_s"}


def _rows(path):
    rows = json.loads(path.read_text())
    assert isinstance(rows, list) and rows
    return rows


def test_benchmark_runtimes_side_by_side_json(tmp_path, capsys):
    out = tmp_path / "rows.json"
    code = main(["benchmark", "--model", "csnet_l_x1", "--runtime", "eager,torchscript", "--batch-sizes", "1,2",
                 "--size", "64", "--warmup", "1", "--repeat", "3", "--threads", "1", "--json", str(out)])
    assert code == 0
    rows = _rows(out)
    assert [(r["runtime"], r["batch_size"]) for r in rows] == [
        ("eager", 1), ("eager", 2), ("torchscript", 1), ("torchscript", 2)]
    for row in rows:
        assert REQUIRED <= set(row)
        assert row["device"] == "cpu" and row["dtype"] == "float32" and row["model"] == "csnet_l_x1"
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["max_ms"]
        assert row["images_per_s"] == pytest.approx(row["batch_size"] / row["median_ms"] * 1e3)
        assert row["params"] == 93_647 and row["macs_per_image"] > 0 and row["gflops_per_s"] > 0
        assert row["repeat"] == 3 and row["threads"] == 1
        assert row["max_abs_diff"] is not None and row["max_abs_diff"] < 1e-4
        assert row["environment"]["torch"] == torch.__version__
    printed = capsys.readouterr().out
    assert "median ms" in printed and "torchscript" in printed and "load average" in printed


def test_benchmark_runs_what_predict_runs_and_old_names_still_work(tmp_path, capsys, monkeypatch):
    import csnet.bench.runners as runners
    from csnet.infer.predictor import Predictor
    from csnet.models import DEFAULT_MODEL

    built = []
    real = runners.create_runtime
    monkeypatch.setattr(runners, "create_runtime", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    out = tmp_path / "rows.json"
    assert main(["benchmark", "--backend", "torch,fast,fast-jit", "--size", "32", "--warmup", "0", "--repeat", "1",
                 "--threads", "1", "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "deprecated" in err  # one line for all the old names
    rows = _rows(out)
    assert [r["runtime"] for r in rows] == ["eager", "torchscript"] and rows[0]["model"] == DEFAULT_MODEL
    predictor = Predictor(runtime="torchscript", cache_dir=False)  # the bundled model, as the benchmark's default
    assert type(built[1]) is type(predictor.runtime) and built[1].preset == predictor.runtime.preset


def test_benchmark_onnxruntime_and_preprocess(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "rows.json"
    code = main(["benchmark", "--runtime", "onnxruntime,torchscript", "--size", "48", "64", "--warmup", "1", "--repeat", "2",
                 "--include-preprocess", "--threads", "1", "--json", str(out)])
    assert code == 0
    rows = _rows(out)
    assert {r["runtime"] for r in rows} == {"onnxruntime", "torchscript"}
    for row in rows:
        assert (row["height"], row["width"]) == (48, 64)
        assert row["include_preprocess"] is True
        assert row["max_abs_diff"] < 1e-4


def test_benchmark_openvino_in_float32_and_bfloat16(tmp_path):
    pytest.importorskip("openvino")
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.json"
        code = main(["benchmark", "--runtime", "openvino", "--preset", dtype, "--size", "48", "64", "--warmup", "1",
                     "--repeat", "2", "--threads", "1", "--json", str(out)])
        assert code == 0
        (row,) = _rows(out)
        assert row["runtime"] == "openvino" and row["dtype"] == row["preset"] == dtype and row["median_ms"] > 0
        assert row["environment"]["openvino"] and "version" in row["notes"]
        assert row["max_abs_diff"] < (1e-4 if dtype == "float32" else 0.1)
    out = tmp_path / "preprocess.json"  # uint8 in, converted in NumPy inside the timed call
    assert main(["benchmark", "--runtime", "openvino", "--include-preprocess", "--size", "48", "64", "--warmup", "1",
                 "--repeat", "2", "--threads", "1", "--json", str(out)]) == 0
    (row,) = _rows(out)
    assert row["include_preprocess"] is True and row["max_abs_diff"] < 1e-4


def test_numpy_uint8_normalization_matches_the_protocol():
    from csnet.bench.runners import normalize_uint8
    from csnet.constants import IMAGENET_MEAN, IMAGENET_STD

    images = np.random.default_rng(0).integers(0, 256, (2, 17, 23, 3), dtype=np.uint8)
    out = normalize_uint8(images)
    expected = (images.transpose(0, 3, 1, 2) / 255.0 - np.reshape(IMAGENET_MEAN, (1, 3, 1, 1))) / np.reshape(
        IMAGENET_STD, (1, 3, 1, 1))
    assert out.shape == (2, 3, 17, 23) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    assert np.abs(out - expected).max() < 1e-5
    with pytest.raises(ValueError, match="uint8"):
        normalize_uint8(images.astype(np.float32))


def test_benchmark_reports_unavailable_runtimes_and_bad_arguments(tmp_path, capsys):
    out = tmp_path / "rows.json"
    threads_before = torch.get_num_threads()
    # cuda-graph on the CPU: skipped with a reason, the other runtime still measured
    assert main(["benchmark", "--runtime", "cuda-graph,torchscript", "--size", "32", "--warmup", "0", "--repeat", "1",
                 "--threads", "1", "--json", str(out)]) == 0
    rows = _rows(out)
    assert rows[0]["runtime"] == "cuda-graph" and rows[0]["notes"].startswith("skipped")
    assert rows[1]["runtime"] == "torchscript" and rows[1]["median_ms"] > 0
    assert torch.get_num_threads() == threads_before  # the command restores the thread count
    capsys.readouterr()
    assert main(["benchmark", "--runtime", "eager", "--preset", "int4", "--size", "32", "--warmup", "0",
                 "--repeat", "1", "--json", str(out)]) == 0
    assert _rows(out)[0]["notes"].startswith("skipped: the eager runtime has no preset 'int4'")
    assert main(["benchmark", "--runtime", "tensorrt"]) == 1
    assert "unknown runtime" in capsys.readouterr().err
    assert main(["benchmark", "--size", "1", "2", "3"]) == 1
    if not torch.cuda.is_available():
        assert main(["benchmark", "--device", "cuda"]) == 1
        assert "CUDA is not available" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["benchmark", "--batch-sizes", "0"])


def test_end_to_end_over_a_folder(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index, size in enumerate([(40, 60), (75, 50), (64, 64)]):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(images / f"{index}.jpg")
    (images / "notes.txt").write_text("not an image")
    masks, out = tmp_path / "masks", tmp_path / "e2e.json"
    code = main(["benchmark", "--end-to-end", str(images), "--runtime", "torchscript", "--size", "64", "--workers", "2",
                 "--batch-sizes", "2", "--threads", "1", "--out", str(masks), "--json", str(out)])
    assert code == 0
    rows = _rows(out)
    assert [r["mode"] for r in rows] == ["sequential", "parallel"]
    for row in rows:
        assert row["images"] == 3 and row["images_per_s"] > 0 and row["runtime"] == "torchscript"
        assert set(row["stage_ms_per_image"]) == {"decode", "resize", "model", "postprocess", "encode"}
        assert all(v >= 0 for v in row["stage_ms_per_image"].values())
    written = sorted(p.name for p in masks.iterdir())
    assert written == ["0.png", "1.png", "2.png"]
    with Image.open(masks / "1.png") as mask:
        assert mask.size == (50, 75) and mask.mode == "L"
    assert "images/s" in capsys.readouterr().out
    assert main(["benchmark", "--end-to-end", str(tmp_path / "missing")]) == 1


@pytest.mark.shared
def test_end_to_end_on_pascal_s(tmp_path):
    folder = require_shared("data", "PASCAL-S", "images")
    out = tmp_path / "e2e.json"
    assert main(["benchmark", "--end-to-end", str(folder), "--limit", "4", "--runtime", "torchscript", "--threads", "1",
                 "--json", str(out)]) == 0
    rows = _rows(out)
    assert all(r["images"] == 4 for r in rows)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_benchmark_on_cuda_with_graphs_and_half(tmp_path):
    out = tmp_path / "rows.json"
    assert main(["benchmark", "--device", "cuda", "--runtime", "eager,torchscript,cuda-graph", "--preset", "float16",
                 "--batch-sizes", "1,4", "--size", "64", "--warmup", "2", "--repeat", "5", "--json", str(out)]) == 0
    rows = _rows(out)
    assert {r["runtime"] for r in rows} == {"eager", "torchscript", "cuda-graph"}
    for row in rows:
        assert row["dtype"] == "float16" and row["peak_mem_mb"] > 0 and row["median_ms"] > 0
        assert row["max_abs_diff"] < 0.1  # fp16 logits vs the fp32 eager model
