"""The `alignjax` command: output fields and the handling of bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alignjax.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "prosecutor_judge.json"


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_solve_persuasion_json(capsys):
    code, out, err = run_cli(capsys, "solve", EXAMPLE, "--mode", "persuasion", "--agent", 0, "--json")
    assert code == 0, err
    data = json.loads(out)
    for key in ("agent_value", "user_value", "full_information_value", "no_information_value", "status"):
        assert key in data
    assert data["status"] == "optimal"
    assert data["agent_value"] == pytest.approx(0.6, abs=1e-9)
    assert data["user_value"] == pytest.approx(0.7, abs=1e-9)
    assert data["full_information_value"] == pytest.approx(1.0)
    assert data["no_information_value"] == pytest.approx(0.7)


def test_human_output(capsys):
    code, out, _ = run_cli(capsys, "solve", EXAMPLE)
    assert code == 0
    assert "agent_value" in out and "convict" in out


def _bad(tmp_path, text):
    p = tmp_path / "game.json"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "no such file"),
        ("{", "malformed JSON"),
        ('{"prior": [1.0], "user_utility": [[1.0]]}', "missing field 'agent_utilities'"),
        ('{"prior": [0.5, 0.5], "user_utility": [[1, 2, 3]], "agent_utilities": [[[1, 2, 3]]]}',
         "field 'user_utility' has shape (1, 3), expected (A, 2)"),
        ('{"prior": [0.5, 0.6], "user_utility": [[1, 2]], "agent_utilities": [[[1, 2]]]}',
         "field 'prior' sums to 1.1"),
        ('{"prior": [1.5, -0.5], "user_utility": [[1, 2]], "agent_utilities": [[[1, 2]]]}',
         "field 'prior' has negative entries"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, capsys, content, fragment):
    path = tmp_path / "missing.json" if content is None else _bad(tmp_path, content)
    code, out, err = run_cli(capsys, "solve", path, "--json")
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and fragment in lines[0], err


def test_agent_out_of_range(capsys):
    code, out, err = run_cli(capsys, "solve", EXAMPLE, "--agent", 3)
    assert code == 2 and out == ""
    assert "--agent 3" in err and "1 agent(s)" in err


def test_usage_error_exit_2():
    proc = subprocess.run(
        [sys.executable, "-m", "alignjax.cli", "solve", str(EXAMPLE), "--mode", "nonsense"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr and proc.stdout == ""


def test_solve_selection_json(capsys):
    example = ROOT / "examples" / "two_agents.json"
    code, out, err = run_cli(capsys, "solve", example, "--mode", "selection", "--delta", "0.001", "--json")
    assert code == 0, err
    data = json.loads(out)
    for key in ("user_value", "agent_values", "selected", "nash_gap", "certified",
                "full_information_value", "no_information_value", "monopoly_best", "monopoly_mean"):
        assert key in data
    assert data["status"] == "optimal" and data["certified"] is True
    # the user's utility is the agents' average (opposed biases): near full information
    assert data["full_information_value"] - data["user_value"] <= 1e-3 + 1e-9


def test_selection_bad_options(capsys):
    code, out, err = run_cli(capsys, "solve", EXAMPLE, "--mode", "selection", "--delta", "-1")
    assert code == 2 and out == "" and "--delta" in err
    code, out, err = run_cli(capsys, "solve", EXAMPLE, "--mode", "selection", "--evaluation-period", "0")
    assert code == 2 and out == "" and "--evaluation-period" in err
    code, out, err = run_cli(capsys, "solve", EXAMPLE, "--mode", "selection", "--evaluation-period", "1.5")
    assert code == 2 and out == "" and "an integer >= 1" in err
