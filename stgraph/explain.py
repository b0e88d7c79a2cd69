"""Why a forecast came out as it did: two views of one sensor's forecast at one horizon step.

* **Integrated gradients**, for every model: the forecast's change from a baseline window to the real one,
  shared out over every input reading (input step x sensor): ``attr = (x - x0) * mean over alpha of
  d f(x0 + alpha (x - x0)) / dx``, alpha at the midpoints of ``alphas`` equal steps, all alphas of a chunk in one
  batched forward and backward. The baseline ``x0`` is every input at its training mean (zero after scaling,
  what the model also sees for a missing reading). Completeness: the attributions sum to ``f(x) - f(x0)`` up to
  the quadrature error, which the result reports (``completeness``).
* **Attention** (models that return it, e.g. stgt): the spatial attention of the last encoder block into the
  sensor (which sensors it weighed, averaged over heads and input patches) and the decoder's attention of that
  horizon step over the input steps. Attention alone is not a faithful explanation; read it beside the
  gradients.

``f`` is the forecast in data units: the point forecast (a distribution's median, its mean for the Normal), or a
mixture's mean where its median (found by bisection) has no gradient.
"""
from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path

import numpy as np
import torch
from torch.distributions import Distribution

from .data.batches import each_tensor
from .data.reports import join_text
from .distributions import point
from .errors import RequestError, StgraphError
from .io.series import iso

log = logging.getLogger(__name__)

BASELINE = "every input reading at its training mean (what the model sees for a missing reading)"
#: alphas per batched forward and backward
CHUNK = 32


def explain(run, series, *, sensor: str, step: int, at: str | None = None, alphas: int = 32,
            channel: int = 0) -> dict:
    """Explain ``run``'s forecast for ``sensor`` ``step`` steps after ``at``.

    Args:
        run: a :class:`~stgraph.training.run.Run`.
        series: the :class:`~stgraph.io.series.Series` ``[T, N, C]`` to forecast from (the run's sensors).
        sensor: sensor id; ``step``: horizon step, 1 .. horizon; ``at``: last input step (default the last).
        alphas: integrated-gradient steps (2 .. 1024).
        channel: target channel (position among the run's target channels).

    Returns:
        ``{"sensor", "step", "issued_at", "target_time", "forecast", "baseline_forecast", "attribution"
        [T_in][N] (summed over input channels), "attribution_steps" [T_in], "sensors" [N], "completeness":
        {"sum", "difference", "gap"}, "top": [{"sensor", "time", "attribution"}], "spatial": [{"sensor",
        "weight"}] or None, "temporal": [{"from", "to", "weight"}] or None, "baseline", "target"}``.

    Raises:
        RequestError: unknown ``sensor`` (field ``sensor``), ``step`` out of range (``step``), ``at`` not a step
            of the series or without a full window before it (``at``).
    """
    ids = [str(s) for s in series.sensor_ids]
    if str(sensor) not in ids:
        raise RequestError("sensor", f"unknown sensor {sensor!r}; the run's sensors are e.g. {ids[:8]}")
    horizon = run.data.horizon
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= horizon:
        raise RequestError("step", f"{step!r}; expected a horizon step from 1 to {horizon}")
    if not 2 <= alphas <= 1024:
        raise RequestError("alphas", f"{alphas}; expected 2 .. 1024")
    try:
        x, cov, future = run.data.window_at(series, at)
    except StgraphError as e:
        raise RequestError("at", str(e)) from None
    n = ids.index(str(sensor))
    target = (step - 1, n, channel)
    attr, fx, f0, kind = integrated_gradients(run, x, cov, target, alphas)
    end = int(np.searchsorted(series.timestamps, series.timestamps[-1] if at is None else np.datetime64(at, "ns"),
                              side="right")) - 1
    past = series.timestamps[end - run.data.input_len + 1:end + 1]
    per_reading = attr.sum(-1)  # [T_in, N]
    total = float(per_reading.sum())
    order = np.argsort(-np.abs(per_reading), axis=None)[:20]
    top = [{"sensor": ids[j], "time": iso(past[i]), "attribution": float(per_reading[i, j])}
           for i, j in zip(*np.unravel_index(order, per_reading.shape))]
    out = {"sensor": str(sensor), "step": step, "issued_at": iso(past[-1]), "target_time": iso(future[step - 1]),
           "forecast": fx, "baseline_forecast": f0, "target": kind, "baseline": BASELINE,
           "attribution": per_reading.tolist(), "attribution_steps": [iso(t) for t in past], "sensors": ids,
           "completeness": {"sum": total, "difference": fx - f0, "gap": total - (fx - f0), "alphas": alphas},
           "top": top}
    out.update(attention_into(run, x, cov, n, step, past))
    return out


def _graph_and_covariates(run, cov: dict, batch: int) -> tuple:
    """``(graph, covariates)`` of ``batch`` copies of one window: a dynamic graph's period (``graph_period [1]``)
    becomes that many per-window graphs (:meth:`stgraph.training.forecaster.Forecaster.graph_for`), else the run's
    graph; ``cov`` itself is left as it is."""
    cov = dict(cov)
    if "graph_period" in cov:
        cov["graph_period"] = cov["graph_period"].expand(batch)
    return run.forecaster.graph_for(cov), cov


def _on(cov: dict, device) -> dict:
    """The window's covariates on ``device`` (tensors, and the text reports' dict of tensors)."""
    return {k: each_tensor(v, lambda t: t.to(device)) for k, v in cov.items()}


def _repeat(cov: dict, m: int) -> dict:
    """One window's covariates (batch 1) as ``m`` copies of it (batch ``m``): tensors expanded along the batch,
    the text reports joined ``m`` times (:func:`stgraph.data.reports.join_text`)."""
    out = {}
    for k, v in cov.items():
        if isinstance(v, dict):
            out[k] = functools.reduce(join_text, [v] * m)
        else:
            out[k] = v.expand(m, *v.shape[1:])
    return out


def _forecast(run, x: torch.Tensor, cov: dict) -> tuple[torch.Tensor, str]:
    """``[B, T_out, N, C_out]`` forecast in data units (differentiable) and what it is (median / mean)."""
    out = run.forecaster.in_units(run.model(x, *_graph_and_covariates(run, cov, x.shape[0])))
    if not isinstance(out, Distribution):
        return out, "point forecast"
    med = point(out)
    if med.requires_grad or not x.requires_grad:
        return med, "median"
    return out.mean, "mean (the median has no gradient)"


def integrated_gradients(run, x: torch.Tensor, cov: dict, target: tuple[int, int, int], alphas: int = 32):
    """Integrated gradients of the forecast at ``target = (step index, sensor index, channel)`` over the input.

    Args:
        x: ``[1, T_in, N, C_in]`` scaled input window; ``cov``: its covariates (batch 1).

    Returns:
        ``(attr [T_in, N, C_in] numpy, f(x), f(x0), kind)``: attributions in data units of the forecast, the
        forecast at the input and at the baseline (all inputs 0 after scaling).
    """
    model = run.model
    model.eval()
    _drop_inference_caches(model)
    device = run.forecaster.device
    x = x.to(device).float()
    cov = _on(cov, device)
    t, n, c = target
    base = torch.zeros_like(x)
    grad_sum = torch.zeros_like(x[0])
    mids = (torch.arange(alphas, dtype=torch.float32, device=device) + 0.5) / alphas
    kind = "point forecast"
    with torch.enable_grad():
        for chunk in mids.split(CHUNK):
            m = len(chunk)
            xs = (base + chunk[:, None, None, None] * (x - base)).detach().requires_grad_(True)
            f, kind = _forecast(run, xs, _repeat(cov, m))
            (g,) = torch.autograd.grad(f[:, t, n, c].sum(), xs, allow_unused=True)
            if g is not None:
                grad_sum += g.sum(0)
    attr = ((x - base)[0] * grad_sum / alphas).detach().cpu().numpy()
    with torch.inference_mode():
        both, _ = _forecast(run, torch.cat([x, base]), _repeat(cov, 2))
        fx, f0 = (float(v) for v in both[:, t, n, c].float().cpu())
    return attr, fx, f0, kind


def _drop_inference_caches(model) -> None:
    """Forget the graphs layers cached during an earlier forecast (``cached_graph`` of the spatial attention,
    :meth:`stgraph.nn.spatial.GraphAttention.prepare`): tensors made under ``torch.inference_mode`` cannot enter
    a backward pass; the layers rebuild them on the next forward."""
    for m in model.modules():
        if getattr(m, "cached_graph", None) is not None:
            m.cached_graph = None


@torch.inference_mode()
def attention_maps(run, x: torch.Tensor, cov: dict) -> dict | None:
    """The attention weights of one forward on ``x [1, T_in, N, C_in]`` (the model's ``return_attention``
    dict), or ``None`` for a model without attention."""
    model = run.model
    if "return_attention" not in inspect.signature(model.forward).parameters:
        return None
    model.eval()
    device = run.forecaster.device
    graph, cov = _graph_and_covariates(run, _on(cov, device), 1)
    _, att = model(x.to(device), graph, cov, return_attention=True)
    return att


def spatial_into(run, att: dict, n: int) -> list[dict] | None:
    """``[{"sensor", "weight"}]``, largest first: the spatial attention of the last encoder block into sensor
    ``n`` (mean over heads and input patches; its in-edges and its self loop sum to 1)."""
    if att is None or att.get("spatial") is None:
        return None
    ids = [str(s) for s in run.series.sensor_ids]
    w = att["spatial"].float()
    w = (w.mean(-1) if w.dim() > 1 else w).cpu().numpy()
    ei = att.get("spatial_edge_index", run.graph.edge_index).cpu().numpy()
    into = np.flatnonzero(ei[1] == n)
    return [{"sensor": ids[ei[0][e]], "weight": float(w[e])} for e in sorted(into, key=lambda e: -w[e])]


def attention_into(run, x: torch.Tensor, cov: dict, n: int, step: int, past: np.ndarray) -> dict:
    """``{"spatial": [{"sensor", "weight"}] (largest first), "temporal": [{"from", "to", "weight"}]}`` for sensor
    ``n`` and horizon ``step`` (1-based): :func:`spatial_into`, and the decoder's attention of that step over the
    input steps (patches); both ``None`` for a model without attention."""
    att = attention_maps(run, x, cov)
    temporal = None
    key = "cross" if att is not None and att.get("cross") is not None else "temporal"
    if att is not None and att.get(key) is not None:
        a = att[key][0, n].float().mean(0)  # [P_q, P]
        pl = max(1, int(getattr(run.model, "patch_len", 1) or 1))
        row = a[min((step - 1) // pl, a.shape[0] - 1)] if key == "cross" else a[-1]
        T = len(past)
        temporal = [{"from": iso(past[min(p * pl, T - 1)]), "to": iso(past[min((p + 1) * pl, T) - 1]),
                     "weight": float(v)} for p, v in enumerate(row.cpu().numpy())]
    return {"spatial": spatial_into(run, att, n), "temporal": temporal}


def explain_text(result: dict, top: int = 10) -> str:
    """The explanation in words and tables (``stgraph explain``)."""
    c = result["completeness"]
    lines = [f"sensor {result['sensor']}, {result['target_time']} (step {result['step']} after "
             f"{result['issued_at']}): forecast {result['forecast']:.4f} ({result['target']})",
             f"baseline ({result['baseline']}): {result['baseline_forecast']:.4f}",
             f"integrated gradients ({c['alphas']} steps): attributions sum to {c['sum']:.4f}, forecast - baseline "
             f"= {c['difference']:.4f} (gap {c['gap']:+.4f})", "", f"{'sensor':>12} {'input step':>20} "
             f"{'attribution':>12}"]
    for r in result["top"][:top]:
        lines.append(f"{r['sensor']:>12} {r['time']:>20} {r['attribution']:>12.4f}")
    if result.get("spatial"):
        lines += ["", "spatial attention into the sensor (last encoder block, mean over heads):"]
        lines += [f"{r['sensor']:>12} {r['weight']:>8.4f}" for r in result["spatial"][:top]]
    if result.get("temporal"):
        lines += ["", "attention of this horizon step over the input steps:"]
        lines += [f"{r['from']:>20} .. {r['to'][11:]:>8} {r['weight']:>8.4f}" for r in result["temporal"]]
    return "\n".join(lines)


def plot_explanation(result: dict, out) -> Path:
    """A PNG: the attributions of the most attributed sensors over the input steps (heat map), and the spatial
    attention into the sensor (bars) when the model has it."""
    from .plot import _picture_path, pyplot, save_figure

    out = _picture_path(out)
    plt = pyplot()
    attr = np.asarray(result["attribution"])  # [T_in, N]
    keep = np.argsort(-np.abs(attr).sum(0))[:15]
    panels = 2 if result.get("spatial") else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels + 2, 4.5), squeeze=False)
    ax = axes[0, 0]
    lim = float(np.abs(attr[:, keep]).max()) or 1.0
    im = ax.imshow(attr[:, keep].T, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_yticks(range(len(keep)), [result["sensors"][k] for k in keep], fontsize=7)
    steps = result["attribution_steps"]
    ax.set_xticks(range(len(steps)), [s[11:16] for s in steps], rotation=90, fontsize=7)
    ax.set_title(f"integrated gradients: sensor {result['sensor']}, step {result['step']}", fontsize=10)
    fig.colorbar(im, ax=ax, label="attribution (data units)")
    if panels == 2:
        sp = result["spatial"][:15]
        axes[0, 1].barh([r["sensor"] for r in sp][::-1], [r["weight"] for r in sp][::-1], color="tab:orange")
        axes[0, 1].set_title("spatial attention into the sensor", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out)
