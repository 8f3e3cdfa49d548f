"""The fingerprint of one training case: read, crop to non-zero, measure, sample foreground.

Runs in a worker process, one case at a time, so peak memory is one case (all channels + label)
per worker. 2D images are treated as 3D with one slice of spacing 999 mm (nnU-Net v2's convention),
so 2D and 3D datasets share one fingerprint format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.dataset import Case
from toolkit.errors import SegkitError
from toolkit.fingerprint.intensity import Sample, sample_foreground
from toolkit.io.images import read_case_images, read_image
from toolkit.preprocessing.cropping import crop_to_nonzero

FAKE_2D_SPACING = 999.0


@dataclass(frozen=True)
class CaseFingerprint:
    case_id: str
    spacing: list[float]
    shape_before_crop: list[int]
    shape_after_crop: list[int]
    relative_size_after_crop: float
    foreground_voxels: int
    samples: list[Sample]  # one per channel


def analyze_case(case: Case, quota: int, seed: int, index: int) -> CaseFingerprint:
    """Fingerprint one case; the sampling RNG is seeded by (seed, index), so worker order never matters."""
    if case.label is None:
        raise SegkitError("training case has no label file", case.images[0])
    data, geometry = read_case_images(list(case.images))
    seg, _ = read_image(case.label)
    if seg.shape != data.shape[1:]:
        raise SegkitError(f"label shape {seg.shape} differs from the image's {data.shape[1:]}", case.label)
    spacing = [float(s) for s in geometry.spacing]
    if data.ndim == 3:  # 2D image: (c, y, x) -> (c, 1, y, x)
        data, seg, spacing = data[:, None], seg[None], [FAKE_2D_SPACING, *spacing]
    before = data.shape[1:]
    cropped, cropped_seg, _, _ = crop_to_nonzero(data, seg)
    after = cropped.shape[1:]
    foreground = cropped_seg > 0
    rng = np.random.default_rng([seed, index])
    samples = [sample_foreground(channel[foreground], quota, rng) for channel in cropped]
    return CaseFingerprint(
        case_id=case.id,
        spacing=spacing,
        shape_before_crop=[int(s) for s in before],
        shape_after_crop=[int(s) for s in after],
        relative_size_after_crop=float(np.prod(after, dtype=np.float64) / np.prod(before, dtype=np.float64)),
        foreground_voxels=int(foreground.sum()),
        samples=samples,
    )
