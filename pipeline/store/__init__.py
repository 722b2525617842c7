"""The store layer: every statement Vigil runs against the warehouse, and a night's files.

The queries are files under ``sql/queries/<area>/`` read by name (``Warehouse.query``); the
modules here wrap them as typed functions over frames, one module per area of the warehouse:
``runs`` (runs, watermarks, publishing a night), ``audit`` (accounting, quarantine, data
quality, drift, performance, alerts), ``features`` (stored events, records, window features,
reference scores), ``embeddings`` (the vector cache), ``registry`` (model versions) and
``risk`` (the risk table). ``warehouse`` is the gateway they share (engines, schema creation,
typed reads, bulk writes); ``run_folder`` holds the Parquet hand-offs between a night's stages.
Nothing outside this package and ``sql/`` holds SQL text (``tests/test_architecture.py``).
"""
