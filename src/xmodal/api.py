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

from xmodal.config import RunConfig, apply_overrides, list_configs, load_config, validate_config
from xmodal.data.records import Dataset
from xmodal.data.registry import dataset_names, read_dataset
from xmodal.device import resolve_device
from xmodal.errors import XmodalError
from xmodal.eval.protocol import eval_settings, evaluate_split, score_matrix
from xmodal.factory import data_path, load_trained, train_config
from xmodal.models import registry
from xmodal.models.base import InputSpec, Rep, RetrievalModel, rep_to
from xmodal.run import Run, check_data
from xmodal.training.trainer import train_run

__all__ = ["TrainedRun", "create_model", "evaluate", "list_configs", "list_datasets", "list_models", "load_config",
           "load_dataset", "load_run", "train"]


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


def load_dataset(name: str, path: str | Path | None = None, *, skip_bad: bool = False,
                 image_root: str | Path | None = None) -> Dataset:
    """Read a dataset: ``path`` as given, else ``$XMODAL_DATA_<NAME>``; ``emoji`` fetches itself.

    ``image_root``: the folder relative image paths resolve against (``csv``, ``karpathy``).
    """
    options = {"image_root": Path(image_root)} if image_root is not None else {}
    return read_dataset(name, data_path(name, path), skip_bad=skip_bad, **options)


class TrainedRun:
    """A trained model with the frozen encoders of its data: scores new images and texts.

    ``encode_images`` takes image files or PIL images, ``encode_texts`` strings; both return the
    model's representations, and ``similarity`` scores every image against every text
    (``[n_images, n_texts]``, higher is more similar).
    """

    def __init__(self, run: Run, folder: Path, data_warning: str | None = None):
        self.run = run
        self.folder = folder
        self.data_warning = data_warning  # set when the data changed since training (``allow_changed``)

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
        settings = self.config.eval
        return score_matrix(self.model, images, texts, settings.image_block, settings.text_block).cpu()

    def evaluate(self, split: str = "test", *, shortlist: int | None = None) -> dict:
        """Every protocol the split supports, exactly as ``xmodal eval --json`` prints it:
        ``{"i2t": {...}, "t2i": {...}, "rsum", "ranking": {"method": "exhaustive" | "two-stage", "k"}}``.

        ``shortlist`` K overrides the run's ``eval.shortlist`` (0: score every pair).
        """
        if shortlist is not None and shortlist < 0:
            raise XmodalError(f"shortlist {shortlist}: give K >= 0 (0 scores every pair)")
        settings = eval_settings(self.config.eval) | ({} if shortlist is None else {"shortlist": shortlist})
        metrics = evaluate_split(self.model, self.run.data.split(split), self.run.device, **settings)
        k = settings["shortlist"]
        ranking = {"method": "two-stage", "k": k} if k else {"method": "exhaustive"}
        return metrics | {"ranking": ranking} | ({"warning": self.data_warning} if self.data_warning else {})

    def __repr__(self) -> str:
        return f"TrainedRun({self.config.model.name} on {self.dataset.name}, {self.folder})"


def load_run(folder: str | Path, checkpoint: str = "best", device: str | None = None, *,
             allow_changed: bool = False) -> TrainedRun:
    """A run trained by :func:`train` or ``xmodal train``, from its folder.

    If its data changed since training this raises, unless ``allow_changed``: then its splits
    are the items the run recorded (a warning is logged, and kept as ``data_warning``).
    """
    run = load_trained(Path(folder), checkpoint, resolve_device(device) if device else None)
    changed = check_data(run, Path(folder), allow_changed)
    if changed:
        logging.getLogger(__name__).warning(changed)
    return TrainedRun(run, Path(folder), changed)


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
