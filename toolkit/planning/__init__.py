"""The self-configuring planner: pure functions from a dataset fingerprint to plans.json (docs/method.md 1.3).

Imports neither torch nor any GPU code path; planning all configurations takes well under a second.
"""

from toolkit.planning.planner import check_fingerprint, plan_experiment
from toolkit.planning.presets import load_preset, load_presets, preset_names
from toolkit.planning.settings import DEFAULT_SETTINGS, PlannerSettings
from toolkit.planning.table import format_plans_table

__all__ = ["DEFAULT_SETTINGS", "PlannerSettings", "check_fingerprint", "format_plans_table", "load_preset",
           "load_presets", "plan_experiment", "preset_names"]
