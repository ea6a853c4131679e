"""The science of GSP Live: pure reduction blocks (no web, no database).

Each block takes data + a :class:`pipeline.settings.ReductionSettings` and
returns data + a record (a plain dict) of what it did.  The job layer
(``pipeline/jobs.py``) is the only module here that touches the catalogue.
"""
