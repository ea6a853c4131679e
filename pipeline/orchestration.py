"""What runs after what: the live chain of reduction jobs (job layer)."""
from __future__ import annotations


def on_ingested(file) -> None:
    """Enqueue the jobs a newly catalogued raw file calls for."""
