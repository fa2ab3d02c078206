"""The quick-start notebook runs from top to bottom (nbclient, a fresh kernel), and its
printed numbers for examples/two_agents.json agree with independent computations:
the benchmarks by NumPy, each agent's persuasion value by HiGHS, the hull fit (the user
is exactly the agents' average), and the competition games' values (with the user in
the hull at eps = 0 and two agents each able to reveal the state, a certified
equilibrium gives her full information)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from reference import persuasion_highs

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def test_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_quickstart_notebook_runs():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"
    )
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    game = json.loads((ROOT / "examples" / "two_agents.json").read_text())
    prior, u = np.array(game["prior"]), np.array(game["user_utility"])
    fi, ni = float(prior @ u.max(axis=0)), float((u @ prior).max())
    assert f"full information {fi:.4f}, no information {ni:.4f}" in text
    for name, V in zip(game["agents"], game["agent_utilities"]):
        value, _ = persuasion_highs(prior, u, V)
        assert re.search(rf"{name} +alone: agent value {value:.4f}, user value [0-9.]+ .*status optimal", text)
    assert re.search(r"eps = 0\.0000, weights \[0\.5 0\.5\]", text)
    assert re.search(rf"selection: user value {fi:.4f} \(normalized 1\.000\).*status optimal", text)
    assert re.search(rf"simultaneous: user value {fi:.4f} \(normalized 1\.000\).*status optimal", text)
    assert "96 games in 6 cells" in text


MARKET = ROOT / "notebooks" / "market_design.ipynb"


def test_market_design_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(MARKET, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_market_design_notebook_runs():
    import sys

    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(MARKET, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(MARKET.parent)}})
    client.execute()
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"
    )
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    sys.path.insert(0, str(ROOT / "examples"))
    import market_design

    prior, u, _ = market_design.build()
    fi, ni = float(prior @ u.max(axis=0)), float((u @ prior).max())
    assert f"full information {fi:.4f}, no information {ni:.4f}" in text
    steps = re.findall(r"^ +\d+ +([0-9.]+) +([0-9.]+) +(-?[0-9.]+) +(implicit|degenerate) ", text, flags=re.M)
    assert len(steps) == 7
    # derivatives are implicit ones, never finite differences
    assert any(s[3] == "implicit" for s in steps)
    grid_w = [float(v) for v in re.search(r"grid W: +(.*)", text).group(1).split()]
    assert len(grid_w) == 11
    # the user's welfare never exceeds full information (a polished point that diverged
    # would, and must be flagged degenerate and replaced by the search's value)
    assert max(float(s[1]) for s in steps) <= fi and max(grid_w) <= fi
    best = re.search(r"grid best theta ([0-9.]+), W ([0-9.]+)", text)
    assert best and abs(float(best.group(2)) - max(grid_w)) <= 5e-4
