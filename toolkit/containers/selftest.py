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

import json
import os
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.containers.build import readable_by_all
from toolkit.containers.interface import Interface, find_socket_image, gc_inputs_json, read_inputs_json
from toolkit.containers.job import OUTPUT_NAME, socket_geometry, stage_inputs
from toolkit.containers.platform import PLATFORM_DEFAULT, JobLimits, usage_line, verdict
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_json
from toolkit.io.images import read_image

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


def _engine_time(text: str) -> datetime:
    """Docker's RFC 3339 time with nanoseconds and ``Z`` (which Python 3.10's fromisoformat refuses)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not m:
        raise ValueError(text)
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{'+00:00' if m.group(3) == 'Z' else m.group(3)}")


def _run_seconds(state: dict[str, Any]) -> float | None:
    """The container's own run time (start to finish as the engine recorded it), without the time the
    engine took to create its file system (long on vfs engines, and not part of a platform job)."""
    try:
        start, end = (_engine_time(state[k]) for k in ("StartedAt", "FinishedAt"))
    except (KeyError, ValueError):
        return None
    return max(0.0, (end - start).total_seconds())


def peak_memory_mb(logs: str) -> float | None:
    """The peak resident memory the entry point reports in its JSON summary (the last such line)."""
    for line in reversed(logs.strip().splitlines()):
        if line.startswith("{") and "peak_rss_mb" in line:
            try:
                return float(json.loads(line)["peak_rss_mb"])
            except (ValueError, KeyError, TypeError):
                return None
    return None


def run_container(client, tag: str, job: Path, out: Path, limits: JobLimits = PLATFORM_DEFAULT,
                  args: list[str] | None = None, weights: Path | None = None) -> dict[str, Any]:
    """One run-once job under the platform's limits: no network, read-only /input, ``limits.memory_mb``
    as the memory limit (cgroup) and as RLIMIT_DATA (as the platform's shim sets it), ``limits.cpus``
    CPUs, a GPU only when ``limits.gpus``; stopped at the time limit. ``weights``: a bundle folder
    mounted read-only at /opt/ml/model (as a weights tarball would be). Returns exit code, logs, run
    seconds, whether it was OOM-killed or timed out, and the reported peak memory."""
    import docker

    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o777)  # the image's non-root user must be able to write here
    volumes = {str(job.resolve()): {"bind": "/input", "mode": "ro"}, str(out.resolve()): {"bind": "/output", "mode": "rw"}}
    if weights is not None:
        volumes[str(weights.resolve())] = {"bind": "/opt/ml/model", "mode": "ro"}
    data = limits.memory_mb * 1024 * 1024
    gpus = [docker.types.DeviceRequest(count=limits.gpus, capabilities=[["gpu"]])] if limits.gpus else None
    start = time.perf_counter()
    container = client.containers.run(
        tag, args or [], detach=True, network_mode="none", mem_limit=f"{limits.memory_mb}m",
        memswap_limit=f"{limits.memory_mb}m", nano_cpus=int(limits.cpus * 1e9), device_requests=gpus,
        ulimits=[docker.types.Ulimit(name="data", soft=data, hard=data)], volumes=volumes)
    timed_out = False
    try:
        try:
            code = int(container.wait(timeout=limits.time_limit_s + 30)["StatusCode"])
        except OSError:  # the client's read timeout (requests' errors are OSErrors): past the time limit
            timed_out, code = True, -1
            container.kill()
            container.wait(timeout=60)
        container.reload()
        logs = container.logs(stdout=True, stderr=True).decode(errors="replace")
        state = container.attrs.get("State", {})
    finally:
        container.remove(force=True)
    seconds = _run_seconds(state)
    return {"exit_code": code, "logs": logs, "timed_out": timed_out, "oom_killed": bool(state.get("OOMKilled")),
            "seconds": seconds if seconds is not None else time.perf_counter() - start,
            "peak_mb": peak_memory_mb(logs)}


def compare_case(name: str, job: Path, interface: Interface, container_out: Path, host_file: Path) -> dict[str, Any]:
    """Labels identical to the host's, geometry identical to the input's."""
    result: dict[str, Any] = {"case": name, "ok": False}
    produced = container_out / interface.output.relative_path / OUTPUT_NAME
    if not produced.is_file():
        result["problem"] = f"no {interface.output.relative_path}/{OUTPUT_NAME} written"
        return result
    seg, geo = read_image(produced)
    host, _ = read_image(host_file)
    shape, in_geo = socket_geometry(find_socket_image(job, read_inputs_json(job), interface.inputs[0]))
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
              limits: JobLimits = PLATFORM_DEFAULT, log=None, weights: Path | None = None) -> list[dict[str, Any]]:
    """Run every test case in the image under ``limits`` and on the host; raise if any case fails or would
    not fit the platform's job (the export is refused)."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    log(f"self-test under the job's limits: {limits.memory_mb} MB, {limits.cpus:g} CPU(s), "
        f"{limits.time_limit_s:.0f} s per case, {limits.gpus} GPU(s)")
    with tempfile.TemporaryDirectory(prefix="segkit-selftest-") as tmp:
        work = Path(tmp)
        jobs = layout_jobs(Path(test_input), interface, work / "jobs")
        host = host_predictions(predictor, interface, jobs, work)
        results = []
        for name, job in jobs:
            run = run_container(client, tag, job, work / "out" / name, limits, weights=weights)
            usage = {"seconds": round(run["seconds"], 2), "time_limit_s": limits.time_limit_s,
                     "peak_memory_mb": run["peak_mb"] and round(run["peak_mb"], 1),
                     "memory_limit_mb": limits.memory_mb}
            problem = verdict(name, run, limits)
            if problem:
                results.append({"case": name, "ok": False, **usage, "problem": problem})
            else:
                results.append({**compare_case(name, job, interface, work / "out" / name, host[name]), **usage})
            r = results[-1]
            log(f"self-test {usage_line(name, run['seconds'], run['peak_mb'], limits)}: "
                + ("ok" if r["ok"] else "FAILED: " + r["problem"]))
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise SegkitError(f"self-test failed for {len(failed)} of {len(results)} case(s): "
                          + "; ".join(f"{r['case']}: {r['problem']}" for r in failed))
    return results
