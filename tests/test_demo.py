"""`segkit demo`: the whole pipeline on the phantom challenge, as `make demo` runs it.

The short form (the shared ``short_demo`` run: 6 cases, 2 folds, 3 epochs of 6 iterations) must segment
the organ of the test cases (the lesion needs about 200 iterations, more than this short form trains).
Dice is counted here (tests/phantom_helpers.py), not by segkit. The Dice README quotes for the full
`make demo` configuration (10 epochs x 25 iterations, about 8 minutes) were measured by hand; a test of
that configuration is still to be added (see the closing note of session 4).
"""

from __future__ import annotations

import json

import pytest
from phantom_helpers import dice_on_test_set

pytestmark = pytest.mark.slow  # the shared short demo run: minutes


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
