"""Hypothesis profiles for the unit tier, the one with property tests."""

from __future__ import annotations

import os

from hypothesis import settings

# CI lands only what it can repeat: there the property tests draw the same examples on every run; local runs
# keep drawing new ones, which is how they find what is left (and a failure prints a blob to replay it).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
