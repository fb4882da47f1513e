"""Figures and the HTML report of a study.

:func:`write_report` draws every figure of a stored study into ``DIR/figures`` and
writes one self-contained HTML page; :func:`load_study` and
:func:`relutrap.report.figures.study_figures` give the pieces.
"""

from relutrap.report.figures import study_figures
from relutrap.report.page import write_report
from relutrap.report.study import Study, load_study

__all__ = ["Study", "load_study", "study_figures", "write_report"]
