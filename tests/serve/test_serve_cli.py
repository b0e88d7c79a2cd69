"""`stgraph serve` on the command line: a host other than loopback needs a token file, and a real server
answers on 127.0.0.1."""
import socket
import subprocess
import sys
import time

import httpx
import pytest

from stgraph.cli.main import main


def test_non_loopback_needs_a_token(served, tmp_path, capsys):
    assert main(["serve", str(served["stid"]), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 is not a loopback address" in err and "--token-file" in err
    short = tmp_path / "token"
    short.write_text("abc\n")
    assert main(["serve", str(served["stid"]), "--host", "0.0.0.0", "--token-file", str(short)]) == 2
    assert "at least 16 characters (found 3)" in capsys.readouterr().err
    assert main(["serve", str(served["stid"]), "--token-file", str(tmp_path / "none")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["serve", str(served["stid"]), "--workers", "0"]) == 2
    assert "--workers = 0" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [1, 2])
def test_real_server_answers(served, tmp_path, workers):
    """``stgraph serve`` in its own process; with ``--workers 2`` uvicorn's processes each build the app from the
    run (stgraph.serve.app's factory) and every answer is the same forecast."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123\n")
    proc = subprocess.Popen([sys.executable, "-m", "stgraph", "serve", str(served["stid"]), "--port", str(port),
                             "--token-file", str(token), "--threads", "1", "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("server did not start: " + proc.stdout.read1().decode())
        assert httpx.get(url + "/sensors").status_code == 401
        answers = [httpx.get(url + "/forecast/latest", headers={"Authorization": "Bearer 0123456789abcdef0123"})
                   for _ in range(4 * workers)]
        assert all(r.status_code == 200 for r in answers) and len(answers[0].json()["forecast"]) == 12
        assert all(r.json()["forecast"] == answers[0].json()["forecast"] for r in answers)
    finally:
        proc.terminate()
        proc.wait(10)


def test_explain_and_report_errors_name_the_field(served, tmp_path, capsys):
    run = str(served["stid"])
    assert main(["explain", run, "--sensor", "nope", "--step", "1"]) == 2
    assert "error: sensor: unknown sensor 'nope'" in capsys.readouterr().err
    assert main(["explain", run, "--sensor", "700001", "--step", "99"]) == 2
    assert "error: step: 99; expected a horizon step from 1 to 12" in capsys.readouterr().err
    assert main(["report", run, "--out", str(tmp_path / "r.html"), "--tiles", "https://x.org/tile.png"]) == 2
    assert "{z}, {x} and {y}" in capsys.readouterr().err and not (tmp_path / "r.html").exists()
