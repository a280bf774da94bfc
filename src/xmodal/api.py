"""The public Python API, re-exported by ``import xmodal`` (in the manner of open_clip's top level).

    import xmodal
    run = xmodal.train("dual/emoji", out="runs/mine", overrides=["train.epochs=3"])
    scores = run.similarity(run.encode_images(["cat.png"]), run.encode_texts(["a cat"]))

Names, configs and data paths work as on the command line: a config is a shipped name
(:func:`list_configs`) or a YAML file; a dataset's path is given, or read from
``$XMODAL_DATA_<DATASET>``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from torch import Tensor

from xmodal.config import RunConfig, load_config
from xmodal.data.records import Dataset
from xmodal.factory import Run
from xmodal.models.base import InputSpec, Rep, RetrievalModel, rep_to

__all__ = ["TrainedRun", "create_model", "evaluate", "list_configs", "list_datasets", "list_models", "load_config",
           "load_dataset", "load_run", "train"]


def list_models() -> list[str]:
    """Names of the registered models (``cca``, ``dual``, ``gpldan``, ``jgcar``, ...)."""
    from xmodal.models.registry import list_models as registered

    return list(registered())


def create_model(name: str, spec: InputSpec, params: dict[str, Any] | None = None) -> RetrievalModel:
    """A freshly initialised model; ``spec`` says what its inputs are (``ModelData(...).spec``)."""
    from xmodal.models.registry import create_model as create

    return create(name, spec, params)


def list_datasets() -> list[str]:
    """Names of the dataset readers (``emoji``, ``flickr8k``, ``csv``, ``wikipedia-features``, ...)."""
    from xmodal.data.registry import dataset_names

    return dataset_names()


def list_configs() -> list[str]:
    """Names of the shipped configs, ``<model>/<dataset>[-variant]``."""
    from xmodal.config import list_configs as shipped

    return shipped()


def load_dataset(name: str, path: str | Path | None = None, *, skip_bad: bool = False) -> Dataset:
    """Read a dataset: ``path`` as given, else ``$XMODAL_DATA_<NAME>``; ``emoji`` fetches itself."""
    from xmodal.data.registry import load_dataset as load
    from xmodal.factory import data_path

    return load(name, data_path(name, path), skip_bad=skip_bad)


class TrainedRun:
    """A trained model with the frozen encoders of its data: scores new images and texts.

    ``encode_images`` takes image files or PIL images, ``encode_texts`` strings; both return the
    model's representations, and ``similarity`` scores every image against every text
    (``[n_images, n_texts]``, higher is more similar).
    """

    def __init__(self, run: Run, folder: Path):
        self.run = run
        self.folder = folder

    @property
    def model(self) -> RetrievalModel:
        return self.run.model

    @property
    def config(self) -> RunConfig:
        return self.run.config

    @property
    def dataset(self) -> Dataset:
        return self.run.dataset

    @torch.no_grad()
    def encode_images(self, images: Sequence[str | Path | Image.Image]) -> Rep:
        return self.model.encode_images(rep_to(self.run.data.encode_new_images(images), self.run.device))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> Rep:
        if isinstance(texts, str):
            texts = [texts]
        return self.model.encode_texts(rep_to(self.run.data.encode_new_texts(texts), self.run.device))

    @torch.no_grad()
    def similarity(self, images: Rep, texts: Rep) -> Tensor:
        from xmodal.eval.protocol import score_matrix

        settings = self.config.eval
        return score_matrix(self.model, images, texts, settings.image_block, settings.text_block).cpu()

    def evaluate(self, split: str = "test", *, shortlist: int | None = None) -> dict:
        """Every protocol the split supports (as ``xmodal eval``): ``{"i2t": {...}, "t2i": {...}, "rsum"}``."""
        from xmodal.eval.protocol import eval_settings, evaluate_split

        settings = eval_settings(self.config.eval) | ({} if shortlist is None else {"shortlist": shortlist})
        return evaluate_split(self.model, self.run.data.split(split), self.run.device, **settings)

    def __repr__(self) -> str:
        return f"TrainedRun({self.config.model.name} on {self.dataset.name}, {self.folder})"


def load_run(folder: str | Path, checkpoint: str = "best", device: str | None = None, *,
             allow_changed: bool = False) -> TrainedRun:
    """A run trained by :func:`train` or ``xmodal train``, from its folder.

    If its data changed since training this raises, unless ``allow_changed``: then its splits
    are the items the run recorded (a warning is logged).
    """
    from xmodal.device import resolve_device
    from xmodal.factory import check_data, load_trained

    run = load_trained(Path(folder), checkpoint, resolve_device(device) if device else None)
    changed = check_data(run, Path(folder), allow_changed)
    if changed:
        logging.getLogger(__name__).warning(changed)
    return TrainedRun(run, Path(folder))


def train(config: str | Path | RunConfig | Run, out: str | Path, *, path: str | Path | None = None,
          overrides: Sequence[str] = (), resume: bool = False) -> TrainedRun:
    """Train a config (a shipped name, a YAML file, a :class:`RunConfig`) or a run you built
    (:func:`xmodal.factory.make_run`) into ``out``; returns the best checkpoint, ready to score.

    ``overrides`` are ``--set`` strings (``"train.epochs=3"``); ``path`` is the dataset's path.
    """
    from xmodal.training.trainer import train as train_config
    from xmodal.training.trainer import train_run

    extra = [*([f"data.path={path}"] if path is not None else []), *overrides]
    if isinstance(config, Run):
        if extra:
            raise TypeError("train(run, ...): path and overrides apply to configs; set them before building the run")
        train_run(config, Path(out), resume=resume)
    else:
        if isinstance(config, RunConfig):
            from xmodal.config import apply_overrides, validate_config

            config = validate_config(apply_overrides(config.model_dump(mode="json"), extra), "config")
        else:
            config = load_config(config, extra)
        train_config(config, Path(out), resume=resume)
    return load_run(out)


def evaluate(run: TrainedRun | str | Path, split: str = "test", *, shortlist: int | None = None) -> dict:
    """Every protocol a trained run's split supports (a :class:`TrainedRun` or a run folder)."""
    trained = run if isinstance(run, TrainedRun) else load_run(run)
    return trained.evaluate(split, shortlist=shortlist)
