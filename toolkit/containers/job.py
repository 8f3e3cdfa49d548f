"""One grand-challenge job: ``/input`` (inputs.json + socket folders) -> ``/output`` with a loaded bundle.

The socket images are staged as ``case_XXXX.mha`` channel files in a private scratch folder (symlinks
when a socket is one channel, split components or 4D volumes otherwise), then the bundle predictor
runs exactly as ``segkit predict`` does (same preprocess, ensemble, export, postprocessing). The
label map is written as ``.mha`` with the geometry read from the input image's own header, so the
output sits on the input grid whatever the bundle's native file format is. Every failure raises
:class:`SegkitError` naming the file; nothing is written to ``/output`` unless the whole job succeeded
(outputs are written last, atomically), so a failed job never leaves a silent empty output.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.containers.interface import Interface, Socket, find_socket_image, read_inputs_json
from toolkit.dataset.labels import target_values
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_json
from toolkit.io.images import Geometry, read_geometry, read_image, write_image

OUTPUT_NAME = "output.mha"


def _read_sitk(path: Path):
    import SimpleITK as sitk

    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise SegkitError(f"unreadable or corrupt image ({line})", path) from None


def socket_geometry(path: Path) -> tuple[tuple[int, ...], Geometry]:
    """(shape (z, y, x), geometry) of a socket's input: an image file or a DICOM image set's folder."""
    if path.is_dir():
        from toolkit.io.dicom import dicom_series

        series = dicom_series(path)
        return series.shape, series.geometry
    shape, geometry = read_geometry(path)
    return tuple(shape), geometry


def _stage_dicom_set(folder: Path, socket: Socket, chans: list[int], stage: Path) -> dict[int, Path]:
    """A DICOM image set is one channel: its series, in physical slice order, written as ``.mha``."""
    from toolkit.io.dicom import read_dicom_series

    if len(chans) != 1:
        raise SegkitError(f"input socket {socket.slug!r} is a DICOM image set (one channel); the interface "
                          f"gives it channels {chans}", folder)
    array, geometry = read_dicom_series(folder)
    target = stage / f"case_{chans[0]:04d}.mha"
    write_image(array, geometry, target)
    return {chans[0]: target}


def stage_socket(path: Path, socket: Socket, num_channels: int, stage: Path) -> dict[int, Path]:
    """Write (or link) the channel files a socket provides: {channel: staged file}. ``path`` is the
    socket's image file, or the folder of a DICOM image set."""
    import SimpleITK as sitk

    chans = list(socket.channels) if socket.channels is not None else list(range(num_channels))
    if path.is_dir():
        return _stage_dicom_set(path, socket, chans, stage)
    if len(chans) == 1:
        read_geometry(path)  # header check: a corrupt file fails here, naming it
        target = stage / f"case_{chans[0]:04d}.mha"
        os.symlink(path.resolve(), target)
        return {chans[0]: target}
    img = _read_sitk(path)
    comps, dim = img.GetNumberOfComponentsPerPixel(), img.GetDimension()
    if comps == len(chans):
        parts = [sitk.VectorIndexSelectionCast(img, i) for i in range(comps)]
    elif comps == 1 and dim == 4 and img.GetSize()[3] == len(chans):
        size = list(img.GetSize()[:3]) + [0]
        parts = [sitk.Extract(img, size, [0, 0, 0, i]) for i in range(len(chans))]
    else:
        raise SegkitError(f"input socket {socket.slug!r}: image has {comps} component(s) and "
                          f"{dim} dimension(s); the model needs {len(chans)} channels in it", path)
    out = {}
    for c, part in zip(chans, parts, strict=True):
        out[c] = stage / f"case_{c:04d}.mha"
        sitk.WriteImage(part, str(out[c]))
    return out


def stage_inputs(interface: Interface, input_dir: Path, stage: Path) -> list[Path]:
    """All channel files of the job, in channel order, checked to lie on one grid."""
    from toolkit.inference.pipeline import InputCase, check_geometry

    entries = read_inputs_json(input_dir)
    files: dict[int, Path] = {}
    for socket in interface.inputs:
        image = find_socket_image(input_dir, entries, socket)
        files.update(stage_socket(image, socket, interface.num_channels, stage))
    images = [files[c] for c in range(interface.num_channels)]
    check_geometry(InputCase("case", images, ".mha"))
    return images


def volumes_ml(seg: np.ndarray, geometry: Geometry, labels: dict[str, int | list[int]]) -> dict[str, float]:
    """Volume of every foreground class, or region (voxels holding any of its values), in millilitres."""
    voxel_ml = float(np.prod(geometry.spacing_xyz)) / 1000.0
    targets = {name: target_values(v) for name, v in labels.items()}
    top = max((max(v) for v in targets.values()), default=0)
    counts = np.bincount(seg.ravel().astype(np.int64), minlength=top + 1)
    return {name: float(sum(counts[v] for v in values)) * voxel_ml
            for name, values in sorted(targets.items(), key=lambda kv: kv[1]) if values != (0,)}


def run_job(predictor: Any, interface: Interface, input_dir: Path, output_dir: Path,
            scratch: Path | None = None) -> dict[str, Any]:
    """Predict the job in ``input_dir`` into ``output_dir``; returns what was written and how long it took."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="segkit-job-", dir=scratch) as tmp:
        stage = Path(tmp) / "in"
        stage.mkdir()
        images = stage_inputs(interface, Path(input_dir), stage)
        shape, geometry = read_geometry(images[0])
        pre = predictor.preprocess("case", images)
        probabilities = predictor.predict(pre)
        pred_dir = Path(tmp) / "pred"
        pred_dir.mkdir()
        predictor.export(probabilities, pre, pred_dir / "case")
        produced = [p for p in pred_dir.iterdir() if p.name.startswith("case") and not p.name.endswith(".npz")]
        if len(produced) != 1:
            raise RuntimeError(f"the predictor wrote {len(produced)} label files, expected one")
        seg, _ = read_image(produced[0])
    if tuple(seg.shape) != tuple(shape):
        raise RuntimeError(f"prediction shape {seg.shape} differs from the input's {shape}")
    written = []
    for socket in interface.json_outputs:  # JSON first, the image last: the image marks a finished job
        path = Path(output_dir) / socket.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, volumes_ml(seg, geometry, interface.labels))
        written.append(str(path))
    out = Path(output_dir) / interface.output.relative_path / OUTPUT_NAME
    write_image(seg, geometry, out)
    written.append(str(out))
    return {"outputs": written, "seconds": round(time.perf_counter() - start, 3),
            "labels_present": sorted(int(v) for v in np.unique(seg))}
