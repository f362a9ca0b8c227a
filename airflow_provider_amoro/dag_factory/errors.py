"""The one error type of the DAG factory: a configuration mistake, named by its key path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

KeyPath = Sequence[str | int]


def format_path(path: KeyPath) -> str:
    """Render a key path the way a user finds it in the YAML file.

    Plain keys are joined with dots, list positions and keys that contain dots, spaces or glob
    characters are bracketed: ``catalogs.amoro_default.tables["demo.*"].properties``.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and all(c.isalnum() or c in "_-" for c in part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]".replace("'", '"')
    return out or "<root>"


def describe(value: Any) -> str:
    """A short, quoted rendering of a YAML value for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class ConfigError(ValueError):
    """The DAG factory configuration is invalid.

    The message starts with the configuration file (when known) and the key path, for example
    ``dags/amoro.yaml: optimizer_groups.default.slots: expected a positive integer, got 'x'``;
    Airflow shows it as the import error of the DAG file.

    Attributes:
        path: the key path of the offending value (empty for file-level problems).
        problem: what is wrong with it.
        source: the configuration file, when known.
    """

    def __init__(self, path: KeyPath, problem: str, *, source: str | None = None) -> None:
        self.path = tuple(path)
        self.problem = problem
        self.source = source
        where = format_path(self.path) if self.path else ""
        head = f"{source}: " if source else ""
        super().__init__(f"{head}{where}: {problem}" if where else f"{head}{problem}")

    def with_source(self, source: str) -> ConfigError:
        """The same error, attributed to the configuration file ``source``."""
        return ConfigError(self.path, self.problem, source=source)
