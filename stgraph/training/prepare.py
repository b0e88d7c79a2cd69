"""What a run is made of, derived from its :class:`~stgraph.config.RunConfig`: the series, the road
graph, the windowed data (:class:`Prepared`) and the model built for their sizes."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..config import RunConfig
from ..distributions import MIXTURES
from ..errors import ConfigError
from ..files import fingerprint
from ..models.registry import ClosedFormData, build_model

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Everything a model needs, derived from a :class:`RunConfig`."""

    series: object          # stgraph.io.Series
    nx_graph: object        # networkx.DiGraph or None
    graph: object           # torch_geometric.data.Data
    data: object            # stgraph.data.ForecastData


def graph_fingerprint(graph) -> str:
    """16 hex digits identifying a PyG graph (edges, weights, node count); for a graph that changes over time
    (``graph.dynamic``, :func:`dynamic_graph_data`) its periods: their start times, edges and weights, not the
    mean graph (which two files can share, and which moves with the steps it is taken over)."""
    dyn = getattr(graph, "dynamic", None)
    if dyn is not None:
        return dyn.key
    return fingerprint(graph.edge_index.cpu().numpy(), graph.edge_weight.cpu().numpy().astype(np.float32),
                       str(int(graph.num_nodes)))


def empty_graph(num_nodes: int):
    """A graph without edges, for series that come with no road graph."""
    from torch_geometric.data import Data
    return Data(edge_index=torch.zeros(2, 0, dtype=torch.long), edge_weight=torch.zeros(0), num_nodes=num_nodes)


def dynamic_graph_data(d, series):
    """A graph file that changes over time (``data.graph`` with a time column), read and aligned to ``series``
    (:mod:`stgraph.graph.dynamic`), as PyG ``Data`` of its mean graph over the steps (what code that takes one
    graph sees: the fingerprint, the memory estimate) with the aligned ``DynamicGraph`` as ``.dynamic``
    (:func:`prepare` gives it to the data, whose batches then carry each window's graph)."""
    from torch_geometric.data import Data

    from ..graph.dynamic import read_dynamic_graph

    table = {k: getattr(d, f"graph_{k}", None) for k in ("weights", "weight_column", "aggregate")}
    dyn = read_dynamic_graph(d.graph, series.sensor_ids, **table).aligned(series.timestamps)
    info = dyn.info()
    log.info("dynamic graph %s: %d periods (%s .. %s), %s edges per period (mean), churn %.3f; each window takes the "
             "graph of its last input step", d.graph, info["periods"], info["first_period"], info["last_period"],
             info["edges_per_period"]["mean"], info["churn"])
    ei, w = dyn.mean_graph()
    return Data(edge_index=ei, edge_weight=w, num_nodes=series.num_nodes, dynamic=dyn)


def load_series_and_graph(cfg: RunConfig, data_path: str | None = None, fits=None):
    """Read the series and the road graph named by ``cfg.data`` (``data_path`` overrides the series file);
    ``fits(series)`` (e.g. :func:`stgraph.data.fit.check_fits` against a run) checks the series before the
    graph is read."""
    from ..graph import read_graph, to_pyg
    from ..graph.dynamic import is_dynamic_table
    from ..io import read_series

    d = cfg.data
    nx_graph = None
    if d.dataset and data_path is None:
        from ..datasets import load
        ds = load(d.dataset, root=d.root)
        series, nx_graph = ds.series, ds.graph
    else:
        path = data_path or d.path
        if not path:
            raise ConfigError("data.path is not set: set it to the series file (or data.dataset to a dataset's name)")
        series = read_series(path, null_value=d.null_value, start=d.start, freq=d.freq,
                             **(dict(lazy=True, cache_bytes=d.cache_mb << 20) if d.lazy else {}))
    if fits is not None:
        fits(series)
    if not (d.dataset and data_path is None) and d.graph and is_dynamic_table(d.graph):
        return series, None, dynamic_graph_data(d, series)
    if not (d.dataset and data_path is None) and d.graph:
        nx_graph = read_graph(d.graph, sensor_ids=series.sensor_ids, weight_column=d.graph_weight_column,
                              weights=d.graph_weights, aggregate=d.graph_aggregate)
    graph = to_pyg(nx_graph, series.sensor_ids) if nx_graph is not None else empty_graph(series.num_nodes)
    return series, nx_graph, graph


def prepare(cfg: RunConfig, data_path: str | None = None, covariate_stats: dict | None = None,
            fits=None) -> Prepared:
    """Read files and cut windows as ``cfg.data`` says; covariate files (``data.covariates``) are
    aligned and attached (scaled with ``covariate_stats`` when given, e.g. a checkpoint's). ``fits(series)``
    checks the series first (:func:`load_series_and_graph`)."""
    from ..data import ForecastData

    series, nx_graph, graph = load_series_and_graph(cfg, data_path, fits)
    d = cfg.data
    covariates = None
    if d.covariates:
        from ..data.reports import read_sources
        covariates = read_sources(d.covariates, series, nx_graph, graph, d)
    data = ForecastData.from_series(series, input_len=d.input_len, horizon=d.horizon, stride=d.stride,
                                    split=tuple(d.split), split_gap=d.split_gap, target=d.target,
                                    covariates=covariates,
                                    covariate_stats=covariate_stats, dynamic_graph=getattr(graph, "dynamic", None))
    return Prepared(series, nx_graph, graph, data)


#: mixture components of ``model.distribution = mixture`` when ``model.params.components`` is not given
DEFAULT_COMPONENTS = 2


def model_sizes(data, probabilistic: bool) -> dict:
    """The size arguments the registry passes a model constructor (:data:`~stgraph.models.registry.SIZE_ARGS`)."""
    sizes = dict(num_nodes=data.num_nodes, in_channels=data.in_channels, out_channels=data.out_channels,
                 input_len=data.input_len, horizon=data.horizon, steps_per_day=data.steps_per_day,
                 target_channels=target_positions(data), probabilistic=probabilistic)
    if getattr(data, "exogenous", None) is not None:
        sizes["exogenous"] = data.exogenous.layout
    return sizes


def target_positions(data) -> tuple | None:
    """Where each target channel sits among the model's input channels (``None`` if one is not an input)."""
    if not all(c in data.input_channels for c in data.target_channels):
        return None
    return tuple(data.input_channels.index(c) for c in data.target_channels)


def make_model(cfg: RunConfig, data) -> torch.nn.Module:
    """The model ``cfg.model`` names, built for the sizes of ``data`` (a :class:`~stgraph.data.ForecastData`)."""
    params = cfg.model.params
    if cfg.model.distribution in MIXTURES:  # a mixture head: K components, 2 unless model.params says
        params = {"components": DEFAULT_COMPONENTS, **params}
    return build_model(cfg.model.name, model_sizes(data, cfg.model.probabilistic), params)


def closed_form_data(data) -> ClosedFormData:
    """What a closed-form model is fitted on (:class:`~stgraph.models.registry.ClosedFormData`), from a
    :class:`~stgraph.data.ForecastData`: its training rows (views, no copy) and its windows in batches."""
    from ..data.split import SPLIT_NAMES, training_rows

    lo, hi = training_rows(data.split, data.windows.span)
    mean, std = data.target_stats()
    return ClosedFormData(rows=data.targets[lo:hi], tod=data.tod[lo:hi], dow=data.dow[lo:hi], target_mean=mean,
                          target_std=std, null_value=data.null_value,
                          batches=lambda split, batch_size: data.loader(split, batch_size),
                          windows={s: len(data.split_starts(s)) for s in SPLIT_NAMES}, horizon=data.horizon,
                          steps_per_day=data.steps_per_day, target_channels=target_positions(data))
