"""The quality plan, derived rather than listed: every shipped config named ``<model>/<dataset>`` for
a benchmark dataset, trained as the model itself and as each of the model's declared variants.

Each row is labelled by the model's or variant's own label (:class:`xmodal.models.base.Variant`),
so a table row, a paper's row (:mod:`benchmarks.papers`) and a ``model.name`` are the same thing.
A variant whose parameters, composed with the config, equal an earlier row's is left out (on
Flickr8k ``jgcar/flickr8k`` is already JGCAR-v1: no labels), and the config's own row takes that
variant's label. Adding a model or a config adds its rows; nothing here needs editing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from xmodal.config import list_configs, load_config
from xmodal.models.registry import model_classes, model_params

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

# The benchmark datasets and where ../shared holds them (tests and benchmarks only).
DATASETS: dict[str, Path] = {"wikipedia-features": SHARED / "wikipedia", "wikipedia-texts": SHARED / "wikipedia",
                             "emoji": SHARED / "emoji", "emoji-zh": SHARED / "emoji",
                             "flickr8k": SHARED / "flickr8k-1k", "mosaic-emoji": SHARED / "emoji",
                             "mosaic-flickr8k": SHARED / "flickr8k-1k"}
# Emoji in other CLDR languages train with each model's emoji-zh config (inputs that need no English
# vocabulary: TF-IDF, words learnt from scratch, the co-occurrence graph) in that language.
LANGUAGE_DATASETS: dict[str, str] = {"emoji-ja": "ja", "emoji-ru": "ru"}
DATASETS |= {name: SHARED / "emoji" for name in LANGUAGE_DATASETS}
# User collections given with --dataset NAME=PATH train with each model's config for this dataset.
TEMPLATE_DATASET = "emoji"


@dataclass(frozen=True)
class Arm:
    """One row of a dataset's table: a shipped config trained as ``model`` (a model or variant name)."""

    dataset: str
    config: str  # a shipped config name, ``<model>/<dataset>``
    model: str  # what ``--set model.name=`` gets: ``jgcar`` or ``jgcar-grl``
    label: str  # the row's name in the tables (the model's or variant's label)
    default: bool  # the config's own model (``--quick`` keeps only these)
    overrides: tuple[str, ...] = ()  # beyond the model name (``data.dataset=csv`` for a user's collection)

    @property
    def family(self) -> str:
        """The registered model (``jgcar`` for ``jgcar-grl``), for ``--models``."""
        return self.model.partition("-")[0]

    @property
    def slug(self) -> str:
        return self.model

    def settings(self, seed: int, path: Path) -> list[str]:
        """The ``--set`` values of one run of this arm."""
        return [f"data.path={path}", f"train.seed={seed}", f"model.name={self.model}", *self.overrides]


def _order(config: str) -> tuple[bool, str]:
    model = model_classes()[config.split("/")[0]]
    return (model.trainable and model.name != "dual", config)  # the baselines (cca, dual) first


@cache
def _params(config: str, model: str, overrides: tuple[str, ...] = ()) -> dict:
    loaded = load_config(config, [f"model.name={model}", *overrides])
    return model_params(loaded.model.name, loaded.model.params)[1].model_dump()


def config_arms(dataset: str, config: str, overrides: tuple[str, ...] = ()) -> list[Arm]:
    """The rows of one config: its model, then each variant that trains something else."""
    family = config.split("/")[0]
    cls = model_classes()[family]
    names = [family, *(f"{family}-{variant}" for variant in cls.variants)]
    labels = {family: cls.label} | {f"{family}-{variant}": preset.label for variant, preset in cls.variants.items()}
    params = {name: _params(config, name, overrides) for name in names}
    arms, trained = [], []
    for name in names:
        if params[name] in trained:
            continue
        trained.append(params[name])
        # The config's own row takes the label of a variant it equals (jgcar/flickr8k is JGCAR-v1).
        same = [other for other in names[1:] if params[other] == params[name]]
        arms.append(Arm(dataset, config, name, labels[same[0]] if same else labels[name], name == family, overrides))
    return arms


def dataset_configs(dataset: str) -> list[str]:
    """The shipped configs ``<model>/<dataset>`` (not ``-paper`` or other named settings), baselines first."""
    return sorted((name for name in list_configs() if name.split("/")[1] == dataset), key=_order)


def plan_for(dataset: str, models: set[str] | None = None, quick: bool = False) -> list[Arm]:
    """The arms of ``dataset``; a dataset outside :data:`DATASETS` (a user's collection, read by the
    registry reader of that name) trains the configs of :data:`TEMPLATE_DATASET`."""
    if dataset in LANGUAGE_DATASETS:
        arms = [arm for config in dataset_configs("emoji-zh")
                for arm in config_arms(dataset, config, (f"data.lang={LANGUAGE_DATASETS[dataset]}",))]
    elif dataset in DATASETS:
        arms = [arm for config in dataset_configs(dataset) for arm in config_arms(dataset, config)]
    else:
        arms = [arm for config in dataset_configs(TEMPLATE_DATASET)
                for arm in config_arms(dataset, config, (f"data.dataset={dataset}",))]
    return [arm for arm in arms if (models is None or arm.family in models) and (arm.default or not quick)]


def speed_config(model: str) -> str:
    """The config the speed benchmark builds ``model`` from: its config for the largest benchmark dataset."""
    for dataset in ("flickr8k", "emoji", "wikipedia-texts", "wikipedia-features"):
        if f"{model}/{dataset}" in list_configs():
            return f"{model}/{dataset}"
    raise LookupError(f"model {model!r} has no config for any benchmark dataset ({', '.join(DATASETS)})")
