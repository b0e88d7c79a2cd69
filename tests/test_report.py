"""stgraph report: one self-contained HTML file holding the page, its script and the run's figures."""
import json
import re

import numpy as np
import pytest

import stgraph
from stgraph.cli.main import main


@pytest.fixture(scope="module")
def run(tiny_synth, tmp_path_factory):
    return stgraph.train(data=tiny_synth["data"], graph=tiny_synth["adj"], model="stgt", probabilistic=True,
                         epochs=1, out=tmp_path_factory.mktemp("report") / "stgt", progress=False,
                         overrides={"model.params.hidden": 16, "train.max_batches": 3, "train.patience": 0})


def test_report_is_self_contained(run, tmp_path, capsys):
    from stgraph.forecast import forecast_at
    from stgraph.plot import _collect

    out = tmp_path / "r.html"
    assert main(["report", str(run.files.root), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    html = out.read_text()
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)  # nothing loaded from elsewhere
    assert not re.findall(r"https?://(?!www.w3.org/2000/svg)", html)  # (the SVG namespace is a name, not a fetch)
    blob = json.loads(re.search(r"window.STGRAPH_DATA = (.*?);</script>", html).group(1))
    per_sensor, by_tod, _ = _collect(run, None)
    np.testing.assert_allclose(blob["report"]["per_sensor"], per_sensor)
    assert blob["report"]["worst"][0] == run.series.sensor_ids[int(np.nanargmax(per_sensor))]
    assert len(blob["report"]["tod"]["mae"]) == len(by_tod) == 48
    assert np.array_equal(np.asarray(blob["forecast/latest"]["forecast"], np.float32), forecast_at(run).mean)
    assert len(blob["sensors"]["sensors"]) == 10 and blob["model"]["model"] == "stgt"
    assert blob["attention"]["700002"]  # three sensors feed it


def test_report_refuses_other_files(run, tmp_path, capsys):
    assert main(["report", str(run.files.root), "--out", str(tmp_path / "r.png")]) == 2
    assert "expected an .html file" in capsys.readouterr().err
    mine = tmp_path / "mine.html"
    mine.write_text("my notes")
    assert main(["report", str(run.files.root), "--out", str(mine)]) == 2
    assert "--force" in capsys.readouterr().err and mine.read_text() == "my notes"
