"""Dataset names the CLI and configs use, and the reader behind each.

Each reader module registers its datasets (:func:`register_dataset`) where the reader is defined;
the registry imports the modules of ``xmodal.data`` on first use, so a new reader needs no list
entry anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from xmodal.data.records import Dataset
from xmodal.errors import XmodalError
from xmodal.registry import Registry, import_package_modules

Reader = Callable[..., Dataset]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset name, its reader, and the reader's keyword options beyond ``skip_bad``.

    ``options`` lists what :meth:`load` passes through (``image_root`` for ``csv``); anything
    else is an error naming the options the reader takes, so a typo is never silently ignored.
    """

    name: str
    description: str
    reader: Reader
    needs_path: bool = True
    options: tuple[str, ...] = ()
    detect: Callable[[Path], bool] | None = None  # does this path look like this dataset's layout?

    def load(self, path: Path | None = None, *, skip_bad: bool = False, **options: Any) -> Dataset:
        if path is None and self.needs_path:
            raise XmodalError(f"dataset {self.name!r} needs --path: {self.description}")
        if path is not None and not Path(path).exists():
            raise XmodalError(f"--path {path} does not exist")
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            takes = f"it takes {', '.join(self.options)}" if self.options else "it takes none"
            raise XmodalError(f"dataset {self.name!r} has no option {', '.join(unknown)}; {takes}")
        given = {key: value for key, value in options.items() if value is not None}
        return self.reader(Path(path) if path is not None else None, skip_bad=skip_bad, **given)


def _discover() -> None:
    import_package_modules("xmodal.data", skip=("registry",))


DATASETS: Registry[DatasetSpec] = Registry("dataset", _discover)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Make a reader available by name (``xmodal data info NAME``, ``data.dataset`` in a config)."""
    return DATASETS.register(spec.name, spec)


def dataset_names() -> list[str]:
    return sorted(DATASETS.names())


def get_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def detect_reader(path: Path, exclude: tuple[str, ...] = ()) -> str:
    """The reader whose layout ``path`` has (``captions.txt`` beside ``Images/`` is flickr8k, ...); a
    folder of images that no reader claims is read by ``folder``."""
    path = Path(path)
    found = [name for name, spec in DATASETS.entries().items()
             if name not in exclude and spec.detect is not None and spec.detect(path)]
    if len(found) == 1:
        return found[0]
    if not found and path.is_dir():
        return "folder"
    if not found:
        raise XmodalError(f"{path}: no reader recognises it; name one (--source NAME, from "
                          f"{', '.join(n for n in dataset_names() if n not in exclude)})")
    raise XmodalError(f"{path} looks like {' and '.join(found)}; name the reader (--source NAME)")


def read_dataset(name: str, path: Path | None = None, *, skip_bad: bool = False, **options: Any) -> Dataset:
    """Read dataset ``name``; ``options`` are its reader's keyword options (``image_root=``)."""
    return get_spec(name).load(path, skip_bad=skip_bad, **options)
