"""What training predicts, in the sampler's label encoding (docs/method.md 1.2 "Regions and the ignore label").

The sampler hands the loss label maps of *indices*: voxel value ``i`` is ``LabelSpec.all_labels[i]``
(background 0 first), the ignore label is ``len(all_labels)``; plain datasets with labels 0..K-1 and
no ignore label are stored that way already (no lookup). :class:`TrainingTargets` says how the loss
reads such a map:

- plain classes: softmax over ``num_outputs`` (= ``len(all_labels)``) channels, channel ``i`` is index ``i``;
- regions: one sigmoid output per foreground region; region ``r`` holds the voxels whose index is in
  ``regions[r]`` (the region's label values turned into indices);
- ``ignore_index`` (None without an ignore label): voxels carrying no annotation, excluded from the
  loss and the pseudo-Dice.

The conversion to per-region targets happens on the training device inside the loss (loss.py), per
deep-supervision head after nearest downsampling, so the CPU augmentation only ever moves one label
map, exactly as for plain datasets. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.dataset.labels import LabelSpec


@dataclass(frozen=True)
class TrainingTargets:
    """The loss's view of the labels (see the module docstring)."""

    num_outputs: int
    names: tuple[str, ...]  # the foreground targets (pseudo-Dice entries), in output order
    regions: tuple[tuple[int, ...], ...] | None = None  # sigmoid outputs' label indices; None: softmax
    ignore_index: int | None = None

    @property
    def has_regions(self) -> bool:
        return self.regions is not None


def training_targets(spec: LabelSpec) -> TrainingTargets:
    """:class:`TrainingTargets` of a dataset's label model."""
    index = {v: i for i, v in enumerate(spec.all_labels)}
    names = tuple(name for name, _ in spec.foreground_targets())
    ignore = len(spec.all_labels) if spec.has_ignore else None
    if not spec.has_regions:
        return TrainingTargets(spec.num_outputs, names, None, ignore)
    regions = tuple(tuple(sorted(index[v] for v in values if v in index)) for values in spec.regions)
    return TrainingTargets(spec.num_outputs, names, regions, ignore)


def sampler_values(spec: LabelSpec) -> tuple[int, ...]:
    """Stored label value of each index the sampler emits: ``all_labels``, then the ignore value."""
    return spec.all_labels + ((spec.ignore,) if spec.ignore is not None else ())
