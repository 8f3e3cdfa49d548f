"""Intensity normalisation per channel (docs/method.md 1.3 "Normalisation").

Runs on the cropped image before resampling, as nnU-Net does, so that the non-zero mask used by
masked z-score still fits the image voxel for voxel.

- ``ct``: clip to the dataset's foreground 0.5/99.5 percentiles, subtract the foreground mean,
  divide by the foreground std (global statistics from the fingerprint, copied into the plans).
- ``zscore``: per image mean/std; with ``use_mask_for_norm`` only voxels inside the non-zero mask
  count and everything outside is set to 0.
The std is floored at 1e-8 so a constant image maps to 0 instead of NaN.
"""

from __future__ import annotations

import numpy as np

from toolkit.errors import SegkitError

SCHEMES = ("ct", "zscore")
_EPS = 1e-8


def normalize_ct(channel: np.ndarray, props: dict) -> np.ndarray:
    """Clip to the global foreground percentiles, then standardise with the global mean/std (in place)."""
    try:
        lo, hi = float(props["percentile_00_5"]), float(props["percentile_99_5"])
        mean, std = float(props["mean"]), float(props["std"])
    except (KeyError, TypeError) as exc:
        raise SegkitError(f"CT normalisation needs foreground intensity properties ({exc} missing)") from None
    np.clip(channel, lo, hi, out=channel)
    channel -= mean
    channel /= max(std, _EPS)
    return channel


def normalize_zscore(channel: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-image z-score (in place); with ``mask`` the statistics come from the mask and outside is 0."""
    if mask is None:
        mean, std = float(channel.mean(dtype=np.float64)), float(channel.std(dtype=np.float64))
        channel -= mean
        channel /= max(std, _EPS)
        return channel
    inside = channel[mask]
    if inside.size == 0:
        channel[...] = 0
        return channel
    mean, std = float(inside.mean(dtype=np.float64)), float(inside.std(dtype=np.float64))
    channel -= mean
    channel /= max(std, _EPS)
    channel[~mask] = 0
    return channel


def normalize(
    data: np.ndarray,
    schemes: list[str],
    use_mask: list[bool],
    mask: np.ndarray | None,
    intensity_properties: dict | None,
) -> np.ndarray:
    """Normalise every channel of ``data`` (c, *spatial; float32, modified in place) per the plan.

    ``intensity_properties`` is the plans' ``foreground_intensity_properties_per_channel`` (keys "0", "1"...).
    """
    if len(schemes) != data.shape[0] or len(use_mask) != data.shape[0]:
        raise SegkitError(f"plan normalisation lists {len(schemes)} channels but the case has {data.shape[0]}")
    for c, (scheme, masked) in enumerate(zip(schemes, use_mask, strict=True)):
        scheme = scheme.lower()
        if scheme == "ct":
            props = (intensity_properties or {}).get(str(c))
            if props is None:
                raise SegkitError(f"plan has no foreground intensity properties for CT channel {c}")
            normalize_ct(data[c], props)
        elif scheme == "zscore":
            normalize_zscore(data[c], mask if masked else None)
        else:
            raise SegkitError(f"unknown normalisation scheme {scheme!r} for channel {c} (known: {', '.join(SCHEMES)})")
    return data
