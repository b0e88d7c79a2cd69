"""Runs the serve tests share: a probabilistic stgt and a point STID trained for a few steps on the tiny
synthetic network (session scope: trained once)."""
import pytest

pytest.importorskip("fastapi", reason="stgraph serve needs the 'serve' extra (installed by the dev extra)")


@pytest.fixture(scope="session")
def served(tiny_synth, tmp_path_factory):
    """``{"stgt": run_dir, "stid": run_dir, "synth": files}``."""
    import stgraph

    root = tmp_path_factory.mktemp("served")
    quick = {"train.max_batches": 4, "train.patience": 0}
    stgraph.train(data=tiny_synth["data"], graph=tiny_synth["adj"], model="stgt", probabilistic=True, epochs=1,
                  out=root / "stgt", progress=False, overrides={"model.params.hidden": 16, **quick})
    stgraph.train(data=tiny_synth["data"], graph=tiny_synth["adj"], model="stid", epochs=1, out=root / "stid",
                  progress=False, overrides=quick)
    return {"stgt": root / "stgt", "stid": root / "stid", "synth": tiny_synth}


@pytest.fixture(scope="session")
def stgt_run(served):
    import stgraph

    return stgraph.open_run(served["stgt"])


@pytest.fixture(scope="session")
def window_body():
    """``window_body(run, end=None)``: the JSON request of the ``input_len`` steps of ``run``'s series ending at
    row ``end`` (default the last), zeros (the METR-LA layout's missing readings) sent as null."""
    return _window_body


def _window_body(run, end: int | None = None) -> dict:
    from stgraph.io.series import iso

    s = run.series
    T = run.data.input_len
    end = len(s.timestamps) if end is None else end + 1
    vals = s.values[end - T:end, :, 0].astype(float)
    body = [[None if v == 0 else float(v) for v in row] for row in vals]  # zeros: METR-LA's missing readings
    return {"timestamps": [iso(t) for t in s.timestamps[end - T:end]], "sensors": list(s.sensor_ids), "values": body}
