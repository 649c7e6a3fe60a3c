"""Storage of sweep results: the row schema (:class:`Row`), the SQLite store, and exports."""

from megen.store.export import check_outputs, export
from megen.store.results import ResultsStore
from megen.store.schema import (
    COST_COLUMNS,
    METRIC_COLUMNS,
    ROW_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    Row,
    RowSchemaError,
    points_digest,
)

__all__ = [
    "COST_COLUMNS",
    "METRIC_COLUMNS",
    "ROW_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ResultsStore",
    "Row",
    "RowSchemaError",
    "check_outputs",
    "export",
    "points_digest",
]
