"""Model registry: ``@register`` a class in any module of ``xmodal.models``; it is found by scanning
the package (no list of modules to keep), created by name, and listed with its variants.

A name is a model (``jgcar``) or one of its named variants, ``<model>-<variant>`` (``jgcar-grl``):
a preset of parameters declared on the class (:class:`~xmodal.models.base.Variant`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from xmodal.errors import XmodalError
from xmodal.models.base import InputSpec, RetrievalModel
from xmodal.registry import Registry, import_package_modules

# Modules of the package that define no model.
NOT_MODELS = ("base", "registry")


def _discover() -> None:
    import_package_modules("xmodal.models", skip=NOT_MODELS)


MODELS: Registry[type[RetrievalModel]] = Registry("model", _discover)


def register(cls: type[RetrievalModel]) -> type[RetrievalModel]:
    """Class decorator: make a model creatable by its ``name`` (and its variants' names)."""
    if "-" in cls.name:
        raise ValueError(f"model name {cls.name!r}: '-' separates a model from its variant; use '_'")
    return MODELS.register(cls.name, cls)


def model_classes() -> dict[str, type[RetrievalModel]]:
    """Every registered model class by name, sorted."""
    return dict(sorted(MODELS.entries().items()))


def resolve(name: str) -> tuple[type[RetrievalModel], dict[str, Any]]:
    """A model name, or a named variant ``<model>-<variant>`` (``jgcar-grl``), -> (class, preset params)."""
    models = model_classes()
    if name in models:
        return models[name], {}
    base, _, variant = name.partition("-")
    if base in models and variant in models[base].variants:
        return models[base], dict(models[base].variants[variant].params)
    raise XmodalError(f"unknown model {name!r}; choose from {', '.join(creatable_names())}")


def creatable_names() -> list[str]:
    """Every model and named variant, as configs and ``create_model`` accept them."""
    return [name for model, cls in model_classes().items()
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
    would otherwise train a model its name does not describe. (A config that *inherits* such a
    parameter from a base config, or an earlier ``--set``, gives way to the variant named later:
    :func:`xmodal.config.merge_configs`.)
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
