"""Load test of ``stgraph serve`` on 127.0.0.1 at METR-LA size (207 sensors): requests/s and p50/p99 latency of
``POST /forecast`` at 1, 8 and 32 concurrent clients, for stgt (probabilistic: q05/q50/q95 in every answer) and
STID.

For each model the script trains a small run on the METR-LA week if ``--workdir`` has none (one epoch of
``--train-batches`` batches: the load test measures serving, not accuracy, and the forward costs the same however
long the model trained), starts ``stgraph serve RUN --threads T`` in a child process on a free port of
127.0.0.1 (never another address), and drives it with httpx + asyncio: each level of concurrency sends
``--requests`` requests, each client one after another, every request a JSON body of the latest 12 readings of
all 207 sensors (a different window of the test week each time, prepared before the clock starts). Latency is
the client's wall time from send to parsed answer; requests/s is requests over the level's wall time; an error
is any answer other than 200 or a failed connection. Goals (issue 28): p50 < 30 ms and p99 < 100 ms at 1
client, no error at 32. The client runs on the same machine as the server and takes CPU from it.

Writes ``--out``/load.md (table and command) and load.json.

Usage: ``python benchmarks/bench_serve.py [--models stgt,stid] [--clients 1,8,32] [--requests 300] [--threads 1]``
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def train_run(model: str, workdir: Path, batches: int) -> Path:
    """A run of ``model`` on the METR-LA week in ``workdir/model`` (trained once)."""
    import stgraph
    from stgraph.shared_data import shared_file

    out = workdir / model
    if (out / "checkpoints" / "best.pt").is_file():
        return out
    data, graph = shared_file("metr-la-week", "metr-la-week.h5"), shared_file("metr-la-week", "adj_mx.pkl")
    if data is None or graph is None:
        sys.exit("error: ../shared/data/metr-la-week is missing (stgraph.shared_data)")
    stgraph.train(data=data, graph=graph, model=model, epochs=1, out=out, progress=False,
                  probabilistic=model == "stgt", overwrite=True,
                  overrides={"train.max_batches": batches, "train.patience": 0, "train.threads": 1})
    return out


def bodies(run_dir: Path, count: int = 64) -> list[bytes]:
    """``count`` JSON request bodies: the latest 12 readings of every sensor at ``count`` steps of the test week."""
    import stgraph
    from stgraph.io.series import iso

    run = stgraph.open_run(run_dir)
    s, T = run.series, run.data.input_len
    out = []
    for end in range(len(s.timestamps) - count, len(s.timestamps)):
        vals = s.values[end - T + 1:end + 1, :, 0].astype(float)
        out.append(json.dumps({"timestamps": [iso(t) for t in s.timestamps[end - T + 1:end + 1]],
                               "sensors": list(s.sensor_ids),
                               "values": [[None if v == 0 else round(float(v), 4) for v in row] for row in vals]}
                              ).encode())
    return out


def cpu_cost(run_dir: Path, payloads: list[bytes], reps: int = 50) -> dict:
    """CPU milliseconds (``time.process_time``, one torch thread, in this process: little moved by other jobs)
    per request of each stage the server runs: parse + check the JSON body, build the input window, one forward,
    the answer as JSON bytes (``load.md``'s second table)."""
    import torch

    import stgraph
    from stgraph.serve.app import _parse
    from stgraph.serve.engine import Engine, dumps

    torch.set_num_threads(1)
    engine = Engine(stgraph.open_run(run_dir))
    import gc
    gc.collect()
    gc.freeze()  # as the server does at start (stgraph.serve.app's lifespan)
    stages = {"parse": 0.0, "window": 0.0, "forward": 0.0, "answer": 0.0}
    for k in range(reps + 3):
        t = [time.process_time()]
        series, covariates = _parse(engine, "application/json", payloads[k % len(payloads)])
        t.append(time.process_time())
        x, cov, future, issued = engine.window(series, covariates=covariates)
        t.append(time.process_time())
        arrays = tuple(None if a is None else a[0] for a in engine.forward(x, cov))
        t.append(time.process_time())
        dumps(engine.answer(arrays, future, issued))
        t.append(time.process_time())
        if k >= 3:  # after warm-up
            for name, a, b in zip(stages, t, t[1:]):
                stages[name] += (b - a) * 1000 / reps
    stages["total"] = sum(stages.values())
    return stages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, port: int, threads: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "stgraph", "serve", str(run_dir), "--host", "127.0.0.1",
                             "--port", str(port), "--threads", str(threads)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
        if proc.poll() is not None:
            sys.exit(f"error: the server stopped: {proc.stderr.read().decode()[-2000:]}")
    proc.kill()
    sys.exit("error: the server did not start in 60 s")


async def level(url: str, payloads: list[bytes], clients: int, requests: int) -> dict:
    """``requests`` POSTs from ``clients`` concurrent clients; latencies in ms, requests/s, errors."""
    import httpx

    lat, errors = [], []
    per = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as c:
        for b in payloads[:5]:  # warm-up
            await c.post("/forecast", content=b, headers=headers)

        async def client(k: int, n: int):
            for j in range(n):
                body = payloads[(k * 7 + j) % len(payloads)]
                t0 = time.perf_counter()
                try:
                    r = await c.post("/forecast", content=body, headers=headers)
                    r.json()
                    if r.status_code != 200:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as e:
                    errors.append(f"{type(e).__name__}: {e}")
                lat.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k, n) for k, n in enumerate(per)))
        wall = time.perf_counter() - t0
    a = np.asarray(lat)
    return {"clients": clients, "requests": requests, "errors": len(errors), "first_errors": errors[:3],
            "rps": requests / wall, "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean())}


def table(results: list[dict]) -> str:
    lines = ["| model | clients | requests | errors | requests/s | p50 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['clients']} | {r['requests']} | {r['errors']} | {r['rps']:.1f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="stgt,stid")
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--requests", type=int, default=300, help="requests per level of concurrency")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    p.add_argument("--train-batches", type=int, default=5)
    p.add_argument("--workdir", default="bench_serve")
    p.add_argument("--out", default=str(HERE / "results" / "serve"))
    args = p.parse_args()
    workdir, out = Path(args.workdir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    results, cost = [], {}
    for model in args.models.split(","):
        run_dir = train_run(model, workdir, args.train_batches)
        payloads = bodies(run_dir)
        cost[model] = cpu_cost(run_dir, payloads)
        print(f"{model} CPU ms per request: " + ", ".join(f"{k} {v:.2f}" for k, v in cost[model].items()), flush=True)
        port = free_port()
        proc = start_server(run_dir, port, args.threads)
        try:
            for c in (int(v) for v in args.clients.split(",")):
                r = asyncio.run(level(f"http://127.0.0.1:{port}", payloads, c, args.requests))
                r["model"] = model
                results.append(r)
                print(f"{model} {c:>3} clients: {r['rps']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, "
                      f"p99 {r['p99_ms']:.1f} ms, {r['errors']} errors", flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
    load_after = os.getloadavg()
    cpus = os.cpu_count()
    contended = max(load_before[0], load_after[0]) > 0.5
    note = (f"measured under CPU contention (1-minute load average {load_before[0]:.1f} before, "
            f"{load_after[0]:.1f} after, on {cpus} CPUs, other jobs running beside it)" if contended else
            f"measured alone (load average {load_before[0]:.1f} before on {cpus} CPUs)")
    command = "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:])
    doc = {"results": results, "cpu_ms_per_request": cost, "command": command, "note": note, "threads": args.threads, "cpus": cpus,
           "cpu": platform.processor() or platform.machine(), "body_bytes": len(payloads[0])}
    (out / "load.json").write_text(json.dumps(doc, indent=1))
    one = [r for r in results if r["clients"] == 1]
    most = max(int(v) for v in args.clients.split(","))
    goals = [f"{r['model']}: p50 {r['p50_ms']:.1f} ms ({'met' if r['p50_ms'] < 30 else 'missed'}), p99 "
             f"{r['p99_ms']:.1f} ms ({'met' if r['p99_ms'] < 100 else 'missed'}) at 1 client" for r in one]
    goals += [f"{r['model']}: {r['errors']} errors at {most} clients" for r in results if r["clients"] == most]
    md = ["# stgraph serve: load test on 127.0.0.1 (METR-LA week, 207 sensors)", "",
          f"Command: `{command}` (server `stgraph serve RUN --threads {args.threads}` in a child process; "
          f"client httpx + asyncio on the same machine; {args.requests} requests per level; JSON body of the latest "
          f"12 readings of 207 sensors, {len(payloads[0]):,} bytes).", "", f"**{note}.**", "", table(results), "",
          "Goals (issue 28): p50 < 30 ms and p99 < 100 ms for one forecast at 1 client; no error at 32 clients.", "",
          "CPU time per request of each stage the server runs (`time.process_time` in one process, one torch thread, "
          f"mean of 50 requests; CPU time moves little with other jobs, wall time does):", "",
          "| model | parse + check JSON | input window | forward | answer JSON | total |", "|---|---:|---:|---:|---:|---:|"]
    md += [f"| {m} | " + " | ".join(f"{c[k]:.2f}" for k in ("parse", "window", "forward", "answer", "total")) + " |"
           for m, c in cost.items()]
    md += ["", "Against the goals:"]
    md += [f"- {g}" for g in goals]
    (out / "load.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out / 'load.md'} and {out / 'load.json'}")


if __name__ == "__main__":
    main()
