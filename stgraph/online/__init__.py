"""Keeping a trained model up to date: continue it on new data (:mod:`.update`) and watch its error
per sensor over time (:mod:`.drift`)."""
from .drift import drift_report, rolling_errors
from .update import remap_nodes, update_run

__all__ = ["update_run", "remap_nodes", "drift_report", "rolling_errors"]
