"""``stgraph serve``: forecasts of a trained run over HTTP and a page with a map (optional extra
``stgraph[serve]``: FastAPI and uvicorn).

* :mod:`~stgraph.serve.engine`: requests checked into input windows, answers in data units (no web framework);
* :mod:`~stgraph.serve.batching`: concurrent requests batched into one forward;
* :mod:`~stgraph.serve.facts`: sensors, model facts and drift flags;
* :mod:`~stgraph.serve.app`: :func:`create_app`, the FastAPI app; ``static/``: the page.
"""
from __future__ import annotations


def create_app(run, **kwargs):
    """:func:`stgraph.serve.app.create_app` (imports FastAPI only when called)."""
    try:
        from .app import create_app as make
    except ImportError as e:
        raise ImportError(f"stgraph serve needs FastAPI and uvicorn ({e}); install them with "
                          f"pip install 'stgraph[serve]'") from None
    return make(run, **kwargs)


__all__ = ["create_app"]
