"""Invalid manifests: each file in ``invalid/`` is refused, naming the field it breaks.

A file starts with comment lines ``# expect: <field path>`` (one or more) and optionally
``# message: <text the message must contain>``; the loader must report a problem at each
expected path, and nothing may be loaded from the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from faultmesh.api.base import format_path
from faultmesh.api.loader import ManifestError, load_text

CASES = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


def _header(text: str, key: str) -> list[str]:
    return [match.strip() for match in re.findall(rf"^# {key}: (.*)$", text, flags=re.MULTILINE)]


def test_there_are_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("path", CASES, ids=lambda path: path.stem)
def test_invalid_manifest_is_refused_with_field_path(path: Path) -> None:
    text = path.read_text()
    expected = _header(text, "expect")
    messages = _header(text, "message")
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(ManifestError) as caught:
        load_text(text, source=path.name)
    problems = caught.value.problems
    found = {format_path(problem.path): str(problem) for problem in problems}
    for field_path in expected:
        assert field_path in found, f"expected a problem at {field_path}, got: {list(found.values())}"
    for message in messages:
        assert any(message in text for text in found.values()), f"no message containing {message!r}: {found}"
