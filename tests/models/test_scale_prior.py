"""Issue 25: a Normal head's scale depends on the sensor and the horizon (it used to stay at one number,
the global standard deviation, on short series)."""
import math

import numpy as np
import torch

from stgraph.cli.main import main

SMALL = ["--set", "model.params.hidden=16", "--set", "model.params.heads=2", "--set", "model.params.encoder_layers=1",
         "--set", "train.batch_size=16", "--set", "train.max_batches=4", "--set", "data.input_len=6",
         "--set", "data.horizon=4", "--set", "train.device=cpu", "--set", "train.patience=0", "--no-progress"]
NOISE = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]  # per-sensor noise std, shuffled over the sensors below
ORDER = [3, 0, 5, 1, 4, 2]


def test_predicted_scales_rank_sensors_by_their_noise(tmp_path, capsys):
    from stgraph.io import Series, write_series
    from stgraph.training.run import load_run
    rng = np.random.default_rng(0)
    T, sigma = 24 * 12, np.array([NOISE[i] for i in ORDER])
    stamps = np.datetime64("2020-01-06T00:00") + np.arange(T) * np.timedelta64(1, "h")
    level = 50 + 10 * np.sin(2 * np.pi * np.arange(T) / 24)[:, None]
    values = (level + rng.normal(size=(T, 6)) * sigma).astype(np.float32)[:, :, None]
    write_series(Series(values, stamps, [f"s{i}" for i in range(6)], ["v"], float("nan")), tmp_path / "v.h5")
    rc = main(["train", "--data", str(tmp_path / "v.h5"), "--out", str(tmp_path / "run"), "--epochs", "1",
               "--probabilistic", *SMALL])
    assert rc == 0, capsys.readouterr().err[-2000:]
    run = load_run(tmp_path / "run")
    assert run.config.model.params["scale_prior"] is True
    fc = run.forecaster
    # the fitted factor: last value's RMS error, sqrt(2 sigma^2 + profile change^2) / global std, per sensor
    _, std = fc.data.target_stats()
    factor = fc.model.scale_prior.factor[:, :, 0] * std[0]  # [T_out, N], data units
    # at step 1 the profile moves by at most 10 * 2 pi / 24 = 2.6 per hour: the noise dominates for sigma >= 2
    want = np.sqrt(2) * sigma
    big = sigma >= 4
    np.testing.assert_allclose(factor[0].numpy()[big], want[big], rtol=0.15)
    scales = []
    for out, _, _ in fc.predictions("test"):
        scales.append(out.scale)
    scale = torch.cat(scales).mean(0)[:, :, 0]  # [T_out, N]
    for h in range(scale.shape[0]):  # every horizon step ranks the sensors as their noise does
        assert np.argsort(scale[h].numpy()).tolist() == np.argsort(sigma).tolist(), (h, scale[h])
    per_sensor = scale.mean(0).numpy()
    # where the noise dominates last value's error (sigma 16 against 8) the scales keep the noise's ratio 2; the
    # quietest sensors' errors carry the daily profile's hourly change too, so the spread overall is smaller
    top = per_sensor[np.argsort(sigma)]
    assert 1.6 < top[-1] / top[-2] < 2.5 and top[-1] / top[0] > 4
    assert math.isfinite(float(per_sensor.sum()))
