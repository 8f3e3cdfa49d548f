"""Named planner presets (``segkit plan --preset``): nnU-Net v2's planners as data, not subclasses.

``presets.yaml`` (shipped in the package) maps each preset name to overrides of
:class:`~toolkit.planning.settings.PlannerSettings` and the network's ``architecture`` (name, blocks
per encoder stage, convs per decoder stage). The numbers are nnunetv2 2.8.1's ExperimentPlanner and
nnUNetPlannerResEncM/L/XL (docs/method.md 1.3 "Presets"); ``bench/plans_vs_nnunet.py`` checks the plans
against the peer's on varied fingerprints.
"""

from __future__ import annotations

import functools
from dataclasses import fields, replace
from importlib import resources
from typing import Any

from toolkit.errors import SegkitError
from toolkit.planning.settings import ARCHITECTURES, PATCH_FITS_AT, PlannerSettings

PRESETS_FILE = "presets.yaml"
DEFAULT_PRESET = "default"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _convert(name: str, default: Any, value: Any) -> Any:
    """``value`` as the type of the field's default, or a one-line problem (raises)."""
    if isinstance(default, str):
        ok = isinstance(value, str)
        if ok and name == "patch_fits_at":
            ok = value in PATCH_FITS_AT
        if not ok:
            allowed = f"one of {', '.join(PATCH_FITS_AT)}" if name == "patch_fits_at" else "a string"
            raise ValueError(f"{name} must be {allowed} (got {value!r})")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if not (_number(value) and float(value) == int(value) and value > 0):
            raise ValueError(f"{name} must be a positive integer (got {value!r})")
        return int(value)
    if not (_number(value) and value > 0):
        raise ValueError(f"{name} must be a positive number (got {value!r})")
    return float(value)


def _blocks(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           and v > 0 for v in value):
        raise ValueError(f"architecture.{name} must be a non-empty list of positive integers (got {value!r})")
    return tuple(value)


def _architecture(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != {"name", "n_blocks_per_stage", "n_conv_per_stage_decoder"}:
        raise ValueError("architecture must have exactly: name, n_blocks_per_stage, n_conv_per_stage_decoder")
    if value["name"] not in ARCHITECTURES:
        raise ValueError(f"architecture.name must be one of {', '.join(ARCHITECTURES)} (got {value['name']!r})")
    enc = _blocks("n_blocks_per_stage", value["n_blocks_per_stage"])
    dec = _blocks("n_conv_per_stage_decoder", value["n_conv_per_stage_decoder"])
    if len(dec) != len(enc) - 1:
        raise ValueError("architecture.n_conv_per_stage_decoder needs one entry less than n_blocks_per_stage")
    return {"architecture": value["name"], "n_blocks_per_stage": enc, "n_conv_per_stage_decoder": dec}


def settings_from_mapping(name: str, values: Any) -> PlannerSettings:
    """PlannerSettings for preset ``name`` from its YAML mapping; ValueError names the bad key."""
    if not isinstance(values, dict):
        raise ValueError("must be a mapping of PlannerSettings fields")
    defaults = {f.name: f.default for f in fields(PlannerSettings)}
    tables = ("preset", "architecture", "n_blocks_per_stage", "n_conv_per_stage_decoder")
    changes: dict[str, Any] = {"preset": name}
    for key, value in values.items():
        if key == "architecture":
            changes.update(_architecture(value))
        elif key in defaults and key not in tables:
            changes[key] = _convert(key, defaults[key], value)
        else:
            known = ", ".join(k for k in defaults if k not in tables[1:] and k != "preset")
            raise ValueError(f"unknown key {key!r} (known: architecture, {known})")
    return replace(PlannerSettings(), **changes)


@functools.lru_cache(maxsize=1)
def load_presets() -> dict[str, PlannerSettings]:
    """Every preset of the shipped presets.yaml (safe_load), validated."""
    import yaml

    source = resources.files("toolkit.planning") / PRESETS_FILE
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or DEFAULT_PRESET not in raw:
        raise SegkitError(f"must map preset names to settings, including {DEFAULT_PRESET!r}", str(source))
    presets = {}
    for name, values in raw.items():
        try:
            presets[str(name)] = settings_from_mapping(str(name), values)
        except ValueError as exc:
            raise SegkitError(f"preset {name!r}: {exc}", str(source)) from None
    return presets


def preset_names() -> list[str]:
    return list(load_presets())


def load_preset(name: str | None) -> PlannerSettings:
    """The settings of preset ``name`` (None: the default preset); SegkitError lists the known ones."""
    presets = load_presets()
    key = DEFAULT_PRESET if name is None else name
    if key not in presets:
        raise SegkitError(f"unknown preset {key!r} (known: {', '.join(presets)})")
    return presets[key]


def preset_rules(settings: PlannerSettings, gpu_memory_gb: float, explicit_gpu: bool) -> list[str]:
    """The preset's rules for ``--explain``: source, network, GPU target, references, batch rules."""
    s = settings
    gpu_why = "--gpu-memory-gb" if explicit_gpu else "the preset's default"
    enc = ", ".join(str(b) for b in s.n_blocks_per_stage)
    dec = ", ".join(str(b) for b in s.n_conv_per_stage_decoder)
    unit = "residual blocks" if s.architecture == "residual_encoder_unet" else "convs"
    fit = ("batch 2 (the minimum batch)" if s.patch_fits_at == "min_batch" else
           f"the reference batch ({s.reference_batch_3d} in 3D, {s.reference_batch_2d} in 2D)")
    return [
        f"preset {s.preset}: nnunetv2 2.8.1 {s.nnunet_planner} (plans {s.nnunet_plans_name})",
        f"network: {s.architecture}; encoder {unit} per stage ({enc}); decoder convs per stage ({dec}); "
        "tables cut to the planned number of stages",
        f"GPU memory target {gpu_memory_gb:g} GB ({gpu_why}); references scale by {gpu_memory_gb:g} / "
        f"{s.reference_gpu_gb:g} GB",
        f"reference feature-map voxels: 3D {s.reference_voxels_3d:.3g} at batch {s.reference_batch_3d}, "
        f"2D {s.reference_voxels_2d:.3g} at batch {s.reference_batch_2d}",
        f"patch shrinks until {fit} fits; batch = headroom rounded down, at least {s.min_batch_size}, "
        f"at most {s.max_dataset_fraction_per_batch:.0%} of the dataset's voxels per batch",
    ]
