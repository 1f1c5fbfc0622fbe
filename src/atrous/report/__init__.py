"""Reports: one self-contained HTML file per benchmark, profile, optimize or evaluate run."""

from atrous.report.html import HtmlReport, figure_to_data_uri
from atrous.report.reports import (
    benchmark_report,
    evaluation_report,
    optimize_report,
    profile_report,
)

__all__ = [
    "HtmlReport",
    "figure_to_data_uri",
    "benchmark_report",
    "evaluation_report",
    "optimize_report",
    "profile_report",
]
