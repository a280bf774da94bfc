"""A trained run as a thing to use: load it from its folder (or one exported file) and encode, score,
search or evaluate, without the training data unless a task needs it.

A run folder carries its input pipeline (``RUN/inputs/``, :mod:`xmodal.features.pipeline`), so
:func:`load_run` builds the model from the run alone: no dataset is read and no feature is
extracted to encode a query or a new collection. The dataset is read only for what uses it
(:meth:`TrainedRun.evaluate`, :meth:`TrainedRun.split`, ``--collection split:test``), and its
absence there is one clear error. A run trained before runs kept their pipeline gets it written
from its data on first load (or by ``xmodal run complete RUN``).

``xmodal export RUN -o NAME.xmodal`` (:func:`export_run`) writes one zip of the run's safe files
(config, weights as safetensors, the input pipeline, the metrics it was evaluated at) with a
manifest of their SHA-256; :func:`load_run` accepts such a file, checks every member against the
manifest and unpacks it once into ``$XMODAL_HOME/models/<sha256>/``.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import io
import json
import logging
import zipfile
from pathlib import Path
from typing import Sequence

import torch
import yaml
from PIL import Image
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor

from xmodal.config import RunConfig, dump_config, validate_config
from xmodal.data.records import Dataset
from xmodal.device import resolve_device
from xmodal.errors import XmodalError
from xmodal.eval.protocol import check_protocol, encode_split, eval_settings, evaluate_split, score_matrix
from xmodal.factory import build_data, data_path, early_stopping_metric
from xmodal.features.inputs import SplitData
from xmodal.features.pipeline import FOLDER as PIPELINE_FOLDER
from xmodal.features.pipeline import InputPipeline, pipeline_exists
from xmodal.file_hashes import hash_file
from xmodal.models.base import Rep, RetrievalModel, rep_to
from xmodal.models.registry import create_model
from xmodal.paths import atomic_directory, atomic_write_bytes, xmodal_home
from xmodal.run import Run, check_data
from xmodal.training.checkpoint import load_checkpoint

logger = logging.getLogger(__name__)

EXPORT_SUFFIX = ".xmodal"
EXPORT_FORMAT = 1
EXPORT_MANIFEST = "export.json"
EXPORTED_WEIGHTS = "model.safetensors"


class TrainedRun:
    """A trained model with its input pipeline: scores new images and texts, searches, evaluates.

    ``encode_images`` takes image files or PIL images, ``encode_texts`` strings; both return the
    model's representations, and ``similarity`` scores every image against every text
    (``[n_images, n_texts]``, higher is more similar).
    """

    def __init__(self, folder: Path, config: RunConfig, pipeline: InputPipeline, model: RetrievalModel,
                 device: torch.device, *, checkpoint: str = "best", allow_changed: bool = False,
                 run: Run | None = None):
        self.folder = Path(folder)
        self.source = self.folder  # what it was loaded from: the run folder, or an exported file
        self.config = config
        self.pipeline = pipeline
        self.model = model
        self.device = device
        self.checkpoint = checkpoint
        self.allow_changed = allow_changed
        self.data_warning: str | None = None  # set when the data changed since training (``allow_changed``)
        self._run = run

    @classmethod
    def of(cls, run: Run, folder: Path) -> "TrainedRun":
        """A run built in this process (its data at hand), e.g. right after training."""
        return cls(folder, run.config, run.data.pipeline(), run.model, run.device, run=run)

    # -- what needs nothing but the run ---------------------------------------------------------
    @property
    def dataset_name(self) -> str:
        return self.pipeline.settings.dataset

    @torch.no_grad()
    def encode_images(self, images: Sequence[str | Path | Image.Image]) -> Rep:
        return self.model.encode_images(rep_to(self.pipeline.encode_images(images), self.device))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> Rep:
        return self.model.encode_texts(rep_to(self.pipeline.encode_texts(texts), self.device))

    @torch.no_grad()
    def similarity(self, images: Rep, texts: Rep) -> Tensor:
        settings = self.config.eval
        return score_matrix(self.model, images, texts, settings.image_block, settings.text_block).cpu()

    def checkpoint_sha256(self) -> str:
        """The SHA-256 of the checkpoint the weights came from (an exported run records its original's)."""
        exported = self.folder / EXPORT_MANIFEST
        if exported.is_file():
            return json.loads(exported.read_text(encoding="utf-8"))["checkpoint_sha256"]
        return hash_file(self.folder / "checkpoints" / f"{self.checkpoint}.pt", length=64)

    # -- what needs the dataset -----------------------------------------------------------------
    @property
    def run(self) -> Run:
        """The run with its data (read on first use): what evaluation and the run's own splits need."""
        if self._run is None:
            self._run = self._with_data()
        return self._run

    @property
    def dataset(self) -> Dataset:
        return self.run.dataset

    def split(self, name: str) -> SplitData:
        return self.run.data.split(name)

    def evaluate(self, split: str = "test", *, shortlist: int | None = None, protocol: str | None = None,
                 first_stage: "TrainedRun | None" = None) -> dict:
        """Every protocol the split supports, exactly as ``xmodal eval --json`` prints it:
        ``{"i2t": {...}, "t2i": {...}, "rsum", "ranking": {"method": "exhaustive" | "two-stage", "k"}}``,
        with ``attention`` and ``pointing`` for a model that explains its scores.

        ``shortlist`` K overrides the run's ``eval.shortlist`` (0: score every pair); ``protocol``
        names one of the field's (``coco-1k``: five folds of 1,000 images, averaged; ``coco-5k``,
        ``flickr30k-1k``; see :data:`xmodal.eval.protocol.PROTOCOLS`). ``first_stage``, a run of an
        embedding model on the same data, shortlists for this one in place of its own global vector.
        """
        if shortlist is not None and shortlist < 0:
            raise XmodalError(f"shortlist {shortlist}: give K >= 0 (0 scores every pair)")
        if protocol is not None:
            check_protocol(protocol)  # before any data is read
        settings = eval_settings(self.config.eval) | ({} if shortlist is None else {"shortlist": shortlist})
        k = settings["shortlist"]
        if first_stage is not None and not k:
            raise XmodalError(f"a first stage from {first_stage.folder} shortlists for two-stage ranking: give "
                              "--shortlist K > 0")
        vectors = None if first_stage is None else first_stage.global_vectors(split, self.run.data.split_ids()[split])
        metrics = evaluate_split(self.model, self.split(split), self.device, attention=True, protocol=protocol,
                                 first_stage=vectors, **settings)
        ranking = {"method": "two-stage", "k": k} if k else {"method": "exhaustive"}
        if first_stage is not None:
            ranking["first_stage"] = f"{first_stage.config.model.name} ({first_stage.folder})"
        return metrics | {"ranking": ranking} | ({"warning": self.data_warning} if self.data_warning else {})

    @torch.no_grad()
    def global_vectors(self, split: str, ids: list[str]) -> tuple[Tensor, Tensor]:
        """This model's global vectors (images, texts) of ``split``, whose items must be ``ids`` in order:
        the first stage this run gives another run's two-stage ranking."""
        own = self.run.data.split_ids()[split]
        if own != ids:
            shared = len(set(own) & set(ids))
            raise XmodalError(f"the first-stage run {self.folder} has other {split} items than the run it shortlists "
                              f"for ({len(own)} against {len(ids)}, {shared} shared): train both on the same dataset "
                              "and split")
        self.model.eval()
        images, texts = encode_split(self.model, self.split(split), self.device)
        image_vectors, text_vectors = self.model.embed(images), self.model.embed(texts)
        if image_vectors is None or text_vectors is None:
            raise XmodalError(f"the first-stage run {self.folder} ({self.config.model.name}) has no global vector "
                              "to shortlist by: choose a run of an embedding model (cca, dual, conse, ...)")
        return image_vectors, text_vectors

    def record_metrics(self, name: str, metrics: dict) -> None:
        """Keep an evaluation's metrics in ``RUN/metrics/NAME.json`` (an export carries them); a run folder
        that cannot be written (shared, or an unpacked export) is left as it is."""
        if (self.folder / EXPORT_MANIFEST).is_file():
            return
        try:
            (self.folder / "metrics").mkdir(exist_ok=True)
            atomic_write_bytes(self.folder / "metrics" / f"{name}.json", json.dumps(metrics, indent=1).encode())
        except OSError as error:
            logger.debug("metrics of %s not kept: %s", self.folder, error)

    def _with_data(self) -> Run:
        try:
            data_path(self.config.data.dataset, self.config.data.path)
        except XmodalError as error:
            raise XmodalError(f"this needs the dataset run {self.folder} was trained on, and it is not there "
                              f"({error}); searching, encoding and indexing folders need only the run") from None
        data = build_data(self.config, self.device)
        differences = pipeline_differences(self.pipeline, data.pipeline())
        if differences:
            raise XmodalError(f"the data at {self.config.data.path} gives other inputs than run {self.folder} was "
                              f"trained on ({'; '.join(differences)}); evaluate on the data it was trained on")
        run = Run(self.config, data.dataset, data, self.model, self.device,
                  early_stopping_metric(self.config, data.dataset))
        self.data_warning = check_data(run, self.folder, self.allow_changed)
        if self.data_warning:
            logger.warning(self.data_warning)
        return run

    def __repr__(self) -> str:
        return f"TrainedRun({self.config.model.name} on {self.dataset_name}, {self.folder})"


def pipeline_differences(saved: InputPipeline, now: InputPipeline) -> list[str]:
    """How the inputs the data gives now differ from the run's own (sizes, vocabularies): none if equal."""
    found = []
    for name in ("image_parts", "text_parts", "image_dim", "text_dim", "image_regions", "grid_side", "vocab_size",
                 "n_classes"):
        if getattr(saved.spec, name) != getattr(now.spec, name):
            found.append(f"{name} {getattr(saved.spec, name)!r} then, {getattr(now.spec, name)!r} now")
    for key in sorted(set(saved.states) & set(now.states)):
        if _state_words(saved.states[key]) != _state_words(now.states[key]):
            found.append(f"the {key} vocabulary")
    if (saved.settings.resolution, saved.settings.max_text_tokens) != (now.settings.resolution,
                                                                       now.settings.max_text_tokens):
        found.append("the encoder settings")
    return found


def _state_words(state: object) -> object:
    """A kind's state as comparable words (a vocabulary, the graph's vertices, the TF-IDF vocabularies)."""
    for attribute in ("words", "vocabularies"):
        if hasattr(state, attribute):
            return getattr(state, attribute)
    return state


# -- loading ------------------------------------------------------------------------------------

def load_run(source: str | Path, checkpoint: str = "best", device: str | None = None, *,
             allow_changed: bool = False) -> TrainedRun:
    """A run from its folder, or from a file written by :func:`export_run`.

    Nothing of the training data is read here. When a task needs it and it changed since
    training, that task raises unless ``allow_changed``: then the run's splits are the items it
    recorded (a warning is logged, and kept as ``data_warning``).
    """
    folder = Path(source)
    if folder.suffix == EXPORT_SUFFIX or folder.is_file():
        folder = unpack_export(folder)
        checkpoint = "best"
    elif not folder.is_dir():
        raise XmodalError(f"{folder}: no such run folder (or {EXPORT_SUFFIX} file)")
    config, weights = _config_and_weights(folder, checkpoint)
    target = resolve_device(device) if device else resolve_device(config.train.device)
    pipeline = _pipeline(folder, config, target)
    model = create_model(config.model.name, pipeline.spec, config.model.params)
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise XmodalError(f"{folder}: weights do not fit model {config.model.name!r} "
                          f"({str(error).splitlines()[0]}); was the model code changed since training?") from None
    model.to(target).eval()
    run = TrainedRun(folder, config, pipeline, model, target, checkpoint=checkpoint, allow_changed=allow_changed)
    run.source = Path(source)
    return run


def _config_and_weights(folder: Path, checkpoint: str) -> tuple[RunConfig, dict[str, Tensor]]:
    exported = folder / EXPORTED_WEIGHTS
    if exported.is_file():
        config = validate_config(yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")),
                                 str(folder / "config.yaml"))
        return config, load_safetensors(exported.read_bytes())
    path = folder / "checkpoints" / f"{checkpoint}.pt"
    state = load_checkpoint(path)
    config = validate_config(state["config"], str(path))
    # The inputs the model was trained on, even if the config left the choice to the model.
    config.data.image_input, config.data.text_input = state["inputs"]["image"], state["inputs"]["text"]
    return config, state["model"]


def _pipeline(folder: Path, config: RunConfig, device: torch.device) -> InputPipeline:
    if not pipeline_exists(folder):
        complete_run(folder, config, device)
    return InputPipeline.load(folder / PIPELINE_FOLDER, device)


def complete_run(folder: Path, config: RunConfig | None = None, device: torch.device | None = None,
                 path: str | Path | None = None) -> Path:
    """Write ``RUN/inputs/`` of a run trained before runs kept their input pipeline, from its data."""
    folder = Path(folder)
    if config is None:
        config = _config_and_weights(folder, "best")[0]
    if path is not None:
        config = config.model_copy(deep=True)
        config.data.path = str(Path(path).expanduser().resolve())
    try:
        data_path(config.data.dataset, config.data.path)
    except XmodalError as error:
        raise XmodalError(f"run {folder} was trained before runs kept their input pipeline (RUN/inputs/), and its "
                          f"data is not there to rebuild it ({error}); run `xmodal run complete {folder} --path DATA` "
                          "where the data is, or train again") from None
    data = build_data(config, device or resolve_device(config.train.device))
    with atomic_directory(folder / PIPELINE_FOLDER) as staging:
        data.pipeline().save(staging)
    logger.info("wrote the input pipeline of %s from its data (%s)", folder, config.data.path)
    return folder / PIPELINE_FOLDER


# -- one-file models ------------------------------------------------------------------------------

def export_run(folder: str | Path, out: str | Path, checkpoint: str = "best") -> Path:
    """One ``.xmodal`` file of a run: config, weights (safetensors), input pipeline, metrics, manifest."""
    folder, out = Path(folder), Path(out)
    if out.suffix != EXPORT_SUFFIX:
        raise XmodalError(f"{out}: an exported model's name ends in {EXPORT_SUFFIX}")
    run = load_run(folder, checkpoint, "cpu")  # writes RUN/inputs/ of an older run while its data is there
    members: dict[str, bytes] = {
        "config.yaml": dump_config(run.config).encode(),
        EXPORTED_WEIGHTS: save_safetensors({key: value.contiguous() for key, value in run.model.state_dict().items()}),
    }
    for path in sorted((folder / PIPELINE_FOLDER).rglob("*")):
        if path.is_file():
            members[path.relative_to(folder).as_posix()] = path.read_bytes()
    for path in sorted(folder.glob("metrics/*.json")) + [folder / "data.json"]:
        if path.is_file():
            members[path.relative_to(folder).as_posix()] = path.read_bytes()
    manifest = {"format": EXPORT_FORMAT, "xmodal": importlib.metadata.version("xmodal"),
                "created": datetime.datetime.now().isoformat(),
                "model": run.config.model.name, "dataset": run.dataset_name, "inputs": run.pipeline.describe(),
                "checkpoint": checkpoint, "checkpoint_sha256": run.checkpoint_sha256(),
                "metrics": {path.removeprefix("metrics/").removesuffix(".json"): json.loads(members[path])
                            for path in members if path.startswith("metrics/")},
                "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in members.items()}}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(EXPORT_MANIFEST, json.dumps(manifest, indent=1))
        for name, blob in members.items():
            archive.writestr(name, blob)
    atomic_write_bytes(out, buffer.getvalue())
    return out


def unpack_export(path: Path) -> Path:
    """The run folder of an exported file, unpacked once (and checked) under ``$XMODAL_HOME/models``."""
    if not path.is_file():
        raise XmodalError(f"{path}: no such file")
    digest = hash_file(path, length=64)
    folder = xmodal_home() / "models" / digest[:32]
    if (folder / EXPORT_MANIFEST).is_file():
        return folder
    members = read_export(path)
    with atomic_directory(folder) as staging:
        for name, blob in members.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(blob)
    return folder


def read_export(path: Path) -> dict[str, bytes]:
    """The members of an exported file, each checked against the manifest's SHA-256; one line if not."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if EXPORT_MANIFEST not in names:
                raise XmodalError(f"{path}: not an exported xmodal model (no {EXPORT_MANIFEST} inside)")
            manifest = json.loads(archive.read(EXPORT_MANIFEST))
            if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
                raise XmodalError(f"{path}: exported model format {manifest.get('format')!r} "
                                  f"(this xmodal reads {EXPORT_FORMAT})")
            files = manifest["files"]
            unexpected = sorted(set(names) - set(files) - {EXPORT_MANIFEST})
            if unexpected:
                raise XmodalError(f"{path}: holds {unexpected[0]!r}, which its manifest does not list: not as exported")
            members = {EXPORT_MANIFEST: archive.read(EXPORT_MANIFEST)}
            for name, expected in files.items():
                if name not in names:
                    raise XmodalError(f"{path}: {name!r} is missing; export the run again")
                blob = archive.read(name)
                if hashlib.sha256(blob).hexdigest() != expected:
                    raise XmodalError(f"{path}: {name!r} does not match its SHA-256 in the manifest (changed "
                                      "after export); use the file as exported")
                if name.startswith("/") or ".." in Path(name).parts:
                    raise XmodalError(f"{path}: member {name!r} points outside the model folder")
                members[name] = blob
    except (zipfile.BadZipFile, OSError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise XmodalError(f"{path}: not a readable exported xmodal model ({error})") from None
    return members
