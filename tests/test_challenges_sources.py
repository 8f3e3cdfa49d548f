"""Every challenge fact (labels, submission names, exclusions) says where it is stated, or that it is not."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from challenges.base import FACT_KEYS, check_sources, unverified_facts
from challenges.registry import ADAPTERS, get_adapter
from toolkit.cli import cli
from toolkit.errors import SegkitError
from toolkit.io.images import Geometry, write_image

CHALLENGES = Path(__file__).resolve().parents[1] / "challenges"


def _yaml(name: str) -> dict:
    return yaml.safe_load((CHALLENGES / f"{name}.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_every_shipped_fact_has_a_source_or_is_marked_unverified(name):
    adapter = get_adapter(name)  # the loader checks the sources
    config = _yaml(name)
    for key in adapter.facts:
        if config.get(key) is None:
            continue
        entry = config["sources"][key]
        if entry.get("unverified") is not True:
            assert entry["source"].startswith("https://"), (name, key)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_removing_a_source_is_a_one_line_error(name):
    config = _yaml(name)
    facts = get_adapter(name).facts
    for key in [k for k in facts if config.get(k) is not None]:
        broken = copy.deepcopy(config)
        del broken["sources"][key]
        with pytest.raises(SegkitError, match=rf"fact '{key}' has no 'sources.{key}' entry") as err:
            check_sources(broken, facts, CHALLENGES / f"{name}.yaml")
        assert "\n" not in str(err.value) and f"{name}.yaml" in str(err.value)


@pytest.mark.parametrize("entry, problem", [
    ({"source": "https://x", "unverified": True}, "exactly one of"),
    ({"note": "trust me"}, "exactly one of"),
    ({"source": "  "}, "exactly one of"),
    ({"unverified": "yes"}, "exactly one of"),
    ({"source": "https://x", "url": "https://y"}, "unknown keys"),
])
def test_malformed_source_entries(entry, problem):
    config = {"labels": {"background": 0, "a": 1}, "sources": {"labels": entry}}
    with pytest.raises(SegkitError, match=problem):
        check_sources(config, FACT_KEYS, Path("x.yaml"))


def test_source_for_a_key_that_is_no_fact():
    config = {"labels": {"background": 0}, "sources": {"labels": {"source": "https://x"},
                                                      "lables": {"source": "https://x"}}}
    with pytest.raises(SegkitError, match="'sources.lables' names no fact"):
        check_sources(config, FACT_KEYS, Path("x.yaml"))


def test_unverified_facts_lines():
    config = {"sources": {"submission": {"unverified": True, "note": "guess"}, "labels": {"source": "https://x"}}}
    assert unverified_facts(config) == [("submission", "submission is unverified (guess)")]


def _one_prediction(folder: Path, case: str) -> Path:
    write_image(np.zeros((2, 3, 4), np.uint8), Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                                                        (1, 0, 0, 0, 1, 0, 0, 0, 1)), folder / f"{case}.nii.gz")
    return folder


def test_segkit_submission_warns_about_unverified_facts(tmp_path):
    pred = _one_prediction(tmp_path / "pred", "img0061")
    result = CliRunner().invoke(cli, ["submission", "bcv", str(pred), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "warning: bcv: submission is unverified (labelXXXX.nii.gz" in result.stderr
    assert (tmp_path / "out" / "label0061.nii.gz").is_file()


def test_segkit_submission_is_quiet_for_sourced_facts(tmp_path):
    pred = _one_prediction(tmp_path / "pred", "case_00210")
    result = CliRunner().invoke(cli, ["submission", "kits19", str(pred), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_a_fact_the_user_sets_gets_no_warning(tmp_path):
    pred = _one_prediction(tmp_path / "pred", "img0061")
    result = CliRunner().invoke(cli, ["submission", "bcv", str(pred), str(tmp_path / "out"),
                                      "-O", "submission.name=seg{number}.nii.gz"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr and (tmp_path / "out" / "seg0061.nii.gz").is_file()
