"""`make demo`'s driver end to end on a tiny network: every step it runs must succeed."""
import json

from stgraph.demo import main as demo


def test_demo_runs_every_step(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo(["--out", str(out), "--sensors", "8", "--days", "2", "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    for step in ("train the flagship stgt model", "evaluate stgt", "forecast the next hour", "plot", "summary"):
        assert f"== {step}" in printed
    # stgt's regime table: one row per regime present and horizon step, then the average and the thresholds
    table = printed.split("== stgt's error by regime")[1].split("\n== ")[0]
    assert "regime" in table and "MAE" in table and "COVERAGE90" in table and "regime thresholds: mean" in table
    ev = json.loads((out / "runs" / "stgt" / "evaluation_test.json").read_text())
    regimes = ev["by"]["groups"]
    assert regimes and set(regimes) <= {"free flow", "congested", "transition"}
    for name, g in regimes.items():
        assert name in table and f"{g['average']['mae']:.4f}" in table
    shares = sum(g["average"]["share"] for g in regimes.values())
    assert abs(shares - 1) < 1e-9
    assert (out / "forecast.csv").stat().st_size > 0
    assert any((out / "plots").glob("*.png"))
    ev = json.loads((out / "runs" / "stgt" / "evaluation_test.json").read_text())
    assert "average" in ev and ev["average"]["mae"] > 0
