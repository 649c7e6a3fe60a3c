"""Analysis of sweep results: cells and series, aggregation (means, CIs, FID), comparisons."""

from megen.analysis.aggregate import aggregate
from megen.analysis.cells import BASELINES, add_keys, destination, series_labels, with_outcome_columns
from megen.analysis.compare import Bracket, bracket, equal_quality, paired_difference, threshold_snr
from megen.analysis.fid import FidScorer, make_fid_scorer

__all__ = [
    "BASELINES",
    "Bracket",
    "bracket",
    "destination",
    "with_outcome_columns",
    "FidScorer",
    "add_keys",
    "aggregate",
    "equal_quality",
    "make_fid_scorer",
    "paired_difference",
    "series_labels",
    "threshold_snr",
]
