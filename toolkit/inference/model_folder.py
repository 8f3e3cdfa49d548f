"""A trained configuration on disk: ``<WORK>/<ds>/models/<config>/`` with its folds' final checkpoints.

A predictor needs nothing else (docs/interfaces.md "Model folder and checkpoints"): ``plans.json`` and ``dataset.json`` copies written when
training started, and ``fold_<k>/checkpoint_final.pt``. The configuration's name is the folder's name.
Everything the user may get wrong (a missing file, a fold without a final checkpoint) is a
:class:`SegkitError` naming the path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.dataset.folds import parse_fold
from toolkit.dataset.labels import LabelSpec, dataset_label_spec
from toolkit.errors import SegkitError
from toolkit.io.atomic import read_json
from toolkit.planning.axes import working_entry

_FOLD_RE = re.compile(r"^fold_(\d+)$")
CHECKPOINT = "checkpoint_final.pt"


@dataclass(frozen=True)
class ModelFolder:
    """One configuration's model folder and the folds chosen from it."""

    root: Path
    config: str
    plans: dict[str, Any]
    dataset_json: dict[str, Any]
    folds: tuple[int | str, ...]  # fold indices and/or "all"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def plan(self) -> dict[str, Any]:
        """The configuration in working axis order (plans.json stores input order; planning/axes.py)."""
        return working_entry(self.plans, self.config)

    @property
    def previous_stage(self) -> str | None:
        return self.plan.get("previous_stage")

    @property
    def file_ending(self) -> str:
        return str(self.dataset_json["file_ending"])

    @property
    def num_image_channels(self) -> int:
        return len(self.dataset_json["channel_names"])

    @property
    def label_spec(self) -> LabelSpec:
        """What the network predicts (classes or regions, ignore value), from the copied ``dataset.json``."""
        return dataset_label_spec(self.dataset_json, self.root / "dataset.json")

    def checkpoint(self, fold: int | str) -> Path:
        return self.root / f"fold_{fold}" / CHECKPOINT


def available_folds(root: Path) -> list[int]:
    """Folds of ``root`` that have a final checkpoint, sorted."""
    folds = []
    for p in root.iterdir() if root.is_dir() else ():
        m = _FOLD_RE.match(p.name)
        if m and (p / CHECKPOINT).is_file():
            folds.append(int(m.group(1)))
    return sorted(folds)


def default_folds(root: Path) -> list[int | str]:
    """Every numbered fold with a final checkpoint; fold all only when there is none (as nnU-Net, fold all
    is never mixed into the cross-validation ensemble unless asked for: ``--folds 0 1 all``)."""
    folds: list[int | str] = list(available_folds(root))
    if not folds and (root / "fold_all" / CHECKPOINT).is_file():
        folds = ["all"]
    return folds


def load_model_folder(folder: str | Path, folds: list[int | str] | tuple[int | str, ...] | None = None) -> ModelFolder:
    """Read and check a model folder; ``folds=None`` takes :func:`default_folds`."""
    root = Path(folder)
    if not root.is_dir():
        raise SegkitError("model folder not found", root)
    plans = read_json(root / "plans.json")
    dataset_json = read_json(root / "dataset.json")
    config = root.name
    if config not in plans.get("configurations", {}):
        known = ", ".join(sorted(plans.get("configurations", {}))) or "none"
        raise SegkitError(f"plans.json has no configuration {config!r} (it has: {known}); "
                          "MODEL must be <WORK>/<dataset>/models/<config>", root)
    if folds is None:
        folds = default_folds(root)
        if not folds:
            raise SegkitError(f"no fold_<k>/{CHECKPOINT} found (is training finished?)", root)
    for k in folds:
        if not (root / f"fold_{k}" / CHECKPOINT).is_file():
            raise SegkitError("final checkpoint not found (is training of this fold finished?)",
                              root / f"fold_{k}" / CHECKPOINT)
    model = ModelFolder(root, config, plans, dataset_json, tuple(parse_fold(k) for k in folds))
    _ = model.label_spec  # a malformed label declaration is a one-line error before any network loads
    return model


def resolve_device(name: str | None) -> str:
    """``auto`` -> cuda if available, else mps, else cpu; explicit names are checked for availability."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SegkitError("CUDA requested but no CUDA device is available", name)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SegkitError("MPS requested but not available", name)
    if name.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise SegkitError("device must be auto, cpu, cuda[:N] or mps", name)
    return name


def load_network(checkpoint_path: Path, device: str):
    """The inference network of one fold: spec from the checkpoint, weights loaded strictly, single
    full-resolution output (deep supervision switched off after loading so every head's weight matches)."""
    import torch

    from toolkit.network.architecture import UNetSpec
    from toolkit.network.unet import build_network

    try:
        ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt file is the user's problem, not a bug
        raise SegkitError(f"unreadable checkpoint ({type(exc).__name__}: {exc})", checkpoint_path) from None
    try:  # a checkpoint without architecture fields (before issue 13) is a plain U-Net
        spec = UNetSpec.from_fields(ckpt["spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SegkitError(f"checkpoint has no usable network description ({exc})", checkpoint_path) from None
    network = build_network(spec)
    network.load_state_dict(ckpt["network_weights"])
    network.deep_supervision = False
    network.to(device).eval()
    return network, dict(ckpt.get("options") or {}), spec
