"""Model selection from cross-validation: configurations, pairwise ensembles, postprocessing."""

from toolkit.selection.select import choose_best, format_selection, select, select_for_dataset

__all__ = ["choose_best", "format_selection", "select", "select_for_dataset"]
