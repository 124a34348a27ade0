-- Python functions the smoke pipeline calls; they run in the job's Python workers.
CREATE TEMPORARY SYSTEM FUNCTION normalize_key AS 'udfs.sql_functions.normalize_key' LANGUAGE PYTHON;
