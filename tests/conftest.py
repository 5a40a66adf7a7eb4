"""Paths shared by every tier."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference" / "chaos-mesh"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE
