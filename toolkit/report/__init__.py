"""The static HTML report of a work directory (no server; open ``report/index.html``)."""

from toolkit.report.html import build_report

__all__ = ["build_report"]
