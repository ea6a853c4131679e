"""Seconds per stage of a unit of work (read, cosmic rays, extraction per target, wavelength, flexure, ...),
for the live latency's timeline (``bench/latency.py``).

Whoever runs a unit of work opens :func:`timed` around it (the job layer does, per job); the science marks
its stages with :func:`stage`. Outside :func:`timed` a stage costs one context-variable lookup.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar

_seconds: ContextVar[dict | None] = ContextVar("gsp_stage_seconds", default=None)


@contextmanager
def timed():
    """Collect the stages run inside into the dict yielded ({stage: seconds}; a repeated stage adds up)."""
    seconds: dict[str, float] = {}
    token = _seconds.set(seconds)
    try:
        yield seconds
    finally:
        _seconds.reset(token)


@contextmanager
def stage(name: str):
    """Count the time inside under ``name`` in the open :func:`timed`, if any."""
    seconds = _seconds.get()
    if seconds is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
