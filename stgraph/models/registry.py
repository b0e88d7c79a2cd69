"""Model registry: every command finds models by name or import path.

A model is any ``torch.nn.Module`` with the forward contract::

    forward(x, graph, covariates) -> Tensor [B, T_out, N, C_out] | torch.distributions.Normal

with ``x`` ``[B, T_in, N, C_in]`` (z-scored), ``graph`` a PyG ``Data`` with
``edge_index`` ``[2, E]``, ``edge_weight`` ``[E]`` and ``num_nodes``, and
``covariates`` a dict of ``tod_in``/``dow_in`` ``[B, T_in]`` and
``tod_out``/``dow_out`` ``[B, T_out]``. Outputs are in the z-scored units of
the target channels. Its constructor takes sizes only; the registry passes the
ones it accepts among ``num_nodes, in_channels, out_channels, input_len,
horizon, steps_per_day, target_channels, probabilistic`` plus the user's
``params``.

Closed-form hook: a model (or a module inside one) fitted in closed form rather than by gradient
(historical average, VAR, stgt's seasonal residual) subclasses :class:`ClosedForm` and
implements ``fit_closed_form(fit)``, where ``fit`` is a :class:`ClosedFormData`: the training rows
of the targets with their calendar, the target statistics, and the training / validation windows
in batches. The trainer calls it once before training (on the model, or else on each submodule
that declares it); it is the only way a model sees training data.

Covariates from files (``--covariates``, :mod:`stgraph.data.covariates`) reach only models registered
with ``exogenous=True`` (:func:`exogenous_models`): they take the size argument ``exogenous``
(``[[source, channels], ...]``) and read ``covariates['exo_in']`` ``[B, T_in, N, C_x]`` and
``covariates['exo_out']`` ``[B, T_out, N, C_x]``. Any other model given covariates is an error.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch

from ..errors import ConfigError
from ..limits import param_limit
from ..typecheck import check_value

_REGISTRY: dict[str, type] = {}


@dataclass
class ClosedFormData:
    """What a closed-form fit sees (built by :func:`stgraph.training.prepare.closed_form_data`).

    Attributes:
        rows: ``[T_train, N, C_out]`` raw training-part targets in data units (nulls are ``null_value``).
        tod: ``[T_train]`` float32 time of day in ``[0, 1)`` of those rows; ``dow``: ``[T_train]`` int64 day of week.
        target_mean, target_std: ``C_out`` floats each: ``raw = z * std + mean``.
        null_value: the missing-reading marker of ``rows`` and of the batches' ``y``.
        batches: ``batches(split, batch_size)`` iterates the windows of ``'train'`` or ``'val'`` in order, as
            batches with ``x [B, T_in, N, C_in]`` (z-scored), ``y [B, T_out, N, C_out]`` (raw),
            ``covariates`` and ``to(device)``.
        windows: the number of windows of each split, ``{'train': n, 'val': n, 'test': n}``.
        horizon, steps_per_day: sizes; target_channels: position of each target among the input channels
            (``None`` when a target is not an input).
    """

    rows: torch.Tensor
    tod: torch.Tensor
    dow: torch.Tensor
    target_mean: Sequence[float]
    target_std: Sequence[float]
    null_value: float
    batches: Callable[[str, int], Iterable]
    windows: dict
    horizon: int
    steps_per_day: int
    target_channels: tuple | None

    @property
    def num_nodes(self) -> int:
        return int(self.rows.shape[1])

    @property
    def out_channels(self) -> int:
        return int(self.rows.shape[2])

    @property
    def device(self) -> torch.device:
        return self.rows.device


class ClosedForm:
    """Declares the closed-form hook of the registry contract (see the module docstring): subclass it next
    to ``nn.Module`` and implement :meth:`fit_closed_form`."""

    def fit_closed_form(self, fit: ClosedFormData) -> None:
        """Fit the module's buffers (or starting weights) from ``fit``, in closed form."""
        raise NotImplementedError(f"{type(self).__name__} declares ClosedForm but has no fit_closed_form")


def fit_closed_form(module: torch.nn.Module, fit: ClosedFormData) -> None:
    """Call :meth:`ClosedForm.fit_closed_form` on ``module`` if it declares it, else on each of its
    children that does (recursively): closed-form models (VAR, HA) and closed-form parts of networks
    (stgt's seasonal residual) are fitted before training."""
    if isinstance(module, ClosedForm):
        module.fit_closed_form(fit)
        return
    for child in module.children():
        fit_closed_form(child, fit)

SIZE_ARGS = ("num_nodes", "in_channels", "out_channels", "input_len", "horizon",
             "steps_per_day", "target_channels", "probabilistic", "exogenous")


def register(name: str, exogenous: bool = False) -> Callable[[type], type]:
    """Class decorator adding a model under ``name``; ``exogenous``: it takes covariates from files."""
    def deco(cls: type) -> type:
        _REGISTRY[name.lower()] = cls
        cls.registry_name = name.lower()
        cls.takes_exogenous = bool(exogenous)
        return cls
    return deco


def exogenous_models() -> list[str]:
    """Registered models that take covariates from files (``--covariates``)."""
    return sorted(k for k, cls in _REGISTRY.items() if getattr(cls, "takes_exogenous", False))


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type:
    """A registered name (``stgt``) or an import path (``mypkg.mod:MyModel`` / ``mypkg.mod.MyModel``)."""
    key = name.lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    if ":" in name or "." in name:
        mod, _, attr = name.partition(":") if ":" in name else name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"model '{name}': cannot import it ({e}); expected 'package.module:ClassName'") from None
        if not (inspect.isclass(cls) and issubclass(cls, torch.nn.Module)):
            raise ConfigError(f"model '{name}' is not a torch.nn.Module class")
        return cls
    near = difflib.get_close_matches(key, list(_REGISTRY), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise ConfigError(f"unknown model '{name}'{hint}; available: {available_models()} "
                      f"or an import path 'package.module:ClassName'")


def build_model(name: str, sizes: dict, params: dict | None = None) -> torch.nn.Module:
    """Instantiate model ``name`` with the size arguments it accepts and ``params``.

    Unknown ``params`` keys are an error naming the nearest constructor argument.
    """
    cls = get_model_class(name)
    sig = inspect.signature(cls.__init__)
    accepted = [p for p in sig.parameters if p != "self"]
    var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    kwargs = {k: v for k, v in sizes.items() if k in accepted or (var_kw and k in SIZE_ARGS)}
    if sizes.get("exogenous") and not getattr(cls, "takes_exogenous", False):
        raise ConfigError(f"model '{name}' takes no covariate files (data.covariates); the models "
                          f"that do: {exogenous_models()}. Drop the covariates or pick one of those")
    if sizes.get("probabilistic") and "probabilistic" not in kwargs:
        raise ConfigError(f"model '{name}' has no probabilistic head; drop model.probabilistic or pick 'stgt'")
    for k, v in (params or {}).items():
        if k in SIZE_ARGS:
            raise ConfigError(f"model.params.{k}: sizes come from the data, not the config")
        if k not in accepted and not var_kw:
            near = difflib.get_close_matches(k, accepted, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError(f"model.params.{k}: '{name}' has no such argument{hint}; valid: {accepted}")
        if k in sig.parameters:
            _check_annotation(name, k, v, _hints(cls).get(k))
            _check_param(name, k, v, sig.parameters[k].default, k in getattr(cls, "may_be_zero", ()))
        kwargs[k] = v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, ZeroDivisionError, AssertionError, RuntimeError) as e:
        given = {k: v for k, v in (params or {}).items()}
        raise ConfigError(f"model '{name}' cannot be built with model.params {given} "
                          f"({type(e).__name__}: {' '.join(str(e).split())[:400]}); check those values") from None


def _hints(cls: type) -> dict:
    """The constructor's resolved annotations (``{}`` when they cannot be resolved)."""
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - an annotation naming something not importable: no type check
        return {}


def _type_text(tp) -> str:
    return str(tp).replace("typing.", "").replace("collections.abc.", "").replace("<class '", "").replace("'>", "")


def _check_annotation(model: str, key: str, value, tp) -> None:
    """A model argument must fit the type its constructor declares (``Optional[int]``, ``Sequence[int]``, ...):
    :func:`stgraph.typecheck.check_value`, the check of config fields, without their conversions."""
    if tp is None:
        return
    try:
        check_value(value, tp, f"model.params.{key}", convert=False)
    except ConfigError:
        raise ConfigError(f"model.params.{key} = {value!r}: expected {_type_text(tp)}, got {type(value).__name__} "
                          f"('{model}' declares {key}: {_type_text(tp)})") from None


def _check_param(model: str, key: str, value, default, may_be_zero: bool = False) -> None:
    """A model argument must have the type of its default; an integer whose default is >= 1
    (a width, a depth, a number of heads) must be >= 1, or >= 0 where the model lists the argument in
    its class attribute ``may_be_zero`` (stgt's ``decoder_layers``), and at most its bound
    (:func:`stgraph.limits.param_limit`: 256 for a depth, checked before anything is built)."""
    where = f"model.params.{key} = {value!r}"
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false ('{model}' defaults to {default})")
    elif isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer ('{model}' defaults to {default})")
        if default >= 1 and value < (0 if may_be_zero else 1):
            raise ConfigError(f"{where}: expected {'an integer >= 0' if may_be_zero else 'a positive integer'} "
                              f"('{model}' defaults to {default})")
        high, what = param_limit(key)
        if default >= 1 and value > high:
            raise ConfigError(f"{where}: expected at most {high:,} ({what}; '{model}' defaults to {default})")
    elif isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value or \
                value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: expected a finite number ('{model}' defaults to {default})")
        if 0 <= default < 1 and "drop" in key and not 0 <= value < 1:
            raise ConfigError(f"{where}: expected a probability in [0, 1) ('{model}' defaults to {default})")


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters; for a model fitted in closed form (no trainable parameter: VAR, HA) the
    fitted coefficients it keeps, i.e. its floating-point persistent buffers of more than one value
    (VAR's ``weight`` and ``bias``, HA's ``table``); 0 for last value, which keeps none."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable:
        return trainable
    return sum(b.numel() for b in model.state_dict().values()
               if torch.is_tensor(b) and b.is_floating_point() and b.numel() > 1)


def check_input(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int, int, int]:
    """Check ``x`` is ``[B, T_in, N, C_in]`` for ``model`` (its ``input_len``, ``num_nodes``,
    ``in_channels``); returns ``(B, T, N, C)``.

    Raises:
        ValueError: naming the expected and the found shape.
    """
    want = (model.input_len, model.num_nodes, model.in_channels)
    if x.dim() != 4 or tuple(x.shape[1:]) != want:
        raise ValueError(f"x must be [B, {want[0]}, {want[1]}, {want[2]}] (batch, time, nodes, channels), "
                         f"got {tuple(x.shape)}")
    return tuple(x.shape)
