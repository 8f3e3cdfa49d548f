"""Grand-challenge packaging without an engine: Dockerfile, interfaces, inputs.json, static checks, the
in-container job and entry point run in-process on a tiny phantom bundle, and the evaluation entry point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from bundle_helpers import RESENC, make_tiny_bundle

from challenges.registry import get_adapter
from toolkit.containers import entrypoint, evaluation
from toolkit.containers.build import manylinux_tags, render_dockerfile
from toolkit.containers.checks import static_problems
from toolkit.containers.interface import (
    Interface,
    find_socket_image,
    gc_inputs_json,
    read_inputs_json,
    resolve_interface,
)
from toolkit.containers.job import OUTPUT_NAME, run_job, volumes_ml
from toolkit.containers.selftest import layout_jobs
from toolkit.errors import SegkitError
from toolkit.io.images import Geometry, read_geometry, read_image, write_image

ONE = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "kidney": 1, "tumor": 2}}
FOUR = {"channel_names": {"0": "FLAIR", "1": "MPRAGE", "2": "PD", "3": "T2"},
        "labels": {"background": 0, "lesion": 1}}


# -- Dockerfile -------------------------------------------------------------------------------------
def test_dockerfile_has_non_root_user_one_venv_layer_and_entrypoint():
    text = render_dockerfile("segkit-test-base:bookworm", "toolkit.containers.entrypoint", True, True)
    assert text.count("FROM segkit-test-base:bookworm") == 2
    final = text.split("FROM segkit-test-base:bookworm")[2]
    assert "useradd" in final and "\nUSER user\n" in final
    assert "COPY --from=install /opt/venv /opt/venv" in final and "wheels" not in final.replace("# ", "")
    assert "COPY bundle /opt/segkit/bundle" in final and "EXPOSE 4743" in final
    assert 'ENTRYPOINT ["/opt/venv/bin/python", "-m", "toolkit.containers.entrypoint"]' in final
    assert "$" not in text.replace("$PATH", "")  # every placeholder filled
    lean = render_dockerfile("python:3.11-slim", "toolkit.containers.evaluation", False, False)
    assert "COPY bundle" not in lean and "EXPOSE" not in lean.replace("# run-once mode: no port", "")
    with pytest.raises(SegkitError):
        render_dockerfile("bad image", "m", False, False)


def test_manylinux_tags_expand_down_to_2014():
    tags = manylinux_tags("2.36")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_28_x86_64" in tags
    assert "manylinux_2_17_x86_64" in tags and "manylinux2014_x86_64" in tags
    with pytest.raises(SegkitError):
        manylinux_tags("2.12")


# -- interfaces -------------------------------------------------------------------------------------
def test_interface_one_image_socket_from_kits19_yaml():
    itf = resolve_interface("kits19", get_adapter("kits19").container, ONE)
    assert [(s.slug, s.relative_path, s.channels) for s in itf.inputs] == [("ct-image", "images/ct-image", (0,))]
    assert itf.output.relative_path == "images/kidney-segmentation" and itf.json_outputs == ()
    assert Interface.from_json(json.loads(json.dumps(itf.to_json()))) == itf


def test_interface_four_channels_as_four_sockets_from_msles_yaml():
    itf = resolve_interface("msles", get_adapter("msles").container, FOUR)
    assert [s.channels for s in itf.inputs] == [(0,), (1,), (2,), (3,)]
    assert [s.slug for s in itf.inputs] == ["flair-mri", "mprage-mri", "pd-mri", "t2-mri"]
    with pytest.raises(SegkitError, match="model takes exactly channels"):
        resolve_interface("msles", get_adapter("msles").container, {**FOUR, "channel_names": {"0": "a", "1": "b",
                                                                                             "2": "c", "3": "d",
                                                                                             "4": "e"}})


def test_interface_all_channels_and_extra_json_output():
    container = {**get_adapter("decathlon").container,
                 "json_outputs": [{"slug": "lesion-volumes", "value": "volumes"}]}
    itf = resolve_interface("decathlon", container, FOUR)
    assert len(itf.inputs) == 1 and itf.inputs[0].channels is None
    assert [(s.slug, s.relative_path, s.value) for s in itf.json_outputs] == [
        ("lesion-volumes", "lesion-volumes.json", "volumes")]


@pytest.mark.parametrize("container, match", [
    ({"inputs": [{"slug": "a", "channel": 0}], "output": {"slug": "s", "kind": "png-slices"}}, "cannot be packaged"),
    ({"inputs": [{"slug": "a", "channel": 3}], "output": {"slug": "s"}}, "not among"),
    ({"inputs": [{"slug": "a", "channels": "all"}, {"slug": "b", "channel": 0}], "output": {"slug": "s"}},
     "only input"),
    ({"inputs": [{"channel": 0}], "output": {"slug": "s"}}, "slug"),
    ({}, "no container"),
    ({"inputs": [{"slug": "a", "channel": 0}], "output": {"slug": "s"}, "json_outputs": [{"slug": "j"}]},
     "value must be"),
])
def test_interface_rejects_what_grand_challenge_cannot_take(container, match):
    with pytest.raises(SegkitError, match=match):
        resolve_interface("x", container, ONE)


def test_chaos_png_output_is_refused_with_a_hint():
    with pytest.raises(SegkitError, match="kind=segmentation"):
        resolve_interface("chaos", get_adapter("chaos").container, ONE)


# -- inputs.json ------------------------------------------------------------------------------------
def _image(path: Path, value: float = 1.0, shape=(6, 8, 10)) -> Path:
    write_image(np.full(shape, value, np.float32), Geometry((1.0, 1.0, 2.5), (3.0, -4.0, 5.0),
                                                          (1, 0, 0, 0, 1, 0, 0, 0, 1)), path)
    return path


def test_inputs_json_finds_each_socket_by_slug_and_relative_path(tmp_path):
    itf = resolve_interface("msles", get_adapter("msles").container, FOUR)
    entries = gc_inputs_json(itf)
    entries[1]["interface"]["relative_path"] = "images/custom-place"  # the platform's path wins
    (tmp_path / "inputs.json").write_text(json.dumps(entries))
    for i, s in enumerate(itf.inputs):
        rel = "images/custom-place" if i == 1 else s.relative_path
        _image(tmp_path / rel / f"uuid-{i}.mha", i)
    parsed = read_inputs_json(tmp_path)
    found = [find_socket_image(tmp_path, parsed, s) for s in itf.inputs]
    assert [p.parent.name for p in found] == ["flair-mri", "custom-place", "pd-mri", "t2-mri"]


def test_inputs_json_problems_are_one_clear_line(tmp_path):
    itf = resolve_interface("kits19", get_adapter("kits19").container, ONE)
    with pytest.raises(SegkitError, match="inputs.json not found"):
        read_inputs_json(tmp_path)
    (tmp_path / "inputs.json").write_text("{not json")
    with pytest.raises(SegkitError, match="not valid JSON"):
        read_inputs_json(tmp_path)
    (tmp_path / "inputs.json").write_text(json.dumps([{"interface": {"slug": "other"}}]))
    with pytest.raises(SegkitError, match="'ct-image' is not in inputs.json"):
        find_socket_image(tmp_path, read_inputs_json(tmp_path), itf.inputs[0])
    (tmp_path / "inputs.json").write_text(json.dumps(gc_inputs_json(itf)))
    with pytest.raises(SegkitError, match="folder not found"):
        find_socket_image(tmp_path, read_inputs_json(tmp_path), itf.inputs[0])
    folder = tmp_path / "images" / "ct-image"
    _image(folder / "a.mha")
    _image(folder / "b.mha")
    with pytest.raises(SegkitError, match="exactly one"):
        find_socket_image(tmp_path, read_inputs_json(tmp_path), itf.inputs[0])


# -- static checks ----------------------------------------------------------------------------------
GOOD = {"Architecture": "amd64", "Os": "linux", "Size": 2_000_000_000,
        "Config": {"User": "user", "Entrypoint": ["/opt/venv/bin/python", "-m", "x"],
                   "Labels": {"org.segkit.version": "0.1.0", "org.segkit.bundle-sha256": "ab",
                              "org.segkit.challenge": "kits19"}}}
PASSWD = "root:x:0:0:root:/root:/bin/bash\nuser:x:999:999::/home/user:/bin/sh\n"


def _with(**config) -> dict:
    return {**GOOD, "Config": {**GOOD["Config"], **config}}


def test_static_checks_accept_a_good_image():
    assert static_problems(GOOD, "run", PASSWD) == []


@pytest.mark.parametrize("inspect, match", [
    (_with(User=""), "no USER"),
    (_with(User="root"), "non-root"),
    (_with(User="0:0"), "non-root"),
    (_with(User="ghost"), "does not exist in /etc/passwd"),
    (_with(Entrypoint=None, Cmd=None), "no ENTRYPOINT"),
    ({**GOOD, "Size": 11_000_000_000}, "over the 10.00 GB upload limit"),
    ({**GOOD, "Architecture": "arm64"}, "linux/amd64"),
    (_with(Labels={}), "label org.segkit.bundle-sha256 is missing"),
])
def test_static_checks_catch_each_violation(inspect, match):
    problems = static_problems(inspect, "run", PASSWD)
    assert any(match in p for p in problems), problems


def test_static_checks_invoke_mode_needs_label_and_port():
    assert any("api-method" in p for p in static_problems(GOOD, "invoke", PASSWD))
    labels = {**GOOD["Config"]["Labels"], "org.grand-challenge.api-method": "invoke"}
    ok = _with(Labels=labels, ExposedPorts={"4743/tcp": {}})
    assert static_problems(ok, "invoke", PASSWD) == []
    assert any("run-once image" in p for p in static_problems(ok, "run", PASSWD))


# -- the job, in-process ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_bundle(tiny_phantom_bundle) -> Path:
    return tiny_phantom_bundle


@pytest.fixture(scope="module")
def predictor(tiny_bundle):
    from toolkit.bundle.predictor import BundlePredictor

    return BundlePredictor.from_bundle(tiny_bundle, "cpu", tta=False)


def _kits_job(phantom_dataset: Path, root: Path, case: str = "phantom_008") -> tuple[Interface, Path]:
    itf = resolve_interface("kits19", {**get_adapter("kits19").container,
                                       "json_outputs": [{"slug": "volumes", "value": "volumes"}]},
                            json.loads((phantom_dataset / "dataset.json").read_text()))
    src = phantom_dataset / "imagesTs"
    shutil.copy(src / f"{case}_0000.nii.gz", root / f"{case}_0000.nii.gz")
    jobs = layout_jobs(root, itf, root / "jobs")
    return itf, jobs[0][1]


def test_job_writes_mha_on_the_input_grid_and_volumes(phantom_dataset, predictor, tmp_path):
    itf, job = _kits_job(phantom_dataset, tmp_path)
    out = tmp_path / "out"
    result = run_job(predictor, itf, job, out)
    seg, geo = read_image(out / "images" / "kidney-segmentation" / OUTPUT_NAME)
    in_shape, in_geo = read_geometry(next((job / "images" / "ct-image").glob("*.mha")))
    assert seg.shape == in_shape and geo.differs_from(in_geo, rel_tol=1e-9, dir_tol=1e-9) is None
    assert len(np.unique(seg)) > 1 and result["labels_present"] == sorted(np.unique(seg).tolist())
    volumes = json.loads((out / "volumes.json").read_text())
    assert volumes == volumes_ml(seg, geo, itf.labels) and set(volumes) == {"organ", "lesion"}
    voxel_ml = np.prod(geo.spacing_xyz) / 1000
    assert volumes["lesion"] == pytest.approx(np.count_nonzero(seg == 2) * voxel_ml)
    # the same case through `segkit predict`'s pipeline gives the same labels
    from toolkit.inference.pipeline import predict_folder

    predict_folder(predictor, phantom_dataset / "imagesTs", tmp_path / "host", 1, progress=False)
    host, _ = read_image(tmp_path / "host" / "phantom_008.nii.gz")
    assert np.array_equal(host, seg)


def test_job_runs_a_residual_encoder_bundle(phantom_dataset, tmp_path):
    """The container's job packs no architecture knowledge: the predictor builds the ResEnc U-Net from the
    checkpoint's spec, and the job's labels equal the host's `segkit predict` pipeline."""
    from toolkit.bundle.predictor import BundlePredictor
    from toolkit.inference.pipeline import predict_folder
    from toolkit.network.resenc import ResidualEncoderUNet

    bundle = make_tiny_bundle(phantom_dataset, tmp_path / "resenc", architecture=RESENC)
    predictor = BundlePredictor.from_bundle(bundle, "cpu", tta=False)
    assert all(isinstance(net, ResidualEncoderUNet) for net in predictor.first.networks)
    itf, job = _kits_job(phantom_dataset, tmp_path)
    run_job(predictor, itf, job, tmp_path / "out")
    seg, geo = read_image(tmp_path / "out" / "images" / "kidney-segmentation" / OUTPUT_NAME)
    in_shape, in_geo = read_geometry(next((job / "images" / "ct-image").glob("*.mha")))
    assert seg.shape == in_shape and geo.differs_from(in_geo, rel_tol=1e-9, dir_tol=1e-9) is None
    assert len(np.unique(seg)) > 1
    predict_folder(predictor, phantom_dataset / "imagesTs", tmp_path / "host", 1, progress=False)
    host, _ = read_image(tmp_path / "host" / "phantom_008.nii.gz")
    assert np.array_equal(host, seg)


def _settings(itf: Interface, tiny_bundle: Path, tmp_path: Path) -> Path:
    from toolkit.bundle.manifest import sha256_of

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"interface": itf.to_json(), "tta": False, "step": 0.5,
                                "bundle_manifest_sha256": sha256_of(tiny_bundle / "manifest.json")}))
    return path


def test_entrypoint_corrupt_or_missing_input_fails_loudly_without_output(phantom_dataset, tiny_bundle, tmp_path,
                                                                        capsys):
    itf, job = _kits_job(phantom_dataset, tmp_path)
    settings = _settings(itf, tiny_bundle, tmp_path)
    image = next((job / "images" / "ct-image").glob("*.mha"))
    image.write_bytes(b"ObjectType = Image\nNDims = 3\nthis is not an image")
    args = ["--settings", str(settings), "--bundle", str(tiny_bundle), "--input", str(job),
            "--output", str(tmp_path / "out"), "--device", "cpu"]
    assert entrypoint.main(args) == 2
    err = capsys.readouterr().err
    assert "segkit: error:" in err and image.name in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.mha"))
    image.unlink()
    assert entrypoint.main(args) == 2
    assert "expected exactly one .mha" in capsys.readouterr().err
    (job / "inputs.json").unlink()
    assert entrypoint.main(args) == 2
    assert "inputs.json not found" in capsys.readouterr().err


def test_entrypoint_refuses_weights_from_another_bundle(phantom_dataset, tiny_bundle, tmp_path, capsys):
    itf, job = _kits_job(phantom_dataset, tmp_path)
    settings = _settings(itf, tiny_bundle, tmp_path)
    data = json.loads(settings.read_text())
    settings.write_text(json.dumps({**data, "bundle_manifest_sha256": "0" * 64}))
    code = entrypoint.main(["--settings", str(settings), "--bundle", str(tiny_bundle), "--input", str(job),
                            "--output", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 2 and "differs from the one this image was packaged with" in capsys.readouterr().err


def test_two_channels_in_one_socket_are_split(tmp_path):
    from toolkit.containers.job import stage_socket

    a, b = _image(tmp_path / "a.mha", 1.0), _image(tmp_path / "b.mha", 7.0)
    vec = sitk.Compose([sitk.ReadImage(str(a)), sitk.ReadImage(str(b))])
    sitk.WriteImage(vec, str(tmp_path / "both.mha"))
    itf = resolve_interface("decathlon", get_adapter("decathlon").container,
                            {"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "x": 1}})
    stage = tmp_path / "stage"
    stage.mkdir()
    files = stage_socket(tmp_path / "both.mha", itf.inputs[0], 2, stage)
    assert sorted(files) == [0, 1]
    assert float(read_image(files[0])[0].mean()) == 1.0 and float(read_image(files[1])[0].mean()) == 7.0
    assert read_geometry(files[1])[1].differs_from(read_geometry(a)[1], 1e-9, 1e-9) is None
    with pytest.raises(SegkitError, match="needs 2 channels"):
        stage_socket(a, itf.inputs[0], 2, tmp_path / "stage2")


# -- evaluation entry point -------------------------------------------------------------------------
def test_evaluation_scores_jobs_like_grand_challenge(tmp_path):
    labels = {"background": 0, "organ": 1}
    ref = np.zeros((6, 8, 10), np.uint8)
    ref[2:4, 2:6, 2:8] = 1
    pred = ref.copy()
    pred[2, 2:6, 2:8] = 0  # half of the organ missed
    geo = Geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    gt = tmp_path / "gt"
    write_image(ref, geo, gt / "case7.mha")
    write_image(pred, geo, tmp_path / "input" / "job-1" / "output" / "images" / "seg" / "x.mha")
    jobs = [{"pk": "job-1", "status": "Succeeded",
             "inputs": [{"image": {"name": "case7_0000.nii.gz"}, "interface": {"slug": "ct-image"}}],
             "outputs": [{"interface": {"slug": "seg", "relative_path": "images/seg"}}]}]
    (tmp_path / "input" / "predictions.json").write_text(json.dumps(jobs))
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"labels": labels, "output": {"slug": "seg", "relative_path": "images/seg"}}))
    args = ["--settings", str(settings), "--input", str(tmp_path / "input"), "--ground-truth", str(gt),
            "--output", str(tmp_path / "out")]
    assert evaluation.main(args) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["case"]["case7"]["1"]["Dice"] == pytest.approx(2 * 24 / (24 + 48))
    assert metrics["aggregates"]["organ"]["Dice"]["mean"] == pytest.approx(2 / 3)
    assert metrics["aggregates"]["foreground_mean"]["Dice"] == pytest.approx(2 / 3)
    (gt / "case7.mha").unlink()
    assert evaluation.main(args) == 2


def test_evaluation_and_volumes_per_region(tmp_path):
    """A region model's container scores and measures regions (voxels holding any of their values)."""
    labels = {"background": 0, "whole": [1, 2], "core": 2, "ignore": 3}
    ref = np.zeros((4, 6, 6), np.uint8)
    ref[1:3, 1:5, 1:5] = 1
    ref[1:3, 2:4, 2:4] = 2
    ref[0, 0, 0] = 3
    pred = ref.copy()
    pred[1:3, 2:4, 2:4] = 1   # core predicted as edema: whole perfect, core missed
    pred[0, 0, 0] = 1         # on an ignored voxel: counts nowhere
    geo = Geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    write_image(ref, geo, tmp_path / "gt" / "c.mha")
    write_image(pred, geo, tmp_path / "input" / "job-1" / "output" / "images" / "seg" / "x.mha")
    jobs = [{"pk": "job-1", "status": "Succeeded",
             "inputs": [{"image": {"name": "c_0000.nii.gz"}, "interface": {"slug": "ct-image"}}],
             "outputs": [{"interface": {"slug": "seg", "relative_path": "images/seg"}}]}]
    (tmp_path / "input" / "predictions.json").write_text(json.dumps(jobs))
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"labels": labels, "output": {"slug": "seg", "relative_path": "images/seg"}}))
    assert evaluation.main(["--settings", str(settings), "--input", str(tmp_path / "input"), "--ground-truth",
                            str(tmp_path / "gt"), "--output", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["case"]["c"]) == {"(1, 2)", "2"}
    assert metrics["aggregates"]["whole"]["Dice"]["mean"] == pytest.approx(1.0)
    assert metrics["aggregates"]["core"]["Dice"]["mean"] == pytest.approx(0.0)
    volumes = volumes_ml(ref, geo, {"whole": [1, 2], "core": 2})
    assert volumes == {"whole": pytest.approx(32 * 2 / 1000), "core": pytest.approx(8 * 2 / 1000)}


# -- command line -----------------------------------------------------------------------------------
def _segkit(args: list[str], capsys) -> tuple[int, str]:
    from toolkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    return int(exc.value.code), capsys.readouterr().err


def test_package_without_engine_or_with_a_bad_interface_is_one_line(tiny_bundle, monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code, err = _segkit(["package", str(tiny_bundle), "--challenge", "kits19", "-t", "x:1", "--device", "cpu"],
                        capsys)
    assert code == 2 and "no Docker engine reachable" in err and len(err.strip().splitlines()) == 1
    code, err = _segkit(["package", str(tiny_bundle), "--challenge", "chaos", "-t", "x:1"], capsys)
    assert code == 2 and "cannot be packaged" in err
    code, err = _segkit(["package", str(tiny_bundle), "--challenge", "chaos", "-t", "x:1", "--device", "cpu",
                         "-O", "container.output.kind=segmentation"], capsys)  # the override reaches the engine
    assert code == 2 and "no Docker engine reachable" in err
    code, err = _segkit(["package", str(tiny_bundle), "--challenge", "kits19", "-t", "Bad Tag"], capsys)
    assert code == 2 and "invalid image tag" in err
    code, err = _segkit(["package-evaluation", "--challenge", "decathlon", "-t", "x:1"], capsys)
    assert code == 2 and "pass --dataset-json" in err


class _FakeEngine:
    """Just enough of docker's low-level API for the clean-up rule: images, tags, parents."""

    def __init__(self, images: dict[str, dict]):
        self.images = images  # short id -> {"tags": [...], "parent": short id or None}
        self.api = self

    def history(self, tag):
        image = next(i for i, v in self.images.items() if tag in v["tags"])
        chain = []
        while image:
            chain.append({"Id": f"sha256:{image}{'0' * 52}"})
            image = self.images[image]["parent"]
        return chain

    def inspect_image(self, short):
        from docker.errors import ImageNotFound

        if short not in self.images:
            raise ImageNotFound(short)
        return {"RepoTags": self.images[short]["tags"]}

    def remove_image(self, short):
        from docker.errors import APIError

        if any(v["parent"] == short for v in self.images.values()):
            raise APIError(f"conflict: {short} has dependent child images")
        parent = self.images.pop(short)["parent"]
        while parent and not self.images[parent]["tags"] and not any(
                v["parent"] == parent for v in self.images.values()):
            parent = self.images.pop(parent)["parent"]

    def info(self):
        return {"DockerRootDir": "/var/lib/docker"}


def _two_stage_engine() -> _FakeEngine:
    img = {"base00000000": {"tags": ["base:1"], "parent": None}}
    img.update({"inst1aaaaaaa": {"tags": [], "parent": "base00000000"},
                "inst2aaaaaaa": {"tags": [], "parent": "inst1aaaaaaa"},
                "fin1bbbbbbbb": {"tags": [], "parent": "base00000000"},
                "fin2bbbbbbbb": {"tags": ["algo:1"], "parent": "fin1bbbbbbbb"}})
    return _FakeEngine(img)


def test_build_clean_up_drops_the_install_stage_and_keeps_base_and_final_image():
    from toolkit.containers.build import drop_intermediates

    engine = _two_stage_engine()
    order = ["base00000000", "inst1aaaaaaa", "inst2aaaaaaa", "base00000000", "fin1bbbbbbbb", "fin2bbbbbbbb"]
    assert drop_intermediates(engine, order, "algo:1") == 1  # the leaf; its parent goes with it
    assert set(engine.images) == {"base00000000", "fin1bbbbbbbb", "fin2bbbbbbbb"}


def test_failed_build_clean_up_never_removes_the_tagged_base():
    from toolkit.containers.build import drop_intermediates

    engine = _two_stage_engine()
    del engine.images["fin2bbbbbbbb"], engine.images["fin1bbbbbbbb"]  # failed before the final stage
    drop_intermediates(engine, ["base00000000", "inst1aaaaaaa", "inst2aaaaaaa"], None)
    assert set(engine.images) == {"base00000000"}


def test_full_disk_build_error_names_the_data_root_and_the_remedy():
    from toolkit.containers.build import build_error

    text = build_error(_two_stage_engine(), "write /opt/venv/x.so: no space left on device\n")
    assert text.startswith("docker build failed: write /opt/venv/x.so") and "/var/lib/docker is full" in text
    assert "docker image prune" in text
    assert build_error(_two_stage_engine(), "COPY failed") == "docker build failed: COPY failed"


def test_failed_build_reports_its_own_error_when_the_clean_up_fails_too(tmp_path):
    from toolkit.containers.build import build_image

    class Gone(_FakeEngine):
        def build(self, **kwargs):
            yield {"stream": " ---> 0123456789ab\n"}  # a step image, as the classic builder prints it
            yield {"error": "COPY failed: file not found"}

        def inspect_image(self, short):
            raise ConnectionError("engine went away")

    logged: list[str] = []
    with pytest.raises(SegkitError, match="docker build failed: COPY failed"):
        build_image(Gone(_two_stage_engine().images), tmp_path, "algo:1", logged.append)
    assert any("could not remove the intermediate build images (ConnectionError" in line for line in logged)
