"""Forecasting models, found by name through :mod:`stgraph.models.registry`.

Each module registers one model; importing this package registers them all.
"""
from .registry import available_models, build_model, count_parameters, get_model_class, register
from .last import LastValue
from .ha import HistoricalAverage
from .var import VectorAutoregression
from .stgt import STGT
from .dcrnn import DCRNN
from .stgcn import STGCN
from .gwnet import GraphWaveNet
from .gman import GMAN
from .staeformer import STAEformer
from .stid import STID
from .blend import Blend

__all__ = ["available_models", "build_model", "count_parameters", "get_model_class", "register",
           "LastValue", "HistoricalAverage", "VectorAutoregression", "STGT",
           "DCRNN", "STGCN", "GraphWaveNet", "GMAN", "STAEformer", "STID", "Blend"]
