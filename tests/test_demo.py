"""`segkit demo`: the whole pipeline on the phantom challenge, as `make demo` runs it.

The short form (the shared ``short_demo`` run: 6 cases, 2 folds, 3 epochs of 6 iterations) must segment
the organ of the test cases; the real `make demo` configuration (slow: about 8 minutes on 2 free cores)
must reach the Dice README quotes. Dice is counted here (tests/phantom_helpers.py), not by segkit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from phantom_helpers import dice_on_test_set

from toolkit.cli import cli

pytestmark = pytest.mark.slow  # the shared short demo run (and the real make-demo configuration): minutes


def _scores(work) -> dict:
    return dice_on_test_set(work / "predictions", work / "raw" / "Dataset900_Phantom")


def test_demo_short(short_demo):
    work, output = short_demo["work"], short_demo["output"]
    scores = _scores(work)
    assert (work / "Dataset900_Phantom" / "report" / "index.html").is_file()
    assert (work / "bundle" / "manifest.json").is_file()
    summary = json.loads((work / "predictions" / "summary.json").read_text(encoding="utf-8"))
    assert sorted(c["case"] for c in summary["per_case"]) == sorted(scores) == ["phantom_006", "phantom_007"]
    assert "foreground mean" in output and "report:" in output
    # 18 iterations per fold find the organ (measured: Dice 0.971 and 0.927); the lesion needs more (0.0)
    assert all(s[1] >= 0.8 for s in scores.values()), scores
    # the summary segkit printed and wrote is the Dice of what it predicted
    for case in summary["per_case"]:
        assert case["metrics"]["1"]["Dice"] == pytest.approx(scores[case["case"]][1], abs=1e-9)
    page = (work / "Dataset900_Phantom" / "report" / "index.html").read_text(encoding="utf-8")
    assert f"test set <b>{summary['foreground_mean']['Dice']:.4f}</b> on 2 case(s)" in page  # demo passes it


@pytest.mark.slow
def test_make_demo_reaches_the_dice_readme_quotes(tmp_path):
    """`make demo` = `segkit demo` with its defaults (10 cases, 5 folds, 10 epochs x 25 iterations).
    README: organ Dice 0.99 and lesion Dice 0.97 on the two test cases (its 7 min 41 s run); the thresholds
    leave margin below those (not re-measured here: the shared test machine was too loaded to run it)."""
    work = tmp_path / "work"
    result = CliRunner().invoke(cli, ["demo", "--work", str(work)])
    assert result.exit_code == 0, result.output
    scores = _scores(work)
    organ = np.mean([s[1] for s in scores.values()])
    lesion = np.mean([s[2] for s in scores.values()])
    assert organ >= 0.95 and lesion >= 0.85, scores
