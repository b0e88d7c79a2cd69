"""`make demo`'s driver end to end on a tiny network: every step it runs must succeed."""
import json

from stgraph.demo import main as demo


def test_demo_runs_every_step(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo(["--out", str(out), "--sensors", "8", "--days", "2", "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    for step in ("train the flagship stgt model", "evaluate stgt", "forecast the next hour", "plot", "summary"):
        assert f"== {step}" in printed
    assert (out / "forecast.csv").stat().st_size > 0
    assert any((out / "plots").glob("*.png"))
    ev = json.loads((out / "runs" / "stgt" / "evaluation_test.json").read_text())
    assert "average" in ev and ev["average"]["mae"] > 0
