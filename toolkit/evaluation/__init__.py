"""Evaluation: per-class metrics (Dice, IoU, counts, volumes, HD95, NSD) and folder summaries.

Importing this package does not import torch (``segkit evaluate`` runs no network).
"""

from toolkit.evaluation.evaluate import evaluate_cases, evaluate_folder, evaluation_spec
from toolkit.evaluation.metrics import case_metrics, class_metrics, dice_per_class
from toolkit.evaluation.summary import format_table, summarize

__all__ = ["case_metrics", "class_metrics", "dice_per_class", "evaluate_cases", "evaluate_folder",
           "evaluation_spec", "format_table", "summarize"]
