"""Presentation of sweep results: figures (:mod:`megen.report.plots`) and the markdown report."""
