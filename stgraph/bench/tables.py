"""The bench's tables: results aggregated over seeds (:func:`aggregate`), as CSV (:func:`write_csv`,
:func:`write_per_step`) and Markdown (:func:`markdown`), with the published figures beside them."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import re

from ..errors import ConfigError
from ..files import atomic_open
from ..io.series import horizon_text
from .spec import METRICS, PUBLISHED


def _mean_std(vals: list[float]) -> tuple[float, float]:
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return mean, std


def result_steps(rows: list[dict]) -> list[int]:
    """Every horizon step the results of ``rows`` hold (the bench evaluates each step ``1..horizon``)."""
    return sorted({int(k) for r in rows if "error" not in r for k in r["result"]["horizons"]})


def table_steps(have: list[int], step_minutes: float | None = None, steps=None) -> list[int]:
    """The horizon steps of the tables' columns and the plot's ticks, among the steps ``have`` results:
    ``steps`` (``stgraph bench --steps``) or :func:`stgraph.metrics.default_steps` of the horizon (every step up
    to 4; beyond, the first / middle / last and 3, 6, 12 where they exist; the papers' 3, 6, 12 for 12-step
    5-minute data), so no column is all '-'.

    Raises:
        ConfigError: a step of ``steps`` that the results do not hold.
    """
    from ..metrics import default_steps

    if steps:
        missing = sorted({int(s) for s in steps} - set(have))
        if missing:
            raise ConfigError(f"--steps {','.join(map(str, steps))}: steps {missing} are not in the results, which "
                              f"hold steps {have[0] if have else '-'}..{have[-1] if have else '-'}; expected steps "
                              f"of the horizon")
        return sorted({int(s) for s in steps})
    return [s for s in default_steps(have[-1], step_minutes) if s in have] if have else []


def _agg_steps(agg: list[dict]) -> list[int]:
    """The steps aggregated rows hold (keys ``h<step>_mae``)."""
    return sorted({int(m.group(1)) for a in agg for k in a for m in [re.fullmatch(r"h(\d+)_mae", k)] if m})


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds per model, in the order the models were given."""
    out = []
    for m in dict.fromkeys(r["model"] for r in rows):
        ok = [r for r in rows if r["model"] == m and "error" not in r]
        failed = [r for r in rows if r["model"] == m and "error" in r]
        agg: dict = {"model": m, "seeds": len(ok), "failed": len(failed)}
        if not ok:
            agg["error"] = failed[0]["error"]
            out.append(agg)
            continue
        agg["parameters"] = ok[0]["parameters"]
        notes = [r["result"]["mape_note"] for r in ok if r["result"].get("mape_note")]
        if notes:  # MAPE means nothing on these true values (zeros, negatives): say so, do not print it
            agg["mape_note"] = notes[0]
        for key in [str(h) for h in result_steps(ok)] + ["average"]:
            for met in METRICS:
                vals = [(r["result"]["average"] if key == "average" else r["result"]["horizons"].get(key, {})).get(met)
                        for r in ok]
                if any(v is None for v in vals):
                    continue
                agg[f"{'avg' if key == 'average' else 'h' + key}_{met}"], \
                    agg[f"{'avg' if key == 'average' else 'h' + key}_{met}_std"] = _mean_std(vals)
        transition = [r["result"]["transition_mae"] for r in ok if r["result"].get("transition_mae") is not None]
        if len(transition) == len(ok):  # regimes apply (speeds) in every seed's run
            agg["transition_mae"], agg["transition_mae_std"] = _mean_std(transition)
        for k in ("epochs", "train_seconds", "cpu_seconds", "peak_rss_mb", "peak_cuda_mb"):
            vals = [r[k] for r in ok if r.get(k) is not None]
            if vals:
                agg[k] = _mean_std(vals)[0]
        for k in ("budget", "closed_form"):  # the same in every row of a budget's model
            if k in ok[0]:
                agg[k] = ok[0][k]
        out.append(agg)
    return out


def load_published(path: Path = PUBLISHED) -> dict:
    from ..config import load_yaml

    if not Path(path).is_file():
        raise ConfigError(f"published results file '{path}' not found; it ships in the repository's benchmarks/")
    data = load_yaml(Path(path), what="published results file") or {}
    if not isinstance(data.get("models"), dict):
        raise ConfigError(f"'{path}': expected a top-level 'models:' mapping of model name -> dataset -> metrics")
    return data["models"]


RESULTS_COLUMNS = (("model", "seeds", "failed", "parameters", "epochs"),
                   ("train_seconds", "peak_rss_mb", "peak_cuda_mb", "error"))
BUDGET_COLUMNS = (("model", "budget_minutes", "seeds", "failed", "cpu_seconds", "epochs"),
                  ("closed_form", "parameters", "error"))


def write_csv(agg: list[dict], path: Path, columns=RESULTS_COLUMNS, steps: list[int] | None = None,
              step_minutes: float | None = None) -> None:
    """The aggregated rows as CSV: ``columns`` = (the columns before the metrics, those after them); metrics at
    ``steps`` (default :func:`table_steps` of the steps the rows hold)."""
    first, after = columns
    cols = list(first)
    steps = steps or table_steps(_agg_steps(agg), step_minutes)
    for key in [f"h{h}" for h in steps] + ["avg"]:
        for met in METRICS:
            cols += [f"{key}_{met}", f"{key}_{met}_std"]
    if any("transition_mae" in a for a in agg):  # regimes apply (speeds); left out for counts
        cols += ["transition_mae", "transition_mae_std"]
    cols += list(after)
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for a in agg:
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in a.items()})


def _cell(a: dict, key: str) -> str:
    if key not in a:
        return "-"
    std = a.get(key + "_std", 0.0)
    return f"{a[key]:.2f} ± {std:.2f}" if a.get("seeds", 1) > 1 else f"{a[key]:.2f}"


def _peak_mb(a: dict) -> str:
    mem = a.get("peak_cuda_mb") or a.get("peak_rss_mb")
    return f"{mem:.0f}" if mem else "-"


def _number(key: str, digits: int = 0):
    return lambda a: "-" if a.get(key) is None else f"{a[key]:.{digits}f}"


#: the columns after the metrics: (header, cell of an aggregated row)
RESULTS_TAIL = (("seeds", _number("seeds")), ("train s", lambda a: f"{a.get('train_seconds', 0):.0f}"),
                ("peak MB", _peak_mb))
BUDGET_TAIL = (("seeds", _number("seeds")), ("CPU s", _number("cpu_seconds", 1)),
               ("epochs", lambda a: "-" if a.get("closed_form") or a.get("epochs") is None else f"{a['epochs']:.3g}"))


def markdown(agg: list[dict], published: dict | None = None, published_key: str | None = None,
             step_minutes: float | None = None, tail=RESULTS_TAIL, steps: list[int] | None = None) -> str:
    """The results table in Markdown; published rows in italics under each model when given. ``tail``: the
    columns after the metrics, ``(header, cell function of an aggregated row)`` each; metric columns at
    ``steps`` (default :func:`table_steps` of the steps the rows hold).

    When MAPE means nothing for the data (a row carries ``mape_note``: counts with zeros, centred
    series; :func:`stgraph.metrics.mape_note`) its columns are left out and the note follows the table."""
    def label(h):
        return horizon_text(h, step_minutes)
    note = next((a["mape_note"] for a in agg if a.get("mape_note")), None)
    metrics = tuple(m for m in METRICS if not (note and m == "mape"))
    names = {"mae": "MAE", "rmse": "RMSE", "mape": "MAPE %"}
    steps = steps or table_steps(_agg_steps(agg), step_minutes)
    head = ["model", "params"]
    for h in steps:
        head += [f"{names[m]} {label(h)}" for m in metrics]
    head += [f"{names[m]} avg" for m in metrics]
    transition = any("transition_mae" in a for a in agg)  # regimes apply (speeds); left out for counts
    head += (["MAE transition"] if transition else []) + [h for h, _ in tail]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in agg:
        if "error" in a:
            lines.append(f"| {a['model']} | failed: {a['error'][:80]} |" + " |" * (len(head) - 2))
            continue
        cells = [a["model"], f"{a['parameters']:,}"]
        for key in [f"h{h}" for h in steps] + ["avg"]:
            cells += [_cell(a, f"{key}_{met}") for met in metrics]
        cells += [_cell(a, "transition_mae")] if transition else []
        cells += [cell(a) for _, cell in tail]
        lines.append("| " + " | ".join(cells) + " |")
        pub = (published or {}).get(a["model"], {}).get(published_key or "", None)
        if pub:
            pc = [f"*{a['model']} published*", f"*{(published[a['model']].get('params') or {}).get(published_key, '-')}*"]
            for h in steps:
                vals = (pub.get("horizons") or {}).get(h) or (pub.get("horizons") or {}).get(str(h)) or {}
                pc += [f"*{vals[m]:.2f}*" if m in vals else "-" for m in metrics]
            av = pub.get("average") or {}
            pc += [f"*{av[m]:.2f}*" if m in av else "-" for m in metrics]
            pc += [""] * (len(tail) + transition)
            lines.append("| " + " | ".join(pc) + " |")
            if pub.get("source"):
                lines.append("| " + f"*source: {pub['source']}*" + " |" * (len(head) - 1))
    if transition:
        lines += ["", "MAE transition: test MAE over the readings of windows where the truth crosses the congestion "
                      "threshold (0.6 of the sensor's free-flow speed; `stgraph evaluate --by regime`), pooled over "
                      "every horizon step: who handles congestion edges."]
    if note:
        lines += ["", f"{note}."]
    return "\n".join(lines)


def write_per_step(rows: list[dict], path: Path) -> None:
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "seed", "step", "mae", "rmse", "mape"])
        for r in rows:
            if "error" in r:
                continue
            for k, v in sorted(r["result"]["horizons"].items(), key=lambda kv: int(kv[0])):
                w.writerow([r["model"], r["seed"], int(k)] + [round(v[m], 5) for m in METRICS])


def step_minutes(rows: list[dict]) -> float | None:
    """The data's step in minutes, from the first result row that knows it."""
    return next((r["step_minutes"] for r in rows if r.get("step_minutes")), None)


def md_head(title: str, command: str | None) -> list[str]:
    """The first lines of a Markdown report: its title and the command that made it."""
    text = [title, ""]
    if command:
        text += ["Command:", "", "```", command, "```", ""]
    return text
