"""The canonical dataset: nnU-Net v2 raw layout plus ``groups.json``."""

from toolkit.dataset.layout import Case, DatasetSpec, discover_cases, load_dataset, load_groups

__all__ = ["Case", "DatasetSpec", "discover_cases", "load_dataset", "load_groups"]
