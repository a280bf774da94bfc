"""Model registry: ``@register`` a class, ``create_model`` by name, ``list_models`` for the CLI."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from xmodal.errors import XmodalError
from xmodal.models.base import InputSpec, RetrievalModel

_MODELS: dict[str, type[RetrievalModel]] = {}
# Modules that define models; imported on first use so `import xmodal` stays light.
MODEL_MODULES = ("xmodal.models.acln", "xmodal.models.baselines", "xmodal.models.bssan", "xmodal.models.gpldan",
                 "xmodal.models.jgcar", "xmodal.models.scanet")


def register(cls: type[RetrievalModel]) -> type[RetrievalModel]:
    if cls.name in _MODELS and _MODELS[cls.name] is not cls:
        raise ValueError(f"model name {cls.name!r} registered twice")
    _MODELS[cls.name] = cls
    return cls


def _load_all() -> None:
    for module in MODEL_MODULES:
        importlib.import_module(module)


def list_models() -> dict[str, type[RetrievalModel]]:
    _load_all()
    return dict(sorted(_MODELS.items()))


def resolve(name: str) -> tuple[type[RetrievalModel], dict[str, Any]]:
    """A model name, or a named variant ``<model>-<variant>`` (``jgcar-grl``), -> (class, preset params)."""
    models = list_models()
    if name in models:
        return models[name], {}
    base, _, variant = name.partition("-")
    if base in models and variant in models[base].variants:
        return models[base], dict(models[base].variants[variant])
    raise XmodalError(f"unknown model {name!r}; registered: {', '.join(list_names())}")


def list_names() -> list[str]:
    """Every model and named variant, as configs and ``create_model`` accept them."""
    return [name for model, cls in list_models().items()
            for name in (model, *(f"{model}-{variant}" for variant in cls.variants))]


def get_model_class(name: str) -> type[RetrievalModel]:
    return resolve(name)[0]


def parse_params(cls: type[RetrievalModel], params: dict[str, Any]) -> Any:
    try:
        return cls.Params(**params)
    except ValidationError as error:
        problems = "; ".join(f"model.params.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise XmodalError(f"bad parameters for model {cls.name!r}: {problems}") from None


def model_params(name: str, params: dict[str, Any] | None = None) -> tuple[type[RetrievalModel], Any]:
    """The class and parsed parameters of a model or variant name; ``params`` add to a variant's preset.

    A parameter that contradicts the variant's preset (``jgcar-grl`` sets mode=global) is an
    error, not silently either one: a config that says ``acln-baseline`` and ``attention: shared``
    would otherwise train a model its name does not describe.
    """
    cls, preset = resolve(name)
    params = params or {}
    clashes = [f"{key}={params[key]!r}" for key in preset if key in params and params[key] != preset[key]]
    if clashes:
        given = ", ".join(f"{key}={value!r}" for key, value in preset.items())
        raise XmodalError(f"model {name!r} is the preset {given}, but model.params sets {', '.join(clashes)}; "
                          f"remove the parameter, or name the base model {cls.name!r}")
    return cls, parse_params(cls, preset | params)


def create_model(name: str, spec: InputSpec, params: dict[str, Any] | None = None) -> RetrievalModel:
    """A new model of a registered name or variant (see :func:`model_params`)."""
    cls, parsed = model_params(name, params)
    return cls(spec, parsed)
