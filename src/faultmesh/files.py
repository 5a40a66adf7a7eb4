"""Reading manifest files: the one place the CLI's loading touches the file system."""

from __future__ import annotations

import sys
from pathlib import Path

from .api.loader import DEFAULT_NAMESPACE, LoadResult, ManifestError, ManifestProblem, load_text


def read_manifest(path: str | Path, namespace: str = DEFAULT_NAMESPACE) -> LoadResult:
    """Load a manifest file (``-`` reads standard input)."""
    name = str(path)
    if name == "-":
        return load_text(sys.stdin.read(), source="<stdin>", namespace=namespace)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError([ManifestProblem("no such file", source=name)]) from None
    except IsADirectoryError:
        raise ManifestError([ManifestProblem("is a directory, not a file", source=name)]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError([ManifestProblem(f"cannot read: {error}", source=name)]) from None
    return load_text(text, source=name, namespace=namespace)
