"""One registry type for everything xmodal looks up by name: models, datasets, input kinds,
extractors and index backends.

A :class:`Registry` maps names to entries. Registering a name twice is a programming error
(``ValueError``); asking for an unknown name is a user error (:class:`~xmodal.errors.XmodalError`)
that lists the choices. A registry can fill itself on first use (``discover``), which is how the
models package is scanned without a hand-kept list of its modules.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, Iterator, TypeVar

from xmodal.errors import XmodalError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> entries, with errors that say what exists.

    ``what`` names the kind of entry in messages ("model", "dataset", "text input").
    ``discover`` runs once, before the first lookup, to import the modules that register entries.
    """

    def __init__(self, what: str, discover: Callable[[], None] | None = None):
        self.what = what
        self._entries: dict[str, T] = {}
        self._discover = discover
        self._discovered = discover is None

    def register(self, name: str, entry: T) -> T:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def _ready(self) -> dict[str, T]:
        if not self._discovered:
            self._discovered = True  # before discovering: the modules it imports register into this registry
            assert self._discover is not None
            self._discover()
        return self._entries

    def get(self, name: str) -> T:
        entries = self._ready()
        if name not in entries:
            raise XmodalError(f"unknown {self.what} {name!r}; choose from {', '.join(self.names()) or 'none'}")
        return entries[name]

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._ready())

    def entries(self) -> dict[str, T]:
        return dict(self._ready())

    def __contains__(self, name: object) -> bool:
        return name in self._ready()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._ready())


def import_package_modules(package: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Import every module of ``package`` (not sub-packages' insides) except ``skip``; their names."""
    root = importlib.import_module(package)
    names = [f"{package}.{info.name}" for info in pkgutil.iter_modules(root.__path__) if info.name not in skip]
    for name in names:
        importlib.import_module(name)
    return names
