"""Run configuration: one YAML per model x dataset, every value overridable with ``--set``.

The schema is strict: an unknown key or a value of the wrong type is an error that names the
key path (``optim.lrr``), so a typo never silently falls back to a default.

Configs compose with the model's named variants (:mod:`xmodal.models.registry`): a config states
only what differs from the model's defaults, and naming a variant in a later layer (a config
with ``base:``, or ``--set model.name=jgcar-grl``) replaces what the earlier layers set for the
preset's parameters. A config may say what else changes when it is trained as one of its
model's variants (a smaller budget, another text input) in a ``variants:`` section::

    variants:
      lstm: {data: {text_input: words}, train: {epochs: 10}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, field_validator

from xmodal.data.images import DEFAULT_MAX_PIXELS
from xmodal.encoders.image import check_resolution
from xmodal.errors import XmodalError
from xmodal.models.registry import get_model_class, resolve


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(Section):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)  # validated by the model's own Params


class DataConfig(Section):
    dataset: str
    path: str | None = None
    # Input kinds (xmodal.features.kinds), one per part the model reads; None: the model's preferred.
    image_input: str | list[str] | None = None
    text_input: str | list[str] | None = None
    resolution: int = 224  # image size for the image encoder: a multiple of 32
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    # Which part of train becomes validation when the dataset ships none: folds 0, 1, ... of
    # val_fraction 1/F are disjoint (cross-validated model selection); 0 is the usual carve.
    val_fold: int = Field(0, ge=0)
    image_root: str | None = None  # folder relative image paths resolve against (csv, karpathy readers)
    # The mosaic reader's options (xmodal.data.mosaic): the source reader, rows x columns, tile px, groupings
    source: str | None = None
    grid: str | None = None
    tile: int | None = Field(None, ge=32)
    train_groupings: int | None = Field(None, ge=1)
    lang: str | None = None  # emoji: a CLDR locale for the texts (zh, ja, ru, ...); None: English
    # `words` rows GloVe has no vector for (most of them in Chinese, Japanese, Russian...): "zero", or
    # "random" (a fixed Gaussian draw at the known rows' scale, so each word starts distinct)
    unknown_words: Literal["zero", "random"] = "zero"
    skip_bad: bool = False  # skip unreadable records and images (counted, listed in RUN/skipped.txt)
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=0)  # larger images are refused as unreadable (0: no limit)
    graph_vertices: int = Field(2000, ge=2)  # vertices of the word graph (text input 'bow', SCANet 3.1)
    # English stop words ("the", "of") left off the word graph's vertices (False: the most frequent words as they come)
    graph_stop_words: bool = False
    # The word graph's neighbours: GloVe vectors (as the paper's word2vec), or PPMI of co-occurrence
    # in the training texts, for texts GloVe cannot read (xmodal.encoders.graph)
    graph_vectors: Literal["glove", "ppmi"] = "glove"

    @field_validator("resolution")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        try:
            return check_resolution(value, "data.resolution")
        except XmodalError as error:
            raise ValueError(str(error).split(": ", 1)[1]) from None


class OptimizerConfig(Section):
    name: Literal["sgd", "adam", "rmsprop"] = "adam"
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0)


class OptimConfig(OptimizerConfig):
    lr_decay_epochs: int = Field(0, ge=0)  # every this many epochs, lr *= lr_decay (0: never)
    lr_decay: float = Field(0.1, gt=0)
    # Learning rates of parts of the model, by parameter-name prefix (a module path such as
    # "image_head.classifier"); every other parameter takes ``lr``. Decay scales each alike.
    group_lr: dict[str, PositiveFloat] = Field(default_factory=dict)
    # Optimisers of a model's adversarial parts, by loss term (see RetrievalModel.auxiliary).
    auxiliary: dict[str, OptimizerConfig] = Field(default_factory=dict)


class EarlyStopping(Section):
    metric: Literal["auto", "rsum", "map"] = "auto"  # auto: map when labelled, else rsum
    patience: int = Field(5, ge=1)


class TrainConfig(Section):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=2)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on GPU; ignored on CPU
    grad_clip: float = Field(2.0, ge=0)  # 0: no clipping
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)


class EvalConfig(Section):
    map_at: list[int] = Field(default_factory=lambda: [50])
    image_block: int = Field(256, ge=1)
    text_block: int = Field(1024, ge=1)
    # Two-stage retrieval (JGCAR section 2.4): 0 scores every pair with ``similarity``; K > 0
    # shortlists K candidates per query by the global vectors (``embed``) and reranks only those.
    shortlist: int = Field(0, ge=0)


class RunConfig(Section):
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``optim.lr=1e-3`` -> (["optim", "lr"], 0.001); values are read as YAML scalars/lists."""
    if "=" not in text:
        raise XmodalError(f"--set {text!r}: expected KEY=VALUE, e.g. --set optim.lr=1e-3")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise XmodalError(f"--set {text!r}: value is not valid YAML ({error})") from None
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)  # YAML 1.1 reads "1e-3" as a string
    return key.strip().split("."), value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _model_name(raw: dict[str, Any]) -> Any:
    model = raw.get("model")
    return model.get("name") if isinstance(model, dict) else None


def _variant_preset(name: Any) -> dict[str, Any]:
    """The parameters a model name presets (none for a plain model or a name that is not known)."""
    if not isinstance(name, str):
        return {}
    try:
        return resolve(name)[1]
    except XmodalError:
        return {}  # an unknown name is reported by the model registry when the run is built


def _name_replaces_presets(raw: dict[str, Any], name: Any) -> dict[str, Any]:
    """``raw`` without the model parameters the variant ``name`` presets (they came from earlier layers)."""
    preset = _variant_preset(name)
    params = (raw.get("model") or {}).get("params") if isinstance(raw.get("model"), dict) else None
    if not preset or not isinstance(params, dict) or not set(preset) & set(params):
        return raw
    kept = {key: value for key, value in params.items() if key not in preset}
    return {**raw, "model": {**raw["model"], "params": kept}}


def _apply_variant_section(raw: dict[str, Any], name: Any) -> dict[str, Any]:
    """Merge the config's ``variants.<variant>`` settings when it is trained as that variant; drop the section."""
    sections = raw.pop("variants", None)
    if sections is None:
        return raw
    if not isinstance(sections, dict):
        raise XmodalError("variants: expected a mapping of variant names to settings, e.g. variants: {grl: {...}}")
    model = name.partition("-")[0] if isinstance(name, str) else None
    known = set(get_model_class(model).variants) if model else set()
    unknown = sorted(set(sections) - known)
    if unknown:
        raise XmodalError(f"variants: {', '.join(unknown)} is not a variant of model {model!r}; "
                          f"its variants: {', '.join(sorted(known)) or 'none'}")
    variant = name.partition("-")[2] if isinstance(name, str) else ""
    section = sections.get(variant)
    if section is None:
        return raw
    if not isinstance(section, dict):
        raise XmodalError(f"variants.{variant}: expected a mapping of sections, e.g. {{train: {{epochs: 10}}}}")
    return merge_configs(raw, section)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``--set`` values on top of ``raw``. One that names a variant (``model.name=jgcar-grl``) first
    replaces the preset's parameters set by the config, and the config's ``variants`` section for
    the final name applies beneath the other values given."""
    parsed = [parse_override(override) for override in overrides]
    named = [value for path, value in parsed if path == ["model", "name"]]
    if named:
        raw = _name_replaces_presets(raw, named[-1])
    raw = _apply_variant_section(raw, named[-1] if named else _model_name(raw))
    for override in overrides:
        path, value = parse_override(override)
        node = raw
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise XmodalError(f"--set {override!r}: {key} is a value, not a section")
            node = child
        node[path[-1]] = value
    return raw


CONFIG_ROOT = Path(__file__).resolve().parent / "configs"


def list_configs() -> list[str]:
    """Names of the configs shipped with xmodal: ``dual/emoji``, ``gpldan/emoji-search``, ..."""
    return sorted(path.relative_to(CONFIG_ROOT).with_suffix("").as_posix() for path in CONFIG_ROOT.glob("*/*.yaml"))


def find_config(name: str | Path, relative_to: Path | None = None) -> Path:
    """A config file: a path that exists, else a shipped config by name.

    ``gpldan/emoji``, ``gpldan/emoji.yaml`` and ``configs/gpldan/emoji.yaml`` all name the shipped
    ``xmodal/configs/gpldan/emoji.yaml``, so a config name works from any folder and after a plain
    ``pip install``. ``relative_to`` (a config's folder) is tried first for a config's ``base:``.
    """
    candidates = [Path(name).expanduser()]
    if relative_to is not None and not Path(name).is_absolute():
        candidates.insert(0, relative_to / name)
    shipped = Path(name).as_posix().removeprefix("configs/")
    candidates += [CONFIG_ROOT / shipped, CONFIG_ROOT / f"{shipped}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if Path(name).is_dir():
        raise XmodalError(f"config {name}: is a folder, expected a YAML file or a config name such as dual/emoji")
    raise XmodalError(f"config {name} not found: not a file, nor a shipped config ({', '.join(list_configs())})")


def read_config(name: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file as a plain mapping, its ``base:`` (and the base's base) merged under it."""
    path = find_config(name, _chain[-1].parent if _chain else None).resolve()
    if path in _chain:
        raise XmodalError(f"{path}: base: forms a loop ({' -> '.join(str(p) for p in (*_chain, path))})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise XmodalError(f"{path}: not valid YAML ({error})") from None
    except UnicodeDecodeError:
        raise XmodalError(f"{path}: not UTF-8 text; save the config as UTF-8") from None
    if not isinstance(raw, dict):
        raise XmodalError(f"{path}: expected a mapping of sections (base, model, data, optim, train, eval)")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise XmodalError(f"{path}: base: expected a config name or path, e.g. base: gpldan/emoji.yaml")
    return merge_configs(read_config(base, (*_chain, path)), raw)


def merge_configs(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: sections merge key by key, any other value replaces; a model
    variant named by ``override`` replaces the values ``base`` set for the preset's parameters."""
    merged = dict(base)
    if isinstance(override.get("model"), dict) and "name" in override["model"]:
        merged = _name_replaces_presets(merged, override["model"]["name"])
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_configs(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(name: str | Path | None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> RunConfig:
    """Read a config (a path or a shipped name; or start from ``base``), apply ``--set``, validate.

    Errors name where the bad value came from: the file, or ``--set`` when an override set it.
    """
    path = find_config(name) if name is not None else None
    raw: dict[str, Any] = read_config(path) if path is not None else dict(base or {})
    where = str(path) if path is not None else "config"
    raw = apply_overrides(raw, overrides or [])
    overridden = {".".join(parse_override(text)[0]) for text in overrides or []}
    return validate_config(raw, where, overridden)


def validate_config(raw: dict[str, Any], where: str = "config", overridden: set[str] | None = None) -> RunConfig:
    """Check ``raw`` against the schema; ``overridden`` keys are blamed on ``--set``, not on ``where``."""
    if "variants" in raw:  # not through apply_overrides (a config built in code)
        raw = _apply_variant_section(dict(raw), _model_name(raw))
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        in_file, in_overrides = [], []
        for problem in error.errors():
            key = ".".join(str(part) for part in problem["loc"])
            message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
            got = "" if problem["type"] in ("missing", "extra_forbidden") else f" (got {problem.get('input')!r})"
            if key in (overridden or set()):
                in_overrides.append(f"--set {key}: {message}{got}")
            else:
                in_file.append(f"{key}: {message}{got}")
        parts = ([f"{where}: " + "; ".join(in_file)] if in_file else []) + in_overrides
        raise XmodalError("; ".join(parts)) from None


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
