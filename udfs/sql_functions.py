"""Python functions for Flink SQL, registered from DDL in `sql/`:

    CREATE TEMPORARY SYSTEM FUNCTION normalize_key AS 'udfs.sql_functions.normalize_key' LANGUAGE PYTHON;

Each is a plain Python function (testable without a cluster) wrapped as a Flink UDF.

>>> clean_key("  Book-42 ")
'book-42'
"""

from pyflink.table import DataTypes
from pyflink.table.udf import udf


def clean_key(raw: str | None) -> str | None:
    """Entity keys arrive with stray case and whitespace from upstream systems."""
    return raw.strip().lower() if raw is not None else None


normalize_key = udf(clean_key, result_type=DataTypes.STRING())
