"""Reports: one table of every stage side by side (JSON, Markdown, self-contained HTML, console) plus plots."""

from atalaia.report.render import (
    DASH,
    PLOT_NAMES,
    console_table,
    fmt,
    print_summary,
    stage_table,
    statements,
    summary_lines,
    target_label,
    write_report,
)

__all__ = [
    "write_report",
    "console_table",
    "print_summary",
    "stage_table",
    "summary_lines",
    "statements",
    "fmt",
    "target_label",
    "DASH",
    "PLOT_NAMES",
]
