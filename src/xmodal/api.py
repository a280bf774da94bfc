"""The public Python API, re-exported by ``import xmodal`` (in the manner of open_clip's top level).

    import xmodal
    run = xmodal.train("dual/emoji", out="runs/mine", overrides=["train.epochs=3"])
    scores = run.similarity(run.encode_images(["cat.png"]), run.encode_texts(["a cat"]))

Names, configs and data paths work as on the command line: a config is a shipped name
(:func:`list_configs`) or a YAML file; a dataset's path is given, or read from
``$XMODAL_DATA_<DATASET>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from xmodal.config import RunConfig, apply_overrides, list_configs, load_config, validate_config
from xmodal.data.records import Dataset
from xmodal.data.registry import dataset_names, read_dataset
from xmodal.factory import data_path, train_config
from xmodal.models import registry
from xmodal.models.base import InputSpec, RetrievalModel
from xmodal.run import Run
from xmodal.trained import TrainedRun, export_run, load_run
from xmodal.training.trainer import train_run

__all__ = ["TrainedRun", "create_model", "evaluate", "export_run", "list_configs", "list_datasets", "list_models",
           "load_config", "load_dataset", "load_run", "train"]


def list_models() -> list[str]:
    """Every name :func:`create_model` and configs accept: the models (``cca``, ``dual``, ``jgcar``, ...)
    and their papers' variants (``jgcar-grl``, ``bssan-w2r``, ...)."""
    return registry.creatable_names()


def create_model(name: str, spec: InputSpec, params: dict[str, Any] | None = None) -> RetrievalModel:
    """A freshly initialised model; ``spec`` says what its inputs are (``ModelData(...).spec``)."""
    return registry.create_model(name, spec, params)


def list_datasets() -> list[str]:
    """Names of the dataset readers (``emoji``, ``flickr8k``, ``csv``, ``wikipedia-features``, ...)."""
    return dataset_names()


def load_dataset(name: str, path: str | Path | None = None, *, skip_bad: bool = False, **options: Any) -> Dataset:
    """Read a dataset: ``path`` as given, else ``$XMODAL_DATA_<NAME>``; ``emoji`` fetches itself.

    ``options`` are the reader's own (an error names those it takes): ``image_root`` (the folder
    relative image paths resolve against: ``csv``, ``karpathy``); ``source``, ``grid``, ``tile``
    (``mosaic``).
    """
    if options.get("image_root") is not None:
        options["image_root"] = Path(options["image_root"])
    return read_dataset(name, data_path(name, path), skip_bad=skip_bad, **options)


def train(config: str | Path | RunConfig | Run, out: str | Path, *, path: str | Path | None = None,
          overrides: Sequence[str] = (), resume: bool = False) -> TrainedRun:
    """Train a config (a shipped name, a YAML file, a :class:`RunConfig`) or a run you built
    (:func:`xmodal.factory.make_run`) into ``out``; returns the best checkpoint, ready to score.

    ``overrides`` are ``--set`` strings (``"train.epochs=3"``); ``path`` is the dataset's path.
    """
    extra = [*([f"data.path={path}"] if path is not None else []), *overrides]
    if isinstance(config, Run):
        if extra:
            raise TypeError("train(run, ...): path and overrides apply to configs; set them before building the run")
        train_run(config, Path(out), resume=resume)
    else:
        if isinstance(config, RunConfig):
            config = validate_config(apply_overrides(config.model_dump(mode="json"), extra), "config")
        else:
            config = load_config(config, extra)
        train_config(config, Path(out), resume=resume)
    return load_run(out)


def evaluate(run: TrainedRun | str | Path, split: str = "test", *, shortlist: int | None = None) -> dict:
    """Every protocol a trained run's split supports (a :class:`TrainedRun` or a run folder)."""
    trained = run if isinstance(run, TrainedRun) else load_run(run)
    return trained.evaluate(split, shortlist=shortlist)
