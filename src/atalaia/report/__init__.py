"""Reports: one table of every stage side by side (JSON, Markdown, self-contained HTML, console) plus plots.

The public names are listed once, in `render.__all__`.
"""

from atalaia.report.render import *  # noqa: F403
from atalaia.report.render import __all__  # noqa: F401
