"""Reports: one table of every stage side by side (JSON, Markdown, self-contained HTML, console) plus plots.

`Report` (schema.py) is the typed content of report.json; `write_report` / `print_summary` render it.
"""

from atalaia.report import render
from atalaia.report.render import *  # noqa: F403
from atalaia.report.schema import SCHEMA_VERSION, Report, finite

__all__ = [*render.__all__, "Report", "SCHEMA_VERSION", "finite"]
