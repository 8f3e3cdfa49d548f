"""Every probability and range of the training augmentation, as data (docs/method.md 1.2).

One frozen :class:`AugmentationSettings` holds them; its defaults are the paper's values
(docs/method.md 1.2) and docs/augmentation.md lists each with its source and where nnU-Net v2 2.8.1 differs. The
settings travel in :class:`toolkit.training.options.TrainerOptions` (so every checkpoint records
them and a resumed run uses them) and can be overridden per run from a YAML file
(``segkit train/run --augmentation-config FILE.yaml``, :func:`load_settings_file`): any subset of
the keys, each checked here; an unknown key, a wrong type or an out-of-range value is a one-line
:class:`SegkitError` naming the file and the key. Angles are in degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from toolkit.errors import SegkitError

# value kinds: how a key is checked and converted
PROB, RANGE, ANGLE, RATIO, FRACTION, FLAG, AXES = (
    "probability", "range", "angle", "ratio", "fraction", "flag", "axes")


def _f(default: Any, kind: str, low: float | None = None, high: float | None = None) -> Any:
    """A settings field: ``kind`` and, for ranges, the bounds a (min, max) pair must lie within."""
    return field(default=default, metadata={"kind": kind, "low": low, "high": high})


@dataclass(frozen=True)
class AugmentationSettings:
    """The augmentation's parameters (defaults: docs/method.md 1.2; see docs/augmentation.md)."""

    # step 1: rotation and scaling (one resampling), then the centre crop to the patch
    p_rotation: float = _f(0.2, PROB)
    p_scale: float = _f(0.2, PROB)
    scale: tuple[float, float] = _f((0.7, 1.4), RANGE, 1e-3, 100.0)
    rotation_3d: float = _f(30.0, ANGLE)  # each of the three axes, isotropic 3D patches
    rotation_dummy_2d: float = _f(180.0, ANGLE)  # in-plane, anisotropic ("dummy 2D") 3D patches
    rotation_2d: float = _f(180.0, ANGLE)  # 2D patches
    rotation_2d_anisotropic: float = _f(15.0, ANGLE)  # 2D patches longer than anisotropic_2d_ratio
    dummy_2d_ratio: float = _f(3.0, RATIO)  # 3D patch with largest edge >= this x smallest: dummy 2D
    anisotropic_2d_ratio: float = _f(1.5, RATIO)  # 2D patch with longer edge > this x shorter
    sample_scale_min: float = _f(0.85, FRACTION)  # the drawn sample is sized for this scale
    # steps 2-7: intensity
    p_noise: float = _f(0.15, PROB)
    noise_std: tuple[float, float] = _f((0.0, 0.1), RANGE, 0.0, math.inf)
    p_blur: float = _f(0.2, PROB)
    p_blur_channel: float = _f(0.5, PROB)
    blur_sigma: tuple[float, float] = _f((0.5, 1.5), RANGE, 0.0, 100.0)
    p_brightness: float = _f(0.15, PROB)
    brightness: tuple[float, float] = _f((0.7, 1.3), RANGE, 0.0, 100.0)
    p_contrast: float = _f(0.15, PROB)
    contrast: tuple[float, float] = _f((0.65, 1.5), RANGE, 0.0, 100.0)
    p_lowres: float = _f(0.25, PROB)
    p_lowres_channel: float = _f(0.5, PROB)
    lowres_zoom: tuple[float, float] = _f((0.5, 1.0), RANGE, 0.01, 1.0)
    p_gamma: float = _f(0.15, PROB)
    p_gamma_inverted: float = _f(0.15, PROB)
    gamma: tuple[float, float] = _f((0.7, 1.5), RANGE, 1e-3, 100.0)
    # step 8: mirroring; None = every spatial axis of the patch, [] = none
    p_mirror: float = _f(0.5, PROB)
    mirror_axes: tuple[int, ...] | None = _f(None, AXES)
    # channels normalised inside the non-zero mask are set to 0 outside it afterwards
    reset_outside_mask: bool = _f(True, FLAG)
    # cascade full-res stage: corruption of the previous stage's one-hot mask
    p_binary_operator: float = _f(0.4, PROB)
    ball_radius: tuple[float, float] = _f((1.0, 8.0), RANGE, 0.0, 1000.0)
    p_remove_component: float = _f(0.2, PROB)
    max_component_fraction: float = _f(0.15, FRACTION)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, floats, bools, None): what checkpoints store (weights_only-safe)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | Path = "augmentation settings") -> AugmentationSettings:
        """Settings from (a subset of) the keys, the rest default; checked as :func:`with_overrides`."""
        return with_overrides(cls(), values, source)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _convert(kind: str, low: float | None, high: float | None, value: Any) -> tuple[Any, str | None]:
    """(converted value, None) or (None, what is wrong)."""
    if kind == FLAG:
        return (value, None) if isinstance(value, bool) else (None, "must be true or false")
    if kind == AXES:
        if value is None:
            return None, None
        if (not isinstance(value, list | tuple) or not all(isinstance(a, int) and not isinstance(a, bool) for a in value)
                or len(set(value)) != len(value) or not set(value) <= {0, 1, 2}):
            return None, "must be null or a list of distinct spatial axes among 0, 1, 2"
        return tuple(sorted(value)), None
    if kind == RANGE:
        if not isinstance(value, list | tuple) or len(value) != 2 or not all(map(_number, value)):
            return None, "must be a list of two numbers [min, max]"
        lo, hi = float(value[0]), float(value[1])
        if not (low <= lo <= hi <= high):
            return None, f"must satisfy {low:g} <= min <= max <= {high:g}"
        return (lo, hi), None
    if not _number(value):
        return None, "must be a number"
    value = float(value)
    checks = {PROB: (0 <= value <= 1, "a probability in [0, 1]"), ANGLE: (0 <= value <= 180, "in [0, 180] degrees"),
              RATIO: (value >= 1, ">= 1"), FRACTION: (0 < value <= 1, "in (0, 1]")}
    ok, what = checks[kind]
    return (value, None) if ok else (None, f"must be {what}")


def with_overrides(base: AugmentationSettings, values: Any, source: str | Path) -> AugmentationSettings:
    """``base`` with the keys of ``values`` replaced; a bad key is a :class:`SegkitError` naming ``source``."""
    if not isinstance(values, dict):
        raise SegkitError("augmentation settings must be a mapping of setting names to values", source)
    known = {f.name: f for f in fields(AugmentationSettings)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise SegkitError(f"unknown augmentation setting {key!r} (known: {', '.join(known)})", source)
        meta = known[key].metadata
        converted, problem = _convert(meta["kind"], meta["low"], meta["high"], value)
        if problem:
            raise SegkitError(f"augmentation setting {key!r}: {problem} (got {value!r})", source)
        changes[key] = converted
    return replace(base, **changes)


def load_settings_file(path: str | Path, base: AugmentationSettings | None = None) -> AugmentationSettings:
    """``base`` (default: the defaults) overridden by the YAML mapping in ``path`` (safe_load)."""
    import yaml

    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SegkitError(f"cannot read the augmentation config ({exc.strerror or exc})", path) from None
    except yaml.YAMLError as exc:
        raise SegkitError(f"invalid YAML ({' '.join(str(exc).split())})", path) from None
    return with_overrides(base or AugmentationSettings(), {} if values is None else values, path)
