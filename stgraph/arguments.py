"""Keyword arguments to a :class:`~stgraph.config.RunConfig`: what :func:`stgraph.train`,
:func:`stgraph.federated.simulate` and the ``stgraph train`` command's flags set.

:func:`run_config` layers the model's shipped defaults, a config file or set-up, the keyword arguments of
:data:`TRAIN_FIELDS` and typed or ``--set``-style overrides into one checked config; :func:`given_fields` names
the keys the caller set (what a resumed run compares).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: keyword argument of :func:`train` / :func:`run_config` -> the :class:`~stgraph.config.RunConfig` field it sets
#: (``stgraph train``'s flags are these arguments: ``--batch-size`` is ``batch_size``, ``--budget`` is
#: ``budget``, ``--no-progress`` is ``progress=False``)
TRAIN_FIELDS = {
    "data": "data.path", "graph": "data.graph", "dataset": "data.dataset", "covariates": "data.covariates",
    "null_value": "data.null_value", "probabilistic": "model.probabilistic", "distribution": "model.distribution",
    "epochs": "train.epochs", "budget": "train.budget_minutes", "batch_size": "train.batch_size", "lr": "train.lr",
    "seed": "train.seed", "device": "train.device", "progress": "train.progress",
    "weight_column": "data.graph_weight_column", "weights": "data.graph_weights",
    "graph_aggregate": "data.graph_aggregate",
    "split_gap": "data.split_gap", "text_encoder": "data.text_encoder", "skip_bad_rows": "data.skip_bad_rows",
}

#: the arguments that name files or lists: they count as given only when not empty
_FILE_ARGUMENTS = ("data", "graph", "dataset", "covariates", "probabilistic")


def _settings(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :data:`TRAIN_FIELDS` -> ``{dotted field: value}`` for those given (not ``None``;
    a file or list argument also not empty). A ``distribution`` implies ``probabilistic=True``."""
    unknown = sorted(set(fields) - set(TRAIN_FIELDS))
    if unknown:
        near = difflib.get_close_matches(unknown[0], TRAIN_FIELDS, n=1)
        raise ConfigError(f"unknown argument {unknown[0]!r}{f' (did you mean {near[0]!r}?)' if near else ''}; "
                          f"expected one of {sorted(TRAIN_FIELDS)}, or a config field in overrides=")
    out = {}
    for name, value in fields.items():
        if value if name in _FILE_ARGUMENTS else value is not None:
            value = [str(v) for v in value] if name == "covariates" else value
            out[TRAIN_FIELDS[name]] = str(value) if isinstance(value, Path) else value
    if out.get("model.distribution"):  # a distribution is a probabilistic head
        out["model.probabilistic"] = True
    return out


def _text(key: str, value: Any) -> str:
    """A typed override as the ``section.field=value`` text :func:`stgraph.config.apply_override` reads back
    to the same value (PyYAML's own dump of it)."""
    import yaml

    value = str(value) if isinstance(value, Path) else value
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30)
    return f"{key}={text.removesuffix(chr(10) + '...' + chr(10)).strip()}"  # a scalar ends its document


def _overrides(overrides) -> list[str]:
    """``overrides`` as ``"section.field=value"`` texts: a mapping of typed fields (``{"train.lr": 0.01,
    "model.params.hidden": 32}``), or the texts themselves (``stgraph train --set``)."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [_text(k, v) for k, v in overrides.items()]
    return [overrides] if isinstance(overrides, str) else list(overrides)


def run_config(*, model: str | None = None, config=None, overrides: Mapping[str, Any] | Iterable[str] | None = None,
               **fields) -> "RunConfig":  # noqa: F821 - stgraph.config.RunConfig
    """The checked :class:`~stgraph.config.RunConfig` :func:`train` would train, from layers: the model's
    shipped defaults (``stgraph/configs/<model>.yaml``) <- ``config`` <- ``fields`` <- ``overrides``.

    Args:
        model: registry name (``"stgt"``, ``"last"``, ...) or ``package.module:Class``; default the config's,
            else ``stgt``.
        config: a YAML file, the name of a shipped set-up (``"stgt-classic"``), or a
            :class:`~stgraph.config.RunConfig` to start from (the shipped defaults are then not read).
        overrides: more config fields, as a mapping ``{"train.max_batches": 3, "model.params.hidden": 32}`` or
            as ``["train.max_batches=3", ...]`` (YAML values, like ``stgraph train --set``).
        **fields: the keyword arguments of :data:`TRAIN_FIELDS` (``data``, ``graph``, ``epochs``, ``lr``, ...).

    Raises:
        ConfigError: an unknown argument or field, or a value the config refuses.
    """
    from .config import RunConfig, apply_override, compose_config, with_fields

    texts = _overrides(overrides)
    if not isinstance(config, RunConfig):
        return compose_config(model, config, _settings(fields), texts)
    cfg = with_fields(config, {**({"model.name": model} if model else {}), **_settings(fields)})
    for item in texts:
        cfg = apply_override(cfg, item)
    return cfg.validate()


def given_fields(model, config, overrides, fields) -> set[str] | None:
    """The dotted config keys the caller set (what a resumed run checks); ``None`` (all) for a RunConfig."""
    from .config import RunConfig, given_keys

    if isinstance(config, RunConfig):
        return None
    named = {TRAIN_FIELDS[k] for k, v in fields.items() if v is not None}
    return given_keys(model, config, _settings(fields), _overrides(overrides)) | named
