"""A synthetic road network and traffic speeds: the embedded default dataset.

Nothing here downloads anything. Modules, one job each:

- :mod:`.layout`: :func:`make_road_network` lays out freeway corridors of loop detectors around a
  city centre (Los Angeles by default), with ramps, interchanges and DCRNN-style kernel weights;
- :mod:`.simulate`: :func:`simulate_speeds` (METR-LA-like 5-minute speeds with rush hours,
  incidents and dead detectors (:mod:`.disruptions`), noise, recorded as ``0``) on any such graph,
  from the road structure and time axis of :mod:`.roads`;
- :mod:`.counts`: :func:`simulate_counts` (hourly passenger boardings with real zeros) and
  :func:`simulate_daily_counts` (the same summed to days: daily counts per region with a weekly rhythm);
- :mod:`.write`: :func:`generate` does both; :func:`write_synthetic` writes the files in the
  layout of the DCRNN release (``metr-la.h5``-style HDF5, ``adj_mx.pkl``,
  ``distances_la_2012.csv``-style distances, sensor locations and ids) and
  :func:`write_synthetic_counts` an hourly or daily counts CSV with a distance-weighted node-link graph;
- :mod:`.events`: rain episodes, incidents and lane closures on a simulated series, written as
  covariate files (:func:`~stgraph.synth.events.write_events`).

Determinism: the same arguments and seed give identical graphs and arrays.
"""
from ..graph import adj_mx as dcrnn_adj_mx
from .layout import LA_CENTRE, MIN_SENSORS, PRESETS, haversine_m, make_road_network, preset
from .counts import simulate_counts, simulate_daily_counts
from .disruptions import Incident, Outage
from .simulate import SimulationLog, simulate_speeds
from .write import generate, write_synthetic, write_synthetic_counts

__all__ = [
    "PRESETS", "LA_CENTRE", "MIN_SENSORS", "Incident", "Outage", "SimulationLog",
    "make_road_network", "simulate_speeds", "generate", "write_synthetic",
    "simulate_counts", "simulate_daily_counts", "write_synthetic_counts",
    "dcrnn_adj_mx", "haversine_m", "preset",
]
