"""Self-test of a built algorithm image: run it on real cases as grand-challenge would, compare with the host.

Each case runs in its own container with no network, ``/input`` mounted read-only, ``/output`` a fresh
folder and a memory limit; the same cases are predicted on the host by the code path of ``segkit predict``
(:func:`toolkit.inference.pipeline.predict_folder` with the bundle predictor). A case passes when the
container exits 0, its label map equals the host's voxel for voxel, and its geometry is the input
image's. ``--test-input`` is either grand-challenge job folders (``<job>/inputs.json`` + socket folders)
or a folder of canonical images ``<case>_<XXXX><ending>``, which are laid out as jobs here (converted to
``.mha`` as grand-challenge converts uploads).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.containers.build import readable_by_all
from toolkit.containers.interface import Interface, find_socket_image, gc_inputs_json, read_inputs_json
from toolkit.containers.job import OUTPUT_NAME, stage_inputs
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_json
from toolkit.io.images import read_geometry, read_image

GEOMETRY_TOL = 1e-6


def _write_socket(images: list[Path], target: Path) -> None:
    """One socket image as .mha: a single channel converted, several composed into a vector image."""
    import SimpleITK as sitk

    target.parent.mkdir(parents=True, exist_ok=True)
    sitk.ProcessObject_SetGlobalWarningDisplay(False)  # NIfTI header items MetaImage has no place for
    parts = [sitk.ReadImage(str(p)) for p in images]
    sitk.WriteImage(parts[0] if len(parts) == 1 else sitk.Compose(parts), str(target), True)


def layout_jobs(test_input: Path, interface: Interface, dest: Path) -> list[tuple[str, Path]]:
    """(job name, job folder) for every case of ``test_input`` (see the module docstring)."""
    from toolkit.inference.pipeline import discover_inputs

    if not test_input.is_dir():
        raise SegkitError("test input folder not found", test_input)
    jobs = sorted(p for p in test_input.iterdir() if (p / "inputs.json").is_file())
    out = []
    for p in jobs:  # copied, so that modes can be made readable for the image's user
        shutil.copytree(p, dest / p.name, symlinks=False)
        out.append((p.name, dest / p.name))
    for case in [] if jobs else discover_inputs(test_input, interface.num_channels):
        if case.problem:
            raise SegkitError(case.problem, test_input)
        job = dest / case.id
        for socket in interface.inputs:
            chans = socket.channels if socket.channels is not None else range(interface.num_channels)
            _write_socket([case.images[c] for c in chans], job / socket.relative_path / f"{case.id}.mha")
        atomic_write_json(job / "inputs.json", gc_inputs_json(interface))
        out.append((case.id, job))
    readable_by_all(dest)
    return out


def host_predictions(predictor: Any, interface: Interface, jobs: list[tuple[str, Path]], work: Path) -> dict[str, Path]:
    """Each job's label file predicted on the host by ``segkit predict``'s pipeline."""
    from toolkit.inference.pipeline import predict_folder

    flat, out = work / "host_in", work / "host_out"
    flat.mkdir()
    for name, job in jobs:
        stage = work / "stage" / name
        stage.mkdir(parents=True)
        for c, p in enumerate(stage_inputs(interface, job, stage)):
            os.symlink(p.resolve(), flat / f"{name}_{c:04d}.mha")
    report = predict_folder(predictor, flat, out, interface.num_channels, progress=False)
    if report.failed:
        raise SegkitError(f"host prediction failed: {'; '.join(report.failed.values())}")
    found = {}
    for name, _ in jobs:
        files = [p for p in out.iterdir() if p.name.startswith(f"{name}.") and not p.name.endswith(".npz")]
        if len(files) != 1:
            raise SegkitError(f"host prediction of {name} wrote {len(files)} label files", out)
        found[name] = files[0]
    return found


def run_container(client, tag: str, job: Path, out: Path, mem_limit: str, timeout: float = 1200.0,
                  args: list[str] | None = None, weights: Path | None = None) -> tuple[int, str, float]:
    """One run-once job: (exit code, logs, seconds). No network, read-only /input, memory limit;
    ``weights``: a bundle folder mounted read-only at /opt/ml/model (as a weights tarball would be)."""
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o777)  # the image's non-root user must be able to write here
    volumes = {str(job.resolve()): {"bind": "/input", "mode": "ro"}, str(out.resolve()): {"bind": "/output", "mode": "rw"}}
    if weights is not None:
        volumes[str(weights.resolve())] = {"bind": "/opt/ml/model", "mode": "ro"}
    start = time.perf_counter()
    container = client.containers.run(tag, args or [], detach=True, network_mode="none", mem_limit=mem_limit,
                                      volumes=volumes)
    try:
        code = int(container.wait(timeout=timeout)["StatusCode"])
        logs = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    return code, logs, time.perf_counter() - start


def compare_case(name: str, job: Path, interface: Interface, container_out: Path, host_file: Path) -> dict[str, Any]:
    """Labels identical to the host's, geometry identical to the input's."""
    result: dict[str, Any] = {"case": name, "ok": False}
    produced = container_out / interface.output.relative_path / OUTPUT_NAME
    if not produced.is_file():
        result["problem"] = f"no {interface.output.relative_path}/{OUTPUT_NAME} written"
        return result
    seg, geo = read_image(produced)
    host, _ = read_image(host_file)
    shape, in_geo = read_geometry(find_socket_image(job, read_inputs_json(job), interface.inputs[0]))
    if seg.shape != tuple(shape) or seg.shape != host.shape:
        result["problem"] = f"shape {seg.shape}, input {tuple(shape)}, host {host.shape}"
        return result
    diff = geo.differs_from(in_geo, rel_tol=GEOMETRY_TOL, dir_tol=GEOMETRY_TOL)
    mismatched = int(np.count_nonzero(seg != host))
    result.update(mismatched_voxels=mismatched, geometry=diff or "identical",
                  labels=sorted(int(v) for v in np.unique(seg)))
    for socket in interface.json_outputs:
        if not (container_out / socket.relative_path).is_file():
            result["problem"] = f"JSON output {socket.relative_path} missing"
            return result
    if mismatched or diff:
        result["problem"] = f"{mismatched} voxel(s) differ from the host" if mismatched else f"geometry: {diff}"
        return result
    result["ok"] = True
    return result


def self_test(client, tag: str, predictor: Any, interface: Interface, test_input: Path,
              mem_limit: str = "16g", log=None, weights: Path | None = None) -> list[dict[str, Any]]:
    """Run every test case in the image and on the host; raise if any case fails (the export is refused)."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="segkit-selftest-") as tmp:
        work = Path(tmp)
        jobs = layout_jobs(Path(test_input), interface, work / "jobs")
        host = host_predictions(predictor, interface, jobs, work)
        results = []
        for name, job in jobs:
            code, logs, seconds = run_container(client, tag, job, work / "out" / name, mem_limit, weights=weights)
            if code != 0:
                tail = " | ".join(logs.strip().splitlines()[-3:])
                results.append({"case": name, "ok": False, "seconds": round(seconds, 2),
                                "problem": f"container exit {code}: {tail}"})
            else:
                results.append({**compare_case(name, job, interface, work / "out" / name, host[name]),
                                "seconds": round(seconds, 2)})
            r = results[-1]
            log(f"self-test {name}: {'ok' if r['ok'] else 'FAILED: ' + r['problem']} ({seconds:.1f} s in the container)")
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise SegkitError(f"self-test failed for {len(failed)} of {len(results)} case(s): "
                          + "; ".join(f"{r['case']}: {r['problem']}" for r in failed))
    return results
