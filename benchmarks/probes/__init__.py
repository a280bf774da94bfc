"""Probes: measurements that explain a trained run (or the extractors), each a module calling the library.

``python -m benchmarks probe NAME ARGS`` runs one; ``--list`` names them. A probe answers a
question the quality tables cannot, such as whether JGCAR's co-attention moves away from uniform or
how much two-stage search keeps of a model's own ranking; each module's docstring says what it
measures and how it is run. Every module of this package is a probe (its name with ``-`` for
``_``) with a ``main(argv)``.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from xmodal.registry import Registry

PROBES: Registry[str] = Registry("probe")
for _info in pkgutil.iter_modules(__path__):
    PROBES.register(_info.name.replace("_", "-"), f"{__name__}.{_info.name}")


def probe_module(name: str) -> ModuleType:
    return importlib.import_module(PROBES.get(name))
