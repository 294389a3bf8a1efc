"""Helpers the tests share; starting processes and services is harness/'s job."""

import pytest

FIGURES = pytest.StashKey[list[str]]()


def report(request: pytest.FixtureRequest, line: str) -> None:
    """Keep a line of figures for the run's summary (printed even when output is captured)."""
    request.config.stash.setdefault(FIGURES, []).append(line)
