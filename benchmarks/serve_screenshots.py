"""Screenshots of the ``stgraph serve`` page and of ``stgraph report`` for a run (the README's pictures), taken in
headless Chromium (Debian's chromium + chromium-driver, through Selenium).

The page is served from this process on a free port of 127.0.0.1; the script picks the horizon, clicks the
sensor with the most in-edges (so the attention rings show) and waits for the forecast panel and the
explanation, then saves ``--out``/page.png; the report is written to a temporary folder and photographed the same
way (``--out``/report.png).

Usage: ``python benchmarks/serve_screenshots.py RUN_DIR [--out benchmarks/results/serve] [--horizon 12] [--at T]``
(e.g. a stgt run trained with ``stgraph train --data ../shared/data/metr-la-week/metr-la-week.h5 --graph
../shared/data/metr-la-week/adj_mx.pkl --model stgt --probabilistic --epochs 8``).
"""
from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def browser(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},{height}", "--hide-scrollbars"):
        opts.add_argument(a)
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def shoot(d, url: str, sensor: str, horizon: int, path: Path, wait_why: bool = True) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    d.get(url)
    WebDriverWait(d, 60).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    Select(d.find_element(By.ID, "horizon")).select_by_index(horizon - 1)
    dot = d.find_element(By.CSS_SELECTOR, f"#map circle.sensor[data-id='{sensor}']")
    d.execute_script("arguments[0].dispatchEvent(new MouseEvent('click'))", dot)  # METR-LA has stacked sensors
    WebDriverWait(d, 60).until(lambda d: d.find_elements(By.ID, "fc-line"))
    if wait_why:
        WebDriverWait(d, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#why table"))
    time.sleep(0.5)
    d.save_screenshot(str(path))
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--out", default=str(HERE / "results" / "serve"))
    p.add_argument("--horizon", type=int, default=12)
    p.add_argument("--sensor", default=None, help="sensor to click (default: the one with the most in-edges)")
    p.add_argument("--at", default=None, help="show the forecast issued at this step of the run's series (the page's "
                                               "#at=; default the newest); the readings that followed are drawn")
    args = p.parse_args()
    import uvicorn

    import stgraph
    from stgraph.report import write_report
    from stgraph.serve import create_app

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = stgraph.open_run(args.run_dir)
    ei = run.graph.edge_index.numpy()
    indeg = [int(((ei[1] == i) & (ei[0] != i)).sum()) for i in range(len(run.series.sensor_ids))]
    sensor = args.sensor or str(run.series.sensor_ids[max(range(len(indeg)), key=indeg.__getitem__)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(run), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.05)
    d = browser(1500, 980)
    try:
        shoot(d, f"http://127.0.0.1:{port}/" + (f"#at={args.at}" if args.at else ""), sensor, args.horizon,
              out / "page.png")
        with tempfile.TemporaryDirectory() as tmp:
            report = write_report(run, Path(tmp) / "report.html")
            d.set_window_size(1500, 1250)
            shoot(d, report.resolve().as_uri(), sensor, args.horizon, out / "report.png")
    finally:
        d.quit()
        srv.should_exit = True


if __name__ == "__main__":
    main()
