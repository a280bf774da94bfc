"""The composition root: from a config to a run (dataset, model inputs, model) and back from a run folder.

The CLI, the demo, the sweep, the benchmarks and the public API (:mod:`xmodal.api`) all build
runs here; the trainer only trains a run it is given, so a user can also hand it a model and
data they built themselves (:func:`make_run`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from xmodal.config import RunConfig
from xmodal.data.records import Dataset
from xmodal.data.registry import get_spec, read_dataset
from xmodal.device import resolve_device
from xmodal.errors import XmodalError
from xmodal.features.extract import ExtractOptions
from xmodal.features.inputs import ModelData
from xmodal.features.kinds import describe, get_kind, kind_names
from xmodal.models.base import RetrievalModel
from xmodal.models.registry import create_model, model_params
from xmodal.run import Run
from xmodal.training.distributed import init_world, local_device, shutdown
from xmodal.training.trainer import TrainResult, check_out, train_run

logger = logging.getLogger(__name__)


def data_path_variable(dataset: str) -> str:
    """The environment variable that can hold a dataset's path: ``XMODAL_DATA_WIKIPEDIA_FEATURES``."""
    return "XMODAL_DATA_" + re.sub(r"[^A-Za-z0-9]", "_", dataset).upper()


def data_path(dataset: str, given: str | Path | None = None) -> Path | None:
    """Where ``dataset`` lives: ``given`` (``--path``, ``data.path``), else ``$XMODAL_DATA_<DATASET>``,
    made absolute; ``None`` for a built-in dataset given no path (emoji fetches itself).

    Configs never hold paths to data, so a run's folder records the absolute path it was trained
    on and ``xmodal eval RUN`` works from any folder.
    """
    variable = data_path_variable(dataset)
    raw = given or os.environ.get(variable)
    if not raw:
        if get_spec(dataset).needs_path:
            raise XmodalError(f"dataset {dataset!r} needs a path: pass --path DIR (or --set data.path=DIR), "
                              f"or set {variable}")
        return None
    path = Path(raw).expanduser().resolve()
    if not path.exists():
        raise XmodalError(f"{'data.path' if given else variable}={raw}: no such file or folder (resolved to {path})")
    return path


def resolve_data_path(config: RunConfig) -> Path | None:
    """:func:`data_path` of a config's dataset."""
    return data_path(config.data.dataset, config.data.path)


def with_resolved_paths(config: RunConfig) -> RunConfig:
    """A copy of ``config`` with its data path and image root made absolute, as a run records them."""
    config = config.model_copy(deep=True)
    path = resolve_data_path(config)
    config.data.path = str(path) if path is not None else None
    if config.data.image_root:  # recorded absolute, as the data path, so the run works from any folder
        config.data.image_root = str(Path(config.data.image_root).expanduser().resolve())
    return config


def dataset_of(config: RunConfig) -> Dataset:
    """The dataset a config names, read from its data path (see :func:`resolve_data_path`)."""
    data = config.data
    options = {"image_root": Path(data.image_root) if data.image_root else None, "source": data.source,
               "grid": data.grid, "tile": data.tile, "train_groupings": data.train_groupings, "lang": data.lang}
    options = {key: value for key, value in options.items() if value is not None}
    return read_dataset(config.data.dataset, resolve_data_path(config), skip_bad=config.data.skip_bad, **options)


def choose_inputs(model_cls: type[RetrievalModel], config: RunConfig,
                  dataset: Dataset) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Per side, one kind per part the model reads: the configured one, or the model's preferred
    alternative the dataset can feed (:mod:`xmodal.features.kinds`). Mismatches are named."""
    chosen = []
    _, params = model_params(config.model.name, config.model.params)  # a variant may read other kinds
    for side, wanted in (("image", config.data.image_input), ("text", config.data.text_input)):
        parts = model_cls.input_parts(side, params)
        wanted_parts = [wanted] if isinstance(wanted, str) else list(wanted or [])
        if wanted_parts and len(wanted_parts) != len(parts):
            raise XmodalError(f"data.{side}_input={wanted!r}: model {model_cls.name!r} reads {len(parts)} {side} "
                              f"part(s), give one kind for each: " + "; ".join(" or ".join(p) for p in parts))
        side_choice = []
        for index, accepted in enumerate(parts):
            request = wanted_parts[index] if wanted_parts else None
            if request is not None and request not in accepted:
                get_kind(side, request)  # an unknown kind is named as such
                raise XmodalError(f"data.{side}_input={request!r}: model {model_cls.name!r} takes "
                                  f"{' or '.join(accepted)} {side} input")
            options = [request] if request is not None else list(accepted)
            usable = [name for name in options if get_kind(side, name).feeds(dataset)]
            if not usable:
                needs = " or ".join(describe(side, name) for name in options)
                has = " or ".join(describe(side, name) for name in kind_names(side)
                                  if get_kind(side, name).feeds(dataset))
                raise XmodalError(f"model {model_cls.name!r} needs {side} {needs}, but dataset {dataset.name!r} "
                                  f"provides only {side} {has}")
            side_choice.append(usable[0])
        chosen.append(tuple(side_choice))
    return chosen[0], chosen[1]


def build_data(config: RunConfig, device: torch.device, dataset: Dataset | None = None) -> ModelData:
    """The model inputs of ``config``'s dataset (read from ``data.path`` unless ``dataset`` is given)."""
    model_cls, params = model_params(config.model.name, config.model.params)
    dataset = dataset if dataset is not None else dataset_of(config)
    if model_cls.labels_needed(params) and not dataset.has_labels:
        raise XmodalError(f"model {model_cls.name!r} trains with labels, but dataset {dataset.name!r} has none")
    image_input, text_input = choose_inputs(model_cls, config, dataset)
    data = ModelData(dataset, image_input, text_input, resolution=config.data.resolution,
                     val_fraction=config.data.val_fraction, val_fold=config.data.val_fold,
                     extract_options=ExtractOptions(device=device, skip_bad=config.data.skip_bad,
                                                    max_image_pixels=config.data.max_image_pixels,
                                                    graph_vertices=config.data.graph_vertices,
                                                    graph_stop_words=config.data.graph_stop_words,
                                                    graph_vectors=config.data.graph_vectors,
                                                    unknown_words=config.data.unknown_words))
    if dataset.skipped or data.bad_items:
        bad = sorted(data.bad_items)
        shown = f": {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}" if bad else ""
        logger.warning("skipped %d bad record(s) while reading and %d unreadable image(s)%s (--skip-bad)",
                       len(dataset.skipped), len(bad), shown)
        for problem in dataset.skipped[:5]:
            logger.warning("  %s", problem)
    return data


def early_stopping_metric(config: RunConfig, dataset: Dataset) -> str:
    metric = config.train.early_stopping.metric
    if metric == "auto":
        metric = "map" if dataset.has_labels else "rsum"
    if metric == "map" and not dataset.has_labels:
        raise XmodalError(f"train.early_stopping.metric=map needs labels, and dataset {dataset.name!r} has none")
    return metric


def make_run(config: RunConfig, data: ModelData, model: RetrievalModel, device: torch.device | str = "cpu") -> Run:
    """A run from parts a user built: the trainer takes it as it is (``xmodal.train``)."""
    device = torch.device(device)
    return Run(config, data.dataset, data, model.to(device), device, early_stopping_metric(config, data.dataset))


def build_run(config: RunConfig, device: torch.device) -> Run:
    """Dataset, inputs and a freshly initialised model for ``config``; ``data.path`` made absolute."""
    config = with_resolved_paths(config)
    data = build_data(config, device)
    # Seed here, after the data: extracting features builds encoders, which draws random numbers,
    # so a first run (extracting) and a cached run would otherwise start from different weights.
    torch.manual_seed(config.train.seed)
    model = create_model(config.model.name, data.spec, config.model.params)
    return make_run(config, data, model, device)


def train_config(config: RunConfig, out: Path, *, resume: bool = False) -> TrainResult:
    """Build the run ``config`` describes and train it into ``out`` (the trainer only trains built runs).

    Under ``torchrun`` each process builds its own run and trains on its shard of the pairs.
    """
    check_out(Path(out), resume)  # before the data are read and extracted
    device = resolve_device(config.train.device)
    world = init_world(device)
    try:
        device = local_device(device)
        torch.manual_seed(config.train.seed)
        return train_run(build_run(config, device), out, resume=resume, world=world)
    finally:
        shutdown(world)
