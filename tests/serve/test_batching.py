"""Concurrent /forecast requests share forwards (the micro-batching queue) and get their own answers."""
import asyncio

import httpx
import numpy as np

from stgraph.serve import create_app


def test_concurrent_requests_batched(served, window_body):
    import stgraph

    run = stgraph.open_run(served["stid"])
    app = create_app(run)
    n = len(run.series.timestamps)
    bodies = [window_body(run, n - 1 - 7 * k) for k in range(24)]

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            together = await asyncio.gather(*(c.post("/forecast", json=b) for b in bodies))
            alone = [await c.post("/forecast", json=b) for b in bodies[:4]]
        await app.state.batcher.stop()
        return together, alone

    together, alone = asyncio.run(go())
    assert all(r.status_code == 200 for r in together)
    sizes = app.state.batcher.batches
    assert max(sizes[:-4]) > 1 and sum(sizes) == 28 and sizes[-4:] == [1, 1, 1, 1]
    for r, b in zip(together, bodies):  # each request its own window's answer
        assert r.json()["issued_at"] == b["timestamps"][-1]
    for r, s in zip(together[:4], alone):
        np.testing.assert_allclose(r.json()["forecast"], s.json()["forecast"], rtol=1e-5, atol=1e-4)
