"""`segkit demo` in its tiny form: the whole pipeline on the phantom challenge, as `make demo` runs it."""

from __future__ import annotations

import json

from click.testing import CliRunner

from toolkit.cli import cli


def test_demo_tiny(tmp_path):
    work = tmp_path / "work"
    result = CliRunner().invoke(cli, ["demo", "--work", str(work), "--cases", "6", "--folds", "2", "--epochs", "1",
                                      "--iters-per-epoch", "2"])
    assert result.exit_code == 0, result.output
    wd = work / "Dataset900_Phantom"
    assert (wd / "report" / "index.html").is_file()
    assert (work / "bundle" / "manifest.json").is_file()
    summary = json.loads((work / "predictions" / "summary.json").read_text())
    assert sorted(c["case"] for c in summary["per_case"]) == ["phantom_006", "phantom_007"]
    assert "foreground mean" in result.output and "report:" in result.output
    page = (wd / "report" / "index.html").read_text(encoding="utf-8")  # the demo passes its test summary
    assert f"test set <b>{summary['foreground_mean']['Dice']:.4f}</b> on 2 case(s)" in page
