"""Figures and the HTML report of a study (see :func:`write_report`)."""
