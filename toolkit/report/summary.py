"""The report's first section: which model was selected and how good it is.

Numbers come from ``selection.json`` (each candidate's CV Dice per class on the cases all candidates
predicted, the winner, the postprocessing decision with the CV Dice after it) and, when given, a
``segkit evaluate`` summary of the test set. Nothing is recomputed here.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.dataset.labels import target_key
from toolkit.errors import SegkitError
from toolkit.io.atomic import read_json
from toolkit.report.markup import esc, num, table


def load_test_summary(path: str | Path) -> dict:
    """Read a ``segkit evaluate`` summary.json; a file of another shape is a one-line error."""
    path = Path(path)
    summary = read_json(path)
    if not (isinstance(summary, dict) and isinstance(summary.get("mean"), dict)
            and isinstance(summary.get("per_case"), list) and isinstance(summary.get("foreground_mean"), dict)):
        raise SegkitError("not a segkit evaluate summary (needs 'per_case', 'mean', 'foreground_mean')", path)
    return summary


def _winner_dice(selection: dict, root: Path) -> dict[str, float | None]:
    """Winner's CV Dice per class as selection scored it (older selection files: its summary's means)."""
    name = selection["winner"]["name"]
    cand = next((c for c in selection["candidates"] if c["name"] == name), {})
    if "dice_per_class" in cand:
        return cand["dice_per_class"]
    summary = read_json(root / selection["winner"]["folder"] / "summary.json")
    return {k: v.get("Dice") for k, v in summary["mean"].items()}


def postprocessing_text(decision: dict, names: dict[str, str]) -> str:
    """The postprocessing decision in words."""
    parts = []
    if decision.get("keep_largest_foreground"):
        parts.append("keep the largest connected component of all foreground")
    for lb in decision.get("keep_largest_per_class", []):
        key = target_key(lb)  # a label value, or a region's list of values
        parts.append(f"keep the largest component of {names.get(key, key)}")
    return "; ".join(parts) if parts else "none (no step improved the CV Dice)"


def _dice_table(selection: dict, names: dict[str, str], root: Path, test: dict | None) -> str:
    cv = _winner_dice(selection, root)
    pp = selection["postprocessing"]
    header = ["class", "CV Dice", "CV Dice after postprocessing"] + (["test Dice"] if test else [])
    rows = []
    for lb in names:
        row = [esc(f"{lb} {names[lb]}"), num(cv.get(lb)), num(pp["dice_after"].get(lb))]
        if test:
            row.append(num(test["mean"].get(lb, {}).get("Dice")))
        rows.append(row)
    fg = ["<b>mean foreground</b>", f"<b>{num(selection['winner']['score'])}</b>",
          f"<b>{num(pp['foreground_mean_after'])}</b>"]
    if test:
        fg.append(f"<b>{num(test['foreground_mean'].get('Dice'))}</b>")
    return table(header, [*rows, fg], cls="dice")


def _candidates_table(selection: dict, names: dict[str, str]) -> str:
    winner = selection["winner"]["name"]
    cands = sorted(selection["candidates"], key=lambda c: -(c["score"] if c["score"] is not None else -1))
    rows = []
    for c in cands:
        per_class = c.get("dice_per_class", {})
        rows.append([esc(c["name"]), "ensemble" if c["ensemble"] else "single", esc(c["num_cases"]),
                     *[num(per_class.get(lb)) for lb in names], num(c["score"])])
    header = ["candidate", "kind", "cases", *[f"Dice {names[lb]}" for lb in names], "mean fg Dice"]
    return table(header, rows, highlight=[c["name"] for c in cands].index(winner))


def _headline(selection: dict, test: dict | None) -> str:
    w = selection["winner"]
    kind = f"ensemble of {' + '.join(w['configurations'])}" if len(w["configurations"]) > 1 else "single configuration"
    folds = "; ".join(f"{c}: folds {', '.join(map(str, f))}" for c, f in w.get("folds", {}).items())
    pp_fg = selection["postprocessing"]["foreground_mean_after"]
    line = (f"<p class=headline>Selected: <b class=winner>{esc(w['name'])}</b> ({esc(kind)}). "
            f"CV mean foreground Dice <b>{num(w['score'])}</b>, {num(pp_fg)} after postprocessing")
    if test:
        line += f"; test set <b>{num(test['foreground_mean'].get('Dice'))}</b> on {len(test['per_case'])} case(s)"
    return line + f".</p><p class=note>{esc(folds)}</p>"


def summary_section(selection: dict | None, names: dict[str, str], root: Path,
                    test: dict | None, test_path: Path | None) -> str:
    """Headline, Dice per class (CV, CV after postprocessing, test), postprocessing, candidates."""
    if selection is None:
        return "<p class=note>No model selected yet (segkit select): no summary.</p>"
    parts = [_headline(selection, test), _dice_table(selection, names, root, test)]
    if test is not None:
        parts.append(f"<p class=note>Test-set Dice: {len(test['per_case'])} case(s), from {esc(test_path)}.</p>")
    else:
        parts.append("<p class=note>No test-set result known (pass <code>--test-summary PATH</code>, the "
                     "summary.json that <code>segkit evaluate</code> writes for the test predictions).</p>")
    parts.append(f"<p>Postprocessing: {esc(postprocessing_text(selection['postprocessing']['decision'], names))}"
                 "</p>")
    if not selection.get("complete", True):
        parts.append("<p class=warn>Cross-validation is incomplete (missing folds).</p>")
    parts.extend(f"<p class=warn>warning: {esc(w)}</p>" for w in selection.get("warnings", []))
    parts.append(f"<h3>Candidates (CV, compared on {esc(selection.get('compared_on_cases', '?'))} cases)</h3>")
    parts.append(_candidates_table(selection, names))
    return "".join(parts)
