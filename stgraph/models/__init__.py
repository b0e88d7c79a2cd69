"""Forecasting models, found by name through :mod:`stgraph.models.registry`.

Each module registers one model; importing this package registers them all.
"""
from .registry import available_models, build_model, count_parameters, get_model_class, register
from .last import LastValue
from .ha import HistoricalAverage
from .var import VectorAutoregression
from .stgt import STGT

__all__ = ["available_models", "build_model", "count_parameters", "get_model_class", "register",
           "LastValue", "HistoricalAverage", "VectorAutoregression", "STGT"]
