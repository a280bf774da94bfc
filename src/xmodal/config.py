"""Run configuration: one YAML per model x dataset, every value overridable with ``--set``.

The schema is strict: an unknown key or a value of the wrong type is an error that names the
key path (``optim.lrr``), so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xmodal.errors import XmodalError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(Section):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)  # validated by the model's own Params


class DataConfig(Section):
    dataset: str
    path: str | None = None
    image_input: Literal["global", "regions"] | None = None  # None: the model's preferred kind
    text_input: Literal["global", "words", "tokens"] | None = None
    resolution: int = 224
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)


class OptimizerConfig(Section):
    name: Literal["sgd", "adam", "rmsprop"] = "adam"
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0)


class OptimConfig(OptimizerConfig):
    lr_decay_epochs: int = Field(0, ge=0)  # every this many epochs, lr *= lr_decay (0: never)
    lr_decay: float = Field(0.1, gt=0)
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


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
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


def load_config(path: Path | None, overrides: list[str] | None = None, base: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (or start from ``base``), apply ``--set`` overrides, validate."""
    where = str(path) if path is not None else "config"
    raw: dict[str, Any] = dict(base or {})
    if path is not None:
        if not Path(path).is_file():
            raise XmodalError(f"config file {path} not found; configs live under configs/<model>/<dataset>.yaml")
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise XmodalError(f"{path}: not valid YAML ({error})") from None
        if not isinstance(raw, dict):
            raise XmodalError(f"{path}: expected a mapping of sections (model, data, optim, train, eval)")
    raw = apply_overrides(raw, overrides or [])
    return validate_config(raw, where)


def validate_config(raw: dict[str, Any], where: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            key = ".".join(str(part) for part in problem["loc"])
            message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
            got = "" if problem["type"] in ("missing", "extra_forbidden") else f" (got {problem.get('input')!r})"
            problems.append(f"{key}: {message}{got}")
        raise XmodalError(f"{where}: " + "; ".join(problems)) from None


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
