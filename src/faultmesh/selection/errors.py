"""The two ways selection can refuse: a bad inventory, or a selector it cannot evaluate."""

from __future__ import annotations

from faultmesh.api.base import Path, format_path


class InventoryError(Exception):
    """The cluster objects given to selection (pods, nodes, namespaces) are malformed.

    ``problems`` lists every problem found, each naming the object it concerns.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class SelectionError(Exception):
    """A selector cannot be evaluated: an unsupported field, a bad label, an invalid mode value.

    ``path`` locates the offending field relative to the selector (``selector.fieldSelectors``,
    ``value``); callers that know where the selector sits prefix it with :meth:`under`.
    """

    def __init__(self, message: str, path: Path = ()):
        self.message = message
        self.path = path
        where = format_path(path)
        super().__init__(f"{where}: {message}" if where else message)

    def under(self, prefix: Path) -> SelectionError:
        """The same error, its path placed under ``prefix``.

        An error with no path concerns no field (the inventory lacks what a setting needs),
        so it stays unplaced.
        """
        if not self.path:
            return self
        return type(self)(self.message, (*prefix, *self.path))


class NoPodSelectedError(SelectionError):
    """The selector is valid but matched no pod (Chaos Mesh's "no pod is selected")."""
