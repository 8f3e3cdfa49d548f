"""Postprocessing: largest-connected-component rules decided on cross-validation predictions."""

from toolkit.postprocessing.components import keep_largest, largest_component
from toolkit.postprocessing.rules import (
    NO_POSTPROCESSING,
    apply_postprocessing,
    choose_postprocessing,
    decide_postprocessing,
)

__all__ = ["NO_POSTPROCESSING", "apply_postprocessing", "choose_postprocessing", "decide_postprocessing",
           "keep_largest", "largest_component"]
