"""xmodal: attention-based image-text cross-modal retrieval.

The public API (see :mod:`xmodal.api`) is imported on first use, so ``import xmodal`` stays light:
``list_models``, ``create_model``, ``list_datasets``, ``load_dataset``, ``list_configs``,
``load_config``, ``train``, ``evaluate``, ``load_run``, ``export_run`` and ``TrainedRun``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["TrainedRun", "__version__", "create_model", "evaluate", "export_run", "list_configs", "list_datasets",
           "list_models", "load_config", "load_dataset", "load_run", "train"]

if TYPE_CHECKING:
    from xmodal.api import (
        TrainedRun,
        create_model,
        evaluate,
        export_run,
        list_configs,
        list_datasets,
        list_models,
        load_config,
        load_dataset,
        load_run,
        train,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from xmodal import api

        return getattr(api, name)
    raise AttributeError(f"module 'xmodal' has no attribute {name!r}")
