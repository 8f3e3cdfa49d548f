"""Fine-tuning: start a training run from another run's checkpoint (``--pretrained-weights``).

Rules (nnU-Net v2's ``load_pretrained_weights`` transfers every tensor whose name and shape match and
never the segmentation layers; segkit keeps the name-and-shape rule and decides on the heads by the
label sets):
- every tensor of the new network whose name is in the checkpoint with the same shape is loaded;
- a tensor missing from the checkpoint, or present with another shape, keeps its fresh initialisation
  (the run's seed), and the log says which and why;
- the output heads (``heads.*``, the 1x1 convolutions producing the class scores) are re-initialised
  whenever the checkpoint's label values differ from the target's, even if their shapes happen to
  match (the same channel count then means other classes), or when one predicts regions and the other
  classes, or other regions; with the same label set they are loaded.
  Re-initialised means a fresh network's He initialisation, as nnU-Net leaves its segmentation layers:
  the first few fine-tuning iterations depend on that draw, the first epoch's mean loss is lower than
  from scratch (measured in tests/test_finetune.py);
- the image channel count must match (a different input modality set is a user error, one line);
- the checkpoint is read with ``weights_only=True`` and recorded by path and SHA-256 in the run's
  options (checkpoint ``options``: ``pretrained_weights``, ``pretrained_sha256``).
``--pretrained-weights`` together with ``--resume`` is an error (as in nnU-Net: pretrained weights only
start a run; a resumed run continues its own weights). ``segkit run`` loads them only into folds that
start from scratch; a fold that resumes keeps its checkpoint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from toolkit.errors import SegkitError

HEAD_PREFIX = "heads."


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(path: str | Path) -> tuple[str, str]:
    """(absolute path, SHA-256) of a pretrained checkpoint, checked to exist."""
    p = Path(path)
    if not p.is_file():
        raise SegkitError("pretrained checkpoint not found", p)
    return str(p.resolve()), file_sha256(p)


@dataclass
class Transfer:
    """What was loaded from a checkpoint and what was not (name -> reason)."""

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    heads_reinitialised: bool = False

    def lines(self, path: str) -> list[str]:
        out = [f"pretrained weights {path}: loaded {len(self.loaded)} tensor(s), kept the fresh initialisation "
               f"of {len(self.skipped)}"]
        out += [f"  loaded: {name}" for name in self.loaded]
        out += [f"  not loaded: {name} ({why})" for name, why in self.skipped.items()]
        return out


def _read(path: str | Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file: one line
        raise SegkitError(f"unreadable checkpoint ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("network_weights"), dict):
        raise SegkitError("not a segkit checkpoint (no 'network_weights')", path)
    return ckpt


def _check_channels(ckpt: dict[str, Any], image_channels: int, cascade_channels: int, path: str | Path) -> None:
    spec = ckpt.get("spec") or {}
    theirs = spec.get("in_channels")
    if theirs is None:
        return
    expected = image_channels + cascade_channels
    if int(theirs) != expected:
        # a cascade stage's extra channels are one per class: compare the image channels where we can
        raise SegkitError(f"the checkpoint's network takes {theirs} input channel(s), this run needs {expected} "
                          f"({image_channels} image channel(s){' + cascade' if cascade_channels else ''}); "
                          "fine-tuning needs the same input channels", path)


def load_pretrained(network: torch.nn.Module, path: str | Path, labels: tuple[int, ...], image_channels: int,
                    cascade_channels: int = 0, region_outputs: list | None = None) -> Transfer:
    """Load matching tensors of ``path`` into ``network`` (in place) by the module's rules; return the report.
    ``region_outputs``: the target's ``label_outputs`` when it predicts regions (None for classes)."""
    ckpt = _read(path)
    _check_channels(ckpt, image_channels, cascade_channels, path)
    theirs: dict[str, torch.Tensor] = ckpt["network_weights"]
    source_labels = ckpt.get("labels")
    same_labels = source_labels is not None and [int(v) for v in source_labels] == [int(v) for v in labels]
    source_regions = ckpt.get("label_outputs") if ckpt.get("has_regions") else None
    same_labels = same_labels and source_regions == region_outputs  # same values, other outputs: other heads
    head_reason = ("head re-initialised: label set differs "
                   f"({list(source_labels) if source_labels is not None else 'not recorded'} -> {list(labels)})")
    mine = network.state_dict()
    report, update = Transfer(heads_reinitialised=not same_labels), {}
    for name, tensor in mine.items():
        if name.startswith(HEAD_PREFIX) and not same_labels:
            report.skipped[name] = head_reason
        elif name not in theirs:
            report.skipped[name] = "missing in the checkpoint"
        elif tuple(theirs[name].shape) != tuple(tensor.shape):
            report.skipped[name] = f"shape mismatch {tuple(theirs[name].shape)} vs {tuple(tensor.shape)}"
        else:
            update[name] = theirs[name].to(dtype=tensor.dtype)
            report.loaded.append(name)
    network.load_state_dict({**mine, **update})
    return report
