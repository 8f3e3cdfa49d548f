"""`segkit package` against a real Docker engine: build -> static checks -> self-test on phantom cases
(container vs host `segkit predict`, labels and geometry identical) -> export; a corrupt input in the
container; invoke mode (/health, /invoke) in a running container; the evaluation image scoring outputs.

The engine is the one at DOCKER_HOST if it answers, else a private dockerd started here by
containers/engine.sh (installs Debian's docker.io + debootstrap when absent, needs root) and stopped at
the end. Skipped, with the reason, only when no engine can be had (not root, no Debian registry).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from toolkit.containers.platform import JobLimits
from toolkit.containers.selftest import layout_jobs, run_container

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "containers" / "engine.sh"
BASE = os.environ.get("SEGKIT_TEST_BASE_IMAGE", "segkit-test-base:bookworm")
TAG = f"segkit-test-phantom:{os.getpid()}"  # private to this session: parallel runs share an engine
EVAL_TAG = f"segkit-test-eval:{os.getpid()}"
pytestmark = pytest.mark.slow  # builds and runs Docker images in a private engine: minutes


def _engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=10).ping()
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="module")
def engine():
    """A Docker client with the test base image present; starts (and later stops) a private dockerd."""
    import docker

    started = False
    if not (os.environ.get("DOCKER_HOST") and _engine_answers()):
        # stop it at the end only if this session started it (another session may be using it)
        started = subprocess.run([str(ENGINE), "status"], capture_output=True).returncode != 0
        proc = subprocess.run([str(ENGINE), "start"], capture_output=True, text=True, encoding="utf-8", errors="replace")
        if proc.returncode != 0:
            pytest.skip("no Docker engine: containers/engine.sh start failed: "
                        + " | ".join(proc.stderr.strip().splitlines()[-3:]))
        os.environ["DOCKER_HOST"] = proc.stdout.strip().split("=", 1)[1]
    client = None
    try:
        proc = subprocess.run([str(ENGINE), "base-image"], capture_output=True, text=True, encoding="utf-8", errors="replace",
                              env={**os.environ, "SEGKIT_TEST_BASE_IMAGE": BASE})
        assert proc.returncode == 0, proc.stderr[-2000:]
        client = docker.from_env(timeout=600)
        client.images.prune(filters={"dangling": True})  # layers a killed earlier run left behind
        yield client
    finally:
        for tag in (TAG, EVAL_TAG):  # vfs keeps full copies: free the disk
            with contextlib.suppress(docker.errors.ImageNotFound):
                client and client.images.remove(tag, force=True)
        if client is not None:  # anything a failed build of this run left behind
            client.images.prune(filters={"dangling": True})
        if started:
            subprocess.run([str(ENGINE), "stop"], check=False)
            os.environ.pop("DOCKER_HOST", None)


@pytest.fixture(scope="module")
def packaged(engine, phantom_dataset, tiny_phantom_bundle, tmp_path_factory):
    """The phantom bundle packaged once: self-tested on imagesTs and exported."""
    from toolkit.containers.packager import PackageOptions, package

    tmp = tmp_path_factory.mktemp("pkg")
    bundle = tiny_phantom_bundle
    dangling = _dangling(engine)
    from challenges.registry import get_adapter

    container = get_adapter("kits19", {"container.json_outputs": [{"slug": "volumes", "value": "volumes"}]}).container
    report = package(PackageOptions(
        bundle=bundle, challenge="kits19", container=container, tag=TAG, out=tmp / "image.tar.gz", device="cpu",
        base_image=BASE, test_input=phantom_dataset / "imagesTs", tta=False))
    return {"report": report, "bundle": bundle, "tmp": tmp, "new_dangling": _dangling(engine) - dangling}


def _dangling(client) -> set[str]:
    return {image.id for image in client.images.list(filters={"dangling": True})}


def test_package_builds_checks_self_tests_and_exports(packaged, engine):
    report = packaged["report"]
    assert [r["case"] for r in report["self_test"]] == ["phantom_008", "phantom_009"]
    assert all(r["ok"] and r["mismatched_voxels"] == 0 and r["geometry"] == "identical" for r in report["self_test"])
    assert all(len(r["labels"]) > 1 for r in report["self_test"])  # not an all-background answer
    # run under the platform's default job, usage reported against its limits
    assert all(r["memory_limit_mb"] == 7168 and r["time_limit_s"] == 1200 for r in report["self_test"])
    assert all(0 < r["peak_memory_mb"] < 7168 and 0 < r["seconds"] < 1200 for r in report["self_test"])
    attrs = engine.api.inspect_image(TAG)
    assert attrs["Config"]["User"] == "user" and attrs["Architecture"] == "amd64"
    assert attrs["Config"]["Labels"]["org.segkit.challenge"] == "kits19"
    assert "org.grand-challenge.api-method" not in attrs["Config"]["Labels"]
    out = Path(report["export"])
    with gzip.open(out) as gz, tarfile.open(fileobj=gz) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == [TAG]
    assert not packaged["new_dangling"]  # the install stage's images (a venv with torch) were removed


def _job(phantom_dataset: Path, root: Path, case: str) -> Path:
    from challenges.registry import get_adapter
    from toolkit.containers.interface import resolve_interface

    itf = resolve_interface("kits19", get_adapter("kits19").container,
                            json.loads((phantom_dataset / "dataset.json").read_text()))
    src = root / "src" / case
    src.mkdir(parents=True)
    shutil.copy(phantom_dataset / "imagesTs" / f"{case}_0000.nii.gz", src)
    return layout_jobs(src, itf, root / "jobs")[0][1]


def test_corrupt_or_missing_input_fails_with_a_clear_error(packaged, engine, phantom_dataset, tmp_path):
    job = _job(phantom_dataset, tmp_path, "phantom_008")
    image = next((job / "images" / "ct-image").glob("*.mha"))
    image.write_bytes(image.read_bytes()[:300])  # truncated upload
    run = run_container(engine, TAG, job, tmp_path / "out", JobLimits(memory_mb=4096))
    code, logs = run["exit_code"], run["logs"]
    assert code == 2 and "segkit: error:" in logs and "Traceback" not in logs, logs
    assert not list((tmp_path / "out").rglob("*.mha"))
    image.unlink()
    run = run_container(engine, TAG, job, tmp_path / "out2", JobLimits(memory_mb=4096))
    code, logs = run["exit_code"], run["logs"]
    assert code == 2 and "expected exactly one .mha" in logs, logs


_CLIENT = """
import json, sys, time, urllib.request, urllib.error
def call(method, path):
    # the platform's shim posts an empty body
    req = urllib.request.Request("http://127.0.0.1:PORT" + path, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return 0, {}
deadline = time.time() + 300
while (status := call("GET", "/health"))[0] != 200 and time.time() < deadline:
    time.sleep(0.5)
print(json.dumps({"health": status[0], "invoke": call("POST", "/invoke")}))
"""


def _invoke(container, port: int = 4743) -> dict:
    code, out = container.exec_run(["python", "-c", _CLIENT.replace("PORT", str(port))])
    assert code == 0, out.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


def test_invoke_mode_serves_health_and_one_job_per_invoke(packaged, engine, phantom_dataset, tmp_path):
    from toolkit.io.images import read_geometry, read_image

    job = _job(phantom_dataset, tmp_path, "phantom_008")
    second = _job(phantom_dataset, tmp_path, "phantom_009")
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    container = engine.containers.run(
        TAG, ["--mode", "invoke"], detach=True, network_mode="none", mem_limit="4g",
        environment={"GRAND_CHALLENGE_COMPONENT_USER_WEBSERVER_PORT": "4801"},  # the platform's port variable
        volumes={str(tmp_path / "jobs"): {"bind": "/jobs", "mode": "ro"}, str(out): {"bind": "/output", "mode": "rw"}},
        entrypoint=["/opt/venv/bin/python", "-m", "toolkit.containers.entrypoint", "--input", "/jobs/current"])
    try:
        (tmp_path / "jobs" / "current").symlink_to(job.name)  # the platform swaps /input between jobs
        first = _invoke(container, 4801)
        assert first["health"] == 200 and first["invoke"][0] == 201, first
        assert first["invoke"][1]["peak_rss_mb"] > 0
        seg1, geo1 = read_image(out / "images" / "kidney-segmentation" / "output.mha")
        assert seg1.shape == read_geometry(next((job / "images" / "ct-image").glob("*.mha")))[0]
        (tmp_path / "jobs" / "current").unlink()
        (tmp_path / "jobs" / "current").symlink_to(second.name)
        nxt = _invoke(container, 4801)
        assert nxt["invoke"][0] == 201 and nxt["invoke"][1]["status"] == "succeeded", nxt
        seg2, geo2 = read_image(out / "images" / "kidney-segmentation" / "output.mha")
        assert geo2.differs_from(read_geometry(next((second / "images" / "ct-image").glob("*.mha")))[1],
                                 1e-6, 1e-6) is None
        assert geo1.differs_from(geo2) is not None  # a different case, predicted by the same server
        shutil.rmtree(out / "images")
        (tmp_path / "jobs" / "current").unlink()
        (tmp_path / "jobs" / "current").symlink_to("missing")
        bad = _invoke(container, 4801)
        assert bad["invoke"][0] == 400 and "inputs.json" in bad["invoke"][1]["error"], bad
        container.reload()
        assert container.status == "running"  # a bad job does not stop the server
    finally:
        container.remove(force=True)


def test_evaluation_image_scores_the_algorithm_outputs(packaged, engine, phantom_dataset, tmp_path):
    """`segkit package-evaluation` image on grand-challenge's evaluation layout (outputs of the algorithm)."""
    from challenges.registry import get_adapter
    from toolkit.containers.packager import package_evaluation

    labels = json.loads((phantom_dataset / "dataset.json").read_text())["labels"]
    report = package_evaluation("kits19", get_adapter("kits19").container, labels, EVAL_TAG, base_image=BASE)
    assert report["image_bytes"] < packaged["report"]["image_bytes"]  # no torch in it
    inp, gt = tmp_path / "input", tmp_path / "gt"
    jobs = []
    for case in ("phantom_008", "phantom_009"):
        job = _job(phantom_dataset, tmp_path / case, case)
        out = inp / f"pk-{case}" / "output"
        run = run_container(engine, TAG, job, out, JobLimits(memory_mb=4096))
        assert run["exit_code"] == 0, run["logs"]
        jobs.append({"pk": f"pk-{case}", "status": "Succeeded",
                     "inputs": [{"image": {"name": f"{case}.mha"}, "interface": {"slug": "ct-image"}}],
                     "outputs": [{"interface": {"slug": "kidney-segmentation",
                                                "relative_path": "images/kidney-segmentation"}}]})
        gt.mkdir(exist_ok=True)
        shutil.copy(phantom_dataset / "labelsTs" / f"{case}.nii.gz", gt)
    (inp / "predictions.json").write_text(json.dumps(jobs))
    result = tmp_path / "result"
    result.mkdir()
    os.chmod(result, 0o777)
    start = time.perf_counter()
    logs = engine.containers.run(
        EVAL_TAG, network_mode="none", remove=True, stderr=True,
        volumes={str(inp): {"bind": "/input", "mode": "ro"}, str(result): {"bind": "/output", "mode": "rw"},
                 str(gt): {"bind": "/opt/ml/input/data/ground_truth", "mode": "ro"}})
    assert time.perf_counter() - start < 600, logs
    metrics = json.loads((result / "metrics.json").read_text())
    assert set(metrics["case"]) == {"phantom_008", "phantom_009"}
    from toolkit.evaluation.metrics import case_metrics
    from toolkit.io.images import read_image

    pred, _ = read_image(inp / "pk-phantom_008" / "output" / "images" / "kidney-segmentation" / "output.mha")
    ref, geo = read_image(gt / "phantom_008.nii.gz")
    expected = case_metrics(pred, ref, [1, 2], geo.spacing)
    assert metrics["case"]["phantom_008"]["2"]["Dice"] == pytest.approx(expected["2"]["Dice"])
    assert metrics["case"]["phantom_008"]["1"]["HD95"] == pytest.approx(expected["1"]["HD95"])
    assert np.isfinite(metrics["aggregates"]["foreground_mean"]["Dice"])
