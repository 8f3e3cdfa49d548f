"""``segkit package`` and ``segkit package-evaluation``: bundle -> checked, self-tested, exported image.

Order: check the bundle (checksums) and the challenge's interface -> reach the engine, probe the base
image's Python and glibc -> build context (wheelhouse, bundle or not, settings.json, Dockerfile) ->
classic build -> static checks (user, platform, entry point, labels, size) -> optional self-test on real
cases -> export (``docker save | gzip``; weights tarball beside it with ``--weights-tarball``). Any
failure stops before export, so a written ``image.tar.gz`` always passed every check that was asked for.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.containers import build
from toolkit.containers.checks import check_size, static_problems
from toolkit.containers.interface import Interface, resolve_interface
from toolkit.containers.platform import PLATFORM_DEFAULT, JobLimits
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_json, read_json


@dataclass
class PackageOptions:
    bundle: Path
    challenge: str  # the name, for labels and messages
    container: dict[str, Any]  # the challenge's ``container`` section (looked up by the CLI layer)
    tag: str
    out: Path | None = None
    test_input: Path | None = None
    device: str = "cpu"  # the platform's default job has no GPU
    base_image: str = build.DEFAULT_BASE_IMAGE
    weights_tarball: bool = False
    mode: str = "run"
    tta: bool = True
    step: float = 0.5
    limits: JobLimits = PLATFORM_DEFAULT  # the self-test's job: memory, CPUs, time limit, GPUs
    pip_args: tuple[str, ...] = ()
    context: Path | None = None  # keep the build context here (for inspection); default: temporary
    keep_build_cache: bool = False  # keep the install stage's intermediate images (faster rebuilds, more disk)


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _check_tag(tag: str) -> None:
    if not tag or " " in tag or tag != tag.lower() or tag.startswith((":", "/")):
        raise SegkitError(f"invalid image tag {tag!r} (expected lower-case NAME[:TAG])")


def _wheelhouse(client, base_image: str, dest: Path, names: tuple[str, ...], device: str,
                pip_args: tuple[str, ...]) -> dict[str, str]:
    info = build.probe_base(client, base_image)
    log(f"base image {base_image}: Python {info['python']}, glibc {info['glibc']}")
    dest.mkdir(parents=True)
    wheels = build.download_wheelhouse(dest, build.pinned_requirements(names, device), info["python"],
                                       info["glibc"], pip_args)
    torch = [w.name for w in wheels if w.name.startswith("torch-")]
    if device == "cuda" and any("+cpu" in w for w in torch):
        raise SegkitError("--device cuda but pip found only a CPU build of torch; point pip at an index "
                          "with the CUDA build (e.g. --pip-arg=--index-url=https://pypi.org/simple)")
    (dest.parent / "project").mkdir()
    build.build_project_wheel(dest.parent / "project")
    return info


def _build_and_check(client, ctx: Path, tag: str, mode: str, keep_cache: bool) -> dict[str, Any]:
    image_id, seconds = build.build_image(client, ctx, tag, log, keep_cache)
    inspect = client.api.inspect_image(tag)
    problems = static_problems(inspect, mode, build.image_passwd(client, tag))
    if problems:
        raise SegkitError("image fails grand-challenge's rules: " + "; ".join(problems), ctx / "Dockerfile")
    log(f"built {tag} ({image_id[:19]}) in {seconds:.1f} s, {inspect['Size'] / 1e6:.0f} MB; static checks passed")
    return {"image": tag, "id": image_id, "build_seconds": round(seconds, 2), "image_bytes": int(inspect["Size"])}


def _export(client, tag: str, out: Path, report: dict[str, Any]) -> None:
    start = time.perf_counter()
    size = build.export_image(client, tag, out)
    report.update(export=str(out), export_bytes=size, export_seconds=round(time.perf_counter() - start, 2))
    problems = check_size(size, what="exported image")
    if problems:
        out.unlink()
        raise SegkitError(problems[0], out)
    log(f"exported {out} ({size / 1e6:.0f} MB)")


def _context(opts_context: Path | None) -> tuple[Path, bool]:
    if opts_context is None:
        return Path(tempfile.mkdtemp(prefix="segkit-context-")), True
    if opts_context.exists() and any(opts_context.iterdir()):
        raise SegkitError("build context folder exists and is not empty", opts_context)
    opts_context.mkdir(parents=True, exist_ok=True)
    return opts_context, False


def package(opts: PackageOptions) -> dict[str, Any]:
    """Build (and optionally self-test and export) the algorithm image of a bundle; returns a report."""
    from toolkit.bundle.manifest import sha256_of, verify_bundle

    _check_tag(opts.tag)
    if opts.device not in ("cpu", "cuda") or opts.mode not in ("run", "invoke"):
        raise SegkitError(f"--device must be cpu or cuda and --mode run or invoke, got {opts.device!r}, {opts.mode!r}")
    manifest = verify_bundle(opts.bundle)
    interface = resolve_interface(opts.challenge, opts.container, read_json(opts.bundle / "dataset.json"))
    manifest_sha = sha256_of(opts.bundle / "manifest.json")
    client = build.docker_client()
    build.ensure_image(client, opts.base_image)
    ctx, temporary = _context(opts.context)
    try:
        base = _wheelhouse(client, opts.base_image, ctx / "wheels", build.ALGORITHM_REQUIREMENTS, opts.device,
                           opts.pip_args)
        if not opts.weights_tarball:
            shutil.copytree(opts.bundle, ctx / "bundle")
        atomic_write_json(ctx / "settings.json", {
            "interface": interface.to_json(), "bundle_manifest_sha256": manifest_sha, "tta": opts.tta,
            "step": opts.step, "mode": opts.mode, "dataset": manifest.get("dataset")})
        labels = build.labels_for(opts.challenge, manifest_sha, opts.mode,
                                  {"org.segkit.device": opts.device, "org.segkit.dataset": manifest.get("dataset", "")})
        (ctx / "Dockerfile").write_text(build.render_dockerfile(
            opts.base_image, "toolkit.containers.entrypoint", not opts.weights_tarball, opts.mode == "invoke",
            labels=labels))
        build.readable_by_all(ctx)
        report = {**_build_and_check(client, ctx, opts.tag, opts.mode, opts.keep_build_cache), "python": base["python"],
                  "wheelhouse_bytes": sum(p.stat().st_size for p in (ctx / "wheels").glob("*.whl"))}
    finally:
        if temporary:
            shutil.rmtree(ctx, ignore_errors=True)
    if opts.test_input is not None:
        report["self_test"] = _self_test(client, opts, interface)
    if opts.out is not None:
        _export(client, opts.tag, opts.out, report)
        if opts.weights_tarball:
            weights = opts.out.with_name(opts.out.name.replace(".tar.gz", "") + "-model.tar.gz")
            report.update(weights=str(weights), weights_bytes=build.weights_tarball(opts.bundle, weights))
    return report


def _self_test(client, opts: PackageOptions, interface: Interface) -> list[dict[str, Any]]:
    from toolkit.bundle.predictor import BundlePredictor
    from toolkit.containers.selftest import self_test

    predictor = BundlePredictor.from_bundle(opts.bundle, "cpu", opts.tta, opts.step)
    weights = opts.bundle if opts.weights_tarball else None  # as grand-challenge extracts the tarball
    return self_test(client, opts.tag, predictor, interface, opts.test_input, opts.limits, log, weights)


def ground_truth_socket(challenge: str, container: dict[str, Any]) -> str:
    """The input socket whose image name is the ground-truth case: ``container.ground_truth_socket``, else
    the first of ``container.inputs`` (an order the YAML fixes, unlike a job's input order)."""
    slugs = [e.get("slug") for e in container.get("inputs") or [] if isinstance(e, dict)]
    socket = container.get("ground_truth_socket") or (slugs[0] if slugs else None)
    if not isinstance(socket, str) or not socket:
        raise SegkitError(f"challenge {challenge!r}: no container.inputs or container.ground_truth_socket to "
                          "match algorithm jobs to their ground truth")
    if slugs and socket not in slugs:
        raise SegkitError(f"challenge {challenge!r}: container.ground_truth_socket {socket!r} is not among its "
                          f"input sockets ({', '.join(map(str, slugs))})")
    return socket


def package_evaluation(challenge: str, container: dict[str, Any], class_labels: dict[str, Any] | None, tag: str,
                       out: Path | None = None, base_image: str = build.DEFAULT_BASE_IMAGE,
                       tolerance_mm: float = 1.0, pip_args: tuple[str, ...] = (),
                       keep_build_cache: bool = False) -> dict[str, Any]:
    """Build the evaluation image of a challenge (metrics.json from predictions.json + ground truth).

    ``container`` is the challenge's ``container`` section and ``class_labels`` its labels (name -> value),
    both given by the caller: the engine does not read challenge adapters."""
    _check_tag(tag)
    if not class_labels:
        raise SegkitError(f"challenge {challenge!r} has no labels in its YAML; pass --dataset-json")
    gt_socket = ground_truth_socket(challenge, container)
    ds = {"channel_names": {"0": "image"}, "labels": class_labels}
    container = {**container, "inputs": [{"slug": "image", "channel": 0}]}
    interface = resolve_interface(challenge, container, ds)  # checks the output socket the same way
    client = build.docker_client()
    build.ensure_image(client, base_image)
    ctx = Path(tempfile.mkdtemp(prefix="segkit-context-"))
    try:
        _wheelhouse(client, base_image, ctx / "wheels", build.EVALUATION_REQUIREMENTS, "cpu", pip_args)
        atomic_write_json(ctx / "settings.json", {
            "labels": interface.labels, "tolerance_mm": tolerance_mm, "ground_truth_socket": gt_socket,
            "output": {"slug": interface.output.slug, "relative_path": interface.output.relative_path}})
        labels = build.labels_for(challenge, "none (evaluation)", "run", {"org.segkit.kind": "evaluation"})
        (ctx / "Dockerfile").write_text(build.render_dockerfile(
            base_image, "toolkit.containers.evaluation", False, False, "package-evaluation", labels))
        build.readable_by_all(ctx)
        report = _build_and_check(client, ctx, tag, "run", keep_build_cache)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    if out is not None:
        _export(client, tag, out, report)
    return report
