"""`csnet models`, `csnet info` and the CLI's error conventions."""
import json

from csnet.cli.main import main


def test_info_json_reports_params_macs_and_stage_shapes(capsys):
    assert main(["info", "csnet_x1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == 210_985
    assert abs(data["macs"] - 0.433e9) / 0.433e9 < 0.01
    assert data["flops"] == 2 * data["macs"]
    assert [s["scales"][0][2] for s in data["stages"]] == [224, 224, 112, 56, 28]


def test_info_any_size(capsys):
    assert main(["info", "csnet_l_x2", "--size", "225", "301", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output_shape"] == [1, 1, 225, 301]


def test_info_text(capsys):
    assert main(["info", "csnet_l_x1"]) == 0
    out = capsys.readouterr().out
    assert "93,647" in out and "FLOPs = 2 x MACs" in out


def test_unknown_model_is_one_line_error(capsys):
    assert main(["info", "nope"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err


def test_models_lists_the_registry(capsys):
    assert main(["models", "--json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert {"csnet_x1", "csnet_x2", "csnet_l_x1", "csnet_l_x2"} <= names


def test_models_says_in_plain_words_which_have_weights(capsys):
    from csnet.models import DEFAULT_MODEL

    assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:] if line.strip()}
    assert "trained, bundled (the default model)" in lines[DEFAULT_MODEL]
    assert "none (architecture only" in lines["csnet_l_x1"]


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("csnet ")


def test_info_without_a_model_shows_the_bundled_one(capsys):
    from csnet.models import DEFAULT_MODEL

    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == DEFAULT_MODEL


def test_json_into_a_closed_pipe_ends_without_a_traceback():
    import subprocess
    import sys

    script = "import sys; from csnet.cli.main import main; sys.exit(main(['info', 'csnet_l_x1', '--json']))"
    result = subprocess.run(f"{sys.executable} -c \"{script}\" | head -c 1", shell=True, capture_output=True,
                            text=True, timeout=120)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr


def test_info_of_bundled_weights_prints_their_model_card(capsys) -> None:
    from csnet.models.weights import PRETRAINED

    assert main(["info", "csnet_pascal"]) == 0
    out = capsys.readouterr().out
    card = PRETRAINED["csnet_pascal"]
    assert "lineage" in out and card.lineage[-1] in out
    assert f"maxF {card.metrics['maxF']:.4f}" in out


def test_python_dash_m_csnet_cli_main_gives_the_one_line_error(tmp_path) -> None:
    """torchrun launches `-m csnet.cli.main`: a user's error there is the same one line, not a traceback."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "csnet.cli.main", "evaluate", "--pred", str(tmp_path / "none"),
                             "--gt", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("csnet evaluate: error: ") and "Traceback" not in result.stderr
