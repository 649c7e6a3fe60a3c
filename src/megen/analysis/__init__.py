"""Analysis of sweep results: cells and series, aggregation (means, CIs, FID), comparisons."""

from megen.analysis.aggregate import aggregate
from megen.analysis.cells import add_keys, series_labels
from megen.analysis.compare import equal_quality, paired_difference, threshold_snr
from megen.analysis.fid import FidScorer, make_fid_scorer

__all__ = [
    "FidScorer",
    "add_keys",
    "aggregate",
    "equal_quality",
    "make_fid_scorer",
    "paired_difference",
    "series_labels",
    "threshold_snr",
]
