"""Reading and writing traffic sensor series."""
from .series import Series, format_interval, infer_interval, parse_interval, null_mask, iso, gaps

__all__ = ["Series", "format_interval", "infer_interval", "parse_interval", "null_mask", "iso", "gaps"]
