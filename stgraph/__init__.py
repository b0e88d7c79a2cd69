"""stgraph: spatio-temporal graph forecasting on traffic sensor networks.

The Python API (:mod:`stgraph.api`, loaded on first use so ``import stgraph`` stays cheap):

* :func:`stgraph.train` ``(data=, graph=, model=, out=, epochs=, config=, overrides=, ...)``: train into a run
  directory, returns the :class:`~stgraph.training.run.Run`;
* :func:`stgraph.open_run` ``(run_dir)``: a trained run, to evaluate and forecast;
* :func:`stgraph.evaluate` ``(run, split)``: its metrics per horizon step, recorded in the run directory;
* :func:`stgraph.update` ``(run_dir, data, out=...)``: continue a run on new data;
* :func:`stgraph.federated.simulate`: federated training of several agencies on one machine.

The library logs through ``logging.getLogger("stgraph")``; the ``stgraph`` command shows those messages.
"""
__version__ = "0.1.0"

_API = ("train", "open_run", "evaluate", "update", "run_config")


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'stgraph' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])


__all__ = ["__version__", *_API]
