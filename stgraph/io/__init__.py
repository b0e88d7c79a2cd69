"""Reading and writing traffic sensor series."""
from .series import LazySeries, Series, format_interval, infer_interval, parse_interval, null_mask, iso, gaps
from .read import read_series, sniff_format
from .hdf5_write import write_series, write_series_blocks

__all__ = ["Series", "LazySeries", "format_interval", "infer_interval", "parse_interval", "null_mask", "iso", "gaps",
           "read_series", "write_series", "write_series_blocks", "sniff_format"]
