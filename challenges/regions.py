"""Region labels for any adapter: the YAML ``regions:`` key (or ``-O regions=<preset>``).

nnU-Net v2 trains on regions (overlapping targets such as BraTS' whole tumour / tumour core /
enhancing tumour) when ``dataset.json`` labels hold lists of values plus ``regions_class_order``
(docs/interfaces.md "Region labels and the ignore label"). The label files keep their original values;
only ``dataset.json`` changes. A challenge YAML declares regions as::

    regions:
      labels: {whole tumour: [1, 2, 3], tumour core: [2, 3], enhancing tumour: [3]}
      regions_class_order: [1, 2, 3]

or names one of its ``region_presets`` (``regions: brats``, typically as ``-O regions=brats``).
"""

from __future__ import annotations

from typing import Any

from toolkit.dataset.labels import IGNORE_NAME, label_spec
from toolkit.errors import SegkitError


def _resolve(regions: Any, config: dict[str, Any]) -> dict[str, Any]:
    presets = config.get("region_presets") or {}
    if isinstance(regions, str):
        if regions not in presets:
            known = ", ".join(sorted(presets)) or "none"
            raise SegkitError(f"unknown regions preset {regions!r} (this challenge has: {known})")
        regions = presets[regions]
    if not (isinstance(regions, dict) and isinstance(regions.get("labels"), dict)
            and isinstance(regions.get("regions_class_order"), list)):
        raise SegkitError("regions must be a preset name or {labels: {name: [values]}, regions_class_order: [...]}")
    return regions


def apply_regions(meta: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with its labels replaced by the declared regions (unchanged without a ``regions`` key).

    Every region value must be one of the dataset's label values; an ``ignore`` label is kept. The
    result is checked with the label model's rules (one-line error otherwise).
    """
    if config.get("regions") in (None, False, "none"):
        return meta
    regions = _resolve(config["regions"], config)
    source = meta.get("labels") or {}
    declared = {int(v) for k, v in source.items() if k.lower() != IGNORE_NAME and isinstance(v, int)}
    labels: dict[str, Any] = {"background": 0}
    for name, values in regions["labels"].items():
        values = values if isinstance(values, list) else [values]
        unknown = sorted(int(v) for v in values if int(v) not in declared)
        if unknown:
            raise SegkitError(f"region {name!r} names label value(s) {unknown} that the dataset does not declare "
                              f"(its labels: {source})")
        labels[str(name)] = [int(v) for v in values]
    labels.update({k: v for k, v in source.items() if k.lower() == IGNORE_NAME})
    order = [int(v) for v in regions["regions_class_order"]]
    label_spec(labels, order)  # the same rules as verify: one order entry per region, ignore highest
    return {**meta, "labels": labels, "regions_class_order": order}
