"""Windows, splits, scaling, calendar covariates and batches for forecasting.

Everything indexes into one ``[T, N, C]`` array; no sliding window is ever
materialised. Start at :meth:`ForecastData.from_series`.
"""
from .calendar import day_of_week, steps_per_day, time_of_day
from .batches import Batch, BatchLoader
from .dataset import ForecastData
from .scaler import StandardScaler
from .split import SPLIT_NAMES, Split, make_split, split_by_ratio, split_by_time, training_rows
from .windows import WindowIndex, contiguous_mask, take_rows

__all__ = [
    "Batch", "BatchLoader", "ForecastData", "SPLIT_NAMES", "Split", "StandardScaler", "WindowIndex",
    "contiguous_mask", "day_of_week", "make_split", "split_by_ratio", "split_by_time", "steps_per_day",
    "take_rows", "time_of_day", "training_rows",
]
