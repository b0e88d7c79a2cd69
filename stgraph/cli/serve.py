"""``stgraph serve``, ``stgraph explain`` and ``stgraph report``: a trained run's forecasts over HTTP, why one
forecast came out as it did, and a shareable HTML page (:mod:`stgraph.serve`, :mod:`stgraph.explain`,
:mod:`stgraph.report`)."""
from __future__ import annotations

import ipaddress
import json
import os

from ..errors import ConfigError, MissingFileError
from .common import MODEL_PATH_HELP, emit

LOOPBACK_NAMES = ("localhost",)
#: seconds an idle keep-alive connection stays open (uvicorn's default 5 s closes connections of clients that
#: wait in a long queue, a race that shows as a read error on their next request)
KEEP_ALIVE = 30
TILES_HELP = ("map tile URL template, e.g. 'https://tile.openstreetmap.org/{z}/{x}/{y}.png' (default none: the page "
              "loads nothing from elsewhere; mind the tile server's terms and attribution)")


def add_parser(sub) -> None:
    """``serve``, ``explain``, ``report``."""
    s = sub.add_parser("serve", help="answer forecasts over HTTP (FastAPI; pip install 'stgraph[serve]') with a "
                                     "map page at /")
    s.add_argument("run_dir")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs "
                                                       "--token-file)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--token-file", default=None, help="file holding the Bearer token every data endpoint requires")
    s.add_argument("--workers", type=int, default=1, help="server processes (each loads the model)")
    s.add_argument("--threads", type=int, default=None, help="CPU threads per process for the forward")
    s.add_argument("--data", default=None, help="series file for GET /forecast/latest, re-read when it changes "
                                                "(default: the run's own series)")
    s.add_argument("--locations", default=None, help="CSV of sensor coordinates for the map (default: the "
                                                     "graph's, or graph_sensor_locations.csv beside it)")
    s.add_argument("--model", default=None, help=MODEL_PATH_HELP)
    s.add_argument("--tiles", default=None, help=TILES_HELP)

    e = sub.add_parser("explain", help="why a forecast: attention into a sensor and integrated gradients over "
                                       "every input reading")
    e.add_argument("run_dir")
    e.add_argument("--at", default=None, help="last input step (default the series' last)")
    e.add_argument("--sensor", required=True, help="sensor id")
    e.add_argument("--step", type=int, required=True, help="horizon step, 1 .. horizon")
    e.add_argument("--data", default=None, help="series to forecast from (default: the training file)")
    e.add_argument("--alphas", type=int, default=32, help="integrated-gradient steps (default 32)")
    e.add_argument("--plot", default=None, help="PNG of the attributions and attention")
    e.add_argument("--top", type=int, default=10, help="readings listed (default 10)")
    e.add_argument("--json", action="store_true")
    e.add_argument("--model", default=None, help=MODEL_PATH_HELP)

    r = sub.add_parser("report", help="one self-contained HTML page: map, forecasts, test MAE per horizon, error "
                                      "by time of day, worst sensors")
    r.add_argument("run_dir")
    r.add_argument("--out", required=True, help="HTML file")
    r.add_argument("--locations", default=None, help="CSV of sensor coordinates (default as serve)")
    r.add_argument("--force", action="store_true", help="replace a file at --out that stgraph did not write")
    r.add_argument("--model", default=None, help=MODEL_PATH_HELP)
    r.add_argument("--tiles", default=None, help=TILES_HELP)


def run(args) -> int:
    return {"serve": serve, "explain": explain, "report": report}[args.command](args)


def check_host(host: str, token_file: str | None) -> str | None:
    """The token of ``token_file`` (``None`` without one); a host other than loopback needs one."""
    token = None
    if token_file is not None:
        if not os.path.isfile(token_file):
            raise MissingFileError(f"--token-file '{token_file}': no such file")
        with open(token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
        if len(token) < 16 or any(c.isspace() for c in token):
            raise ConfigError(f"--token-file '{token_file}': the token must be one word of at least 16 characters "
                              f"(found {len(token)}); e.g. python -c 'import secrets; print(secrets.token_hex(32))'")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host in LOOPBACK_NAMES
    if not loopback and token is None:
        raise ConfigError(f"--host {host} is not a loopback address: anyone who reaches it could query the run; "
                          f"pass --token-file FILE (clients send 'Authorization: Bearer <token>'), or serve on "
                          f"127.0.0.1")
    return token


def serve(args) -> int:
    from ..limits import check_count, check_threads, max_workers

    token = check_host(args.host, args.token_file)
    from ..serve.facts import check_tiles
    check_tiles(args.tiles)
    if args.threads is not None:
        check_threads(args.threads, "--threads")
    check_count(args.workers, "--workers", 1, max_workers(), "processes, one per CPU of this machine")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port}: expected 1 .. 65535")
    try:
        import uvicorn
    except ImportError:
        raise ImportError("stgraph serve needs FastAPI and uvicorn: pip install 'stgraph[serve]'") from None
    settings = {"run": args.run_dir, "data": args.data, "locations": args.locations, "model": args.model,
                "token_file": args.token_file, "threads": args.threads, "tiles": args.tiles}
    print(f"serving {args.run_dir} on http://{args.host}:{args.port}/ ({args.workers} worker(s)"
          f"{', Bearer token required' if token else ''}); Ctrl-C stops it")
    if args.workers > 1:
        os.environ["STGRAPH_SERVE"] = json.dumps(settings)
        uvicorn.run("stgraph.serve.app:app_from_env", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level="warning", timeout_keep_alive=KEEP_ALIVE)
    else:
        from ..serve.app import app_from_settings
        uvicorn.run(app_from_settings(settings), host=args.host, port=args.port, log_level="warning",
                    timeout_keep_alive=KEEP_ALIVE)
    return 0


def explain(args) -> int:
    from ..api import open_run
    from ..explain import explain as explain_one, explain_text, plot_explanation

    run = open_run(args.run_dir, model=args.model)
    series = run.series
    if args.data:
        from ..data.fit import check_fits
        from ..io import read_series
        d = run.config.data
        series = read_series(args.data, null_value=d.null_value, start=d.start, freq=d.freq)
        check_fits(series, run.trained_on)
    result = explain_one(run, series, sensor=args.sensor, step=args.step, at=args.at, alphas=args.alphas)
    if args.plot:
        result["plot"] = str(plot_explanation(result, args.plot))
    if args.json:
        emit(result, True)
    else:
        print(explain_text(result, args.top))
    return 0


def report(args) -> int:
    from ..report import write_report

    path = write_report(args.run_dir, args.out, locations=args.locations, model=args.model, force=args.force,
                        tiles=args.tiles)
    print(f"wrote {path}")
    return 0
