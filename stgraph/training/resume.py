"""What may continue or replace a run directory: the config a resumed run takes, a new run refused over a
different one, a checkpoint checked against ``config.yaml``, the fingerprints compared.

* :func:`check_run_dir`: a new run in a folder that holds a run needs ``overwrite=True`` (the message says
  whether the old run has the same config, or which fields differ);
* :func:`resume_config`: the saved config with the settings a resume may change (:data:`MAY_CHANGE_ON_RESUME`,
  :data:`RUNTIME_SETTINGS`, :data:`PATH_SETTINGS`) taken from the caller's;
* :func:`check_config_matches`: ``config.yaml`` and the checkpoint's config agree (a resume checks it too: a
  hand-edited ``config.yaml`` is refused, naming the fields);
* :func:`settings_diff`: what a finished run was made with that differs from a config asked for now (a bench
  reuses a run only when there is nothing);
* :func:`fingerprint_diff`: which of data and graph differ from what a run started with, in words.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..config import RunConfig, config_from_dict, load_run_config, with_fields
from ..errors import ConfigError, RunDirError
from .layout import RunFiles

log = logging.getLogger(__name__)

#: settings a resumed run may change: they decide when it stops, not what it computes
MAY_CHANGE_ON_RESUME = ("train.epochs", "train.patience", "train.budget_minutes", "train.budget_stop")
#: how to run, not what: a resumed run takes these from the caller without a word
RUNTIME_SETTINGS = ("train.progress", "train.device", "train.threads", "train.workers", "data.lazy", "data.cache_mb")
#: file locations: a resumed run accepts a new location when the content is the same (fingerprints)
PATH_SETTINGS = ("data.path", "data.graph", "data.root")
#: model.params the data chose when the run started (:func:`stgraph.training.checks.choose_defaults`), if the
#: user gave none
CHOSEN_PARAMS = ("residual",)
#: config fields a checkpoint may hold a different value of than config.yaml (a resume changed them, or they
#: only say how to run)
MAY_DIFFER = MAY_CHANGE_ON_RESUME + RUNTIME_SETTINGS


def config_diff(old: dict, new: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(dotted key, old value, new value)`` of every field that differs."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{k}.")
        elif a != b and not (a != a and b != b):  # NaN (data.null_value) equals NaN here
            out.append((f"{prefix}{k}", a, b))
    return out


def absolute_paths(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its file locations as absolute paths, so the run works from any working directory."""
    fields = {f"data.{name}": os.path.abspath(os.path.expanduser(str(getattr(cfg.data, name))))
              for name in ("path", "graph", "root", "locations", "text_encoder") if getattr(cfg.data, name, None)}
    fields["data.covariates"] = [c if c.startswith("graph:") else os.path.abspath(os.path.expanduser(c))
                                 for c in cfg.data.covariates]
    return with_fields(cfg, fields)


def _with_chosen(saved: dict, new: dict) -> dict:
    """``new`` with the run's data-chosen model.params where ``new`` leaves them unset."""
    params = dict(new["model"]["params"])
    for k in CHOSEN_PARAMS:
        if k in saved["model"]["params"] and k not in params:
            params[k] = saved["model"]["params"][k]
    return {**new, "model": {**new["model"], "params": params}}


def check_run_dir(out: Path, cfg: RunConfig, overwrite: bool) -> None:
    """Refuse to start a new run over the run in ``out`` unless ``overwrite``."""
    files = RunFiles(out)
    saved = files.config
    if saved.exists() and not overwrite and not files.made_by_stgraph():
        raise RunDirError(f"'{out}' holds a {saved.name} that stgraph did not write (it is not a run stgraph made); "
                          f"a new run there would replace it. Choose another out, or move the folder's files away")
    if saved.exists() and not overwrite:
        try:
            old = load_run_config(saved).to_dict()
        except RunDirError:
            old = None
        if old is None:
            what = "a damaged run (its config.yaml cannot be read)"
        else:
            diff = config_diff(old, _with_chosen(old, absolute_paths(config_from_dict(cfg.to_dict())).to_dict()))
            what = ("a run with the same config" if not diff else
                    "a different run (" + "; ".join(f"{k}: {a!r} there, {b!r} here" for k, a, b in diff[:3])
                    + ("; ..." if len(diff) > 3 else "") + ")")
        raise RunDirError(f"run directory '{out}' already holds {what}; pass resume=True to continue it, "
                          f"overwrite=True to replace it, or choose another out")


def _given(diff_key: str, given) -> bool:
    return given is None or any(diff_key == g or diff_key.startswith(g + ".") or g.startswith(diff_key + ".")
                                for g in given)


def resume_config(out: Path, cfg: RunConfig, given) -> RunConfig:
    """The run's saved config, with the settings a resume may change taken from ``cfg``.

    ``given``: dotted keys the user set (``None``: every field of ``cfg`` counts). A given setting
    that differs from the run and may not change is an error listing each difference."""
    files = RunFiles(out)
    if not files.last.is_file():
        raise RunDirError(f"cannot resume: '{files.last}' does not exist; start without resume=True")
    saved = load_run_config(files.config)
    _check_not_edited(saved, files)
    new = absolute_paths(config_from_dict(cfg.to_dict()))
    diffs = [d for d in config_diff(saved.to_dict(), _with_chosen(saved.to_dict(), new.to_dict()))
             if _given(d[0], given)]
    refused = [d for d in diffs if d[0] not in MAY_CHANGE_ON_RESUME + RUNTIME_SETTINGS + PATH_SETTINGS]
    if refused:
        what = "; ".join(f"{k}: {a!r} in the run, {b!r} given" for k, a, b in refused[:6])
        raise RunDirError(
            f"cannot resume '{out}' with other settings ({what}{'; ...' if len(refused) > 6 else ''}); only "
            f"{' and '.join(MAY_CHANGE_ON_RESUME)} may change on resume. Drop those settings to continue the run "
            f"as it was, or start a new run (another out, or overwrite=True)")
    saved = with_fields(saved, {key: value for key, _, value in diffs})
    for key, old, value in diffs:
        if key in MAY_CHANGE_ON_RESUME:
            log.info(f"resume: {key} = {value!r} (the run had {old!r})")
        elif key in PATH_SETTINGS:
            log.info(f"resume: {key} = '{value}' (the run had '{old}'); accepted only if its content is the same")
    return saved.validate()


def _check_not_edited(saved: RunConfig, files: RunFiles) -> None:
    """A resume continues what ``last.pt`` was trained with: a ``config.yaml`` that says otherwise (edited by
    hand) is refused, naming the fields."""
    from .checkpoint import load_checkpoint

    try:
        check_config_matches(saved, load_checkpoint(files.last, map_location="cpu"), files.config, files.last)
    except RunDirError as e:
        raise RunDirError(f"cannot resume '{files.root}': {e}. A resume continues the checkpoint's config; change "
                          f"settings a resume may change with their arguments, or start a new run (another out, or "
                          f"overwrite=True)") from None


def settings_diff(run_dir: str | Path, cfg: RunConfig) -> list[tuple[str, object, object]]:
    """``(field, in the run, asked for)`` of every setting of ``cfg`` the run in ``run_dir`` was not made with
    (its ``config.yaml``; how to run and file locations aside: :data:`RUNTIME_SETTINGS`, :data:`PATH_SETTINGS`;
    the data's choices of :data:`CHOSEN_PARAMS` taken where ``cfg`` leaves them open). A config.yaml that
    cannot be read differs in every field (``[("config.yaml", error, None)]``)."""
    files = RunFiles(run_dir)
    try:
        saved = load_run_config(files.config).to_dict()
    except (RunDirError, ConfigError, OSError) as e:
        return [(files.config.name, str(e), None)]
    asked = _with_chosen(saved, absolute_paths(config_from_dict(cfg.to_dict())).to_dict())
    return [d for d in config_diff(saved, asked) if d[0] not in RUNTIME_SETTINGS + PATH_SETTINGS]


def fingerprint_diff(old: dict, new: dict, cfg: RunConfig) -> str:
    """Which of the data and the graph have another fingerprint in ``new`` than in ``old``, in words."""
    parts = []
    if old.get("data") != new.get("data"):
        parts.append(f"the data ({cfg.data.path or cfg.data.dataset}: fingerprint {new.get('data')}, the run's "
                     f"{old.get('data')})")
    if old.get("graph") != new.get("graph"):
        parts.append(f"the graph ({cfg.data.graph or cfg.data.dataset or 'none'}: fingerprint {new.get('graph')}, "
                     f"the run's {old.get('graph')})")
    return " and ".join(parts)


def check_config_matches(cfg: RunConfig, ckpt: dict, cfg_path: Path, ckpt_path: Path) -> None:
    """config.yaml must agree with the config the checkpoint was trained with."""
    stored = ckpt.get("config")
    if not isinstance(stored, dict):
        return
    try:
        stored_cfg = config_from_dict(stored).to_dict()
    except ConfigError as e:
        raise RunDirError(f"checkpoint '{ckpt_path}' holds an unreadable config ({e}); it is damaged") from None
    diff = [d for d in config_diff(stored_cfg, cfg.to_dict()) if d[0] not in MAY_DIFFER]
    if diff:
        what = "; ".join(f"{k}: {b!r} in config.yaml, {a!r} in the checkpoint" for k, a, b in diff[:4])
        raise RunDirError(f"run file '{cfg_path}' disagrees with the checkpoint '{ckpt_path}' ({what}"
                          f"{'; ...' if len(diff) > 4 else ''}); the run directory was edited or mixed up. "
                          f"Restore config.yaml or train again")


__all__ = ["MAY_CHANGE_ON_RESUME", "RUNTIME_SETTINGS", "PATH_SETTINGS", "CHOSEN_PARAMS", "config_diff",
           "absolute_paths", "check_run_dir", "resume_config", "fingerprint_diff", "check_config_matches",
           "settings_diff"]
