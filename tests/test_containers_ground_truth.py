"""The evaluation container matches a job to its ground truth through a configured input socket, never by the
position of the job's inputs (arbitrary in predictions.json; several sockets for MS lesions)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from challenges.registry import get_adapter
from toolkit.containers import evaluation
from toolkit.containers.evaluation import case_of_job
from toolkit.containers.packager import ground_truth_socket
from toolkit.errors import SegkitError
from toolkit.io.images import Geometry, write_image


def _job(pk: str, inputs: list[tuple[str, str]]) -> dict:
    return {"pk": pk, "status": "Succeeded",
            "inputs": [{"image": {"name": name}, "interface": {"slug": slug}} for slug, name in inputs],
            "outputs": [{"interface": {"slug": "seg", "relative_path": "images/seg"}}]}


def test_the_case_comes_from_the_configured_socket_whatever_the_input_order():
    job = _job("1", [("t2-mri", "scan-17_t2.mha"), ("flair-mri", "patient3_0000.mha")])
    assert case_of_job(job, "flair-mri") == "patient3"
    assert case_of_job(job, "t2-mri") == "scan-17_t2"
    with pytest.raises(SegkitError, match="has 2 input images; name the one"):
        case_of_job(job, None)
    with pytest.raises(SegkitError, match="no input image in the ground-truth socket 'pd-mri'.*t2-mri, flair-mri"):
        case_of_job(job, "pd-mri")
    assert case_of_job(_job("2", [("ct-image", "c4.mha")]), None) == "c4"  # one input: no choice to make


def test_the_socket_is_configured_or_the_yamls_first_input():
    msles = get_adapter("msles").container
    assert ground_truth_socket("msles", msles) == "flair-mri"
    assert ground_truth_socket("msles", {**msles, "ground_truth_socket": "t2-mri"}) == "t2-mri"
    with pytest.raises(SegkitError, match="'dwi' is not among its input sockets"):
        ground_truth_socket("msles", {**msles, "ground_truth_socket": "dwi"})
    with pytest.raises(SegkitError, match="no container.inputs or container.ground_truth_socket"):
        ground_truth_socket("x", {"output": {"slug": "seg"}})


def test_multi_input_jobs_are_scored_against_the_right_case(tmp_path):
    geo = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    gt, inp = tmp_path / "gt", tmp_path / "input"
    for case, lo in (("p1", 1), ("p2", 4)):
        ref = np.zeros((6, 8, 8), np.uint8)
        ref[lo:lo + 2, 2:6, 2:6] = 1
        write_image(ref, geo, gt / f"{case}.mha")
    pred = np.zeros((6, 8, 8), np.uint8)
    pred[1:3, 2:6, 2:6] = 1  # exactly p1's lesion
    write_image(pred, geo, inp / "job-a" / "output" / "images" / "seg" / "output.mha")
    # the platform listed the T2 socket first; its image name is p2's
    jobs = [_job("job-a", [("t2-mri", "p2_0003.mha"), ("flair-mri", "p1_0000.mha")])]
    (inp / "predictions.json").write_text(json.dumps(jobs))
    settings = {"labels": {"background": 0, "lesion": 1}, "output": {"slug": "seg", "relative_path": "images/seg"},
                "ground_truth_socket": "flair-mri"}
    metrics = evaluation.evaluate(settings, inp, gt, tmp_path / "out")
    assert list(metrics["case"]) == ["p1"] and metrics["case"]["p1"]["1"]["Dice"] == pytest.approx(1.0)
