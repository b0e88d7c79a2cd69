"""The page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium): it loads
without a console error, the map shows every sensor, clicking one draws its forecast with the 90% band, the
horizon control recolours the map; the report renders the same way from its one file. Skipped (with the
reason) where the browser is absent, unless STGRAPH_REQUIRE_BROWSER=1 (CI) makes that a failure."""
import contextlib
import os
import shutil
import socket
import threading
import time

import pytest

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _need(what: str):
    if os.environ.get("STGRAPH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what}; STGRAPH_REQUIRE_BROWSER=1 requires the browser tests to run")
    pytest.skip(f"{what}: browser tests skipped (apt install chromium chromium-driver; pip install selenium)")


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need("selenium is not installed")
    binary = next((p for p in CHROMIUM if os.path.exists(p)), None) or shutil.which("chromium")
    driver = next((p for p in DRIVER if os.path.exists(p)), None) or shutil.which("chromedriver")
    if not binary or not driver:
        _need(f"no Chromium ({binary or 'not found'}) or chromedriver ({driver or 'not found'})")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(driver))
    yield d
    d.quit()


@contextlib.contextmanager
def _serving(app):
    """``app`` served by uvicorn on a free port of 127.0.0.1 in a thread; yields its address."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "the test server did not start within 10 s"
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        srv.should_exit = True
        t.join(10)


@pytest.fixture(scope="module")
def server(stgt_run):
    from stgraph.serve import create_app

    with _serving(create_app(stgt_run)) as url:
        yield url


def _ready(d, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(d, timeout).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def _severe(d):
    return [e for e in d.get_log("browser") if e["level"] == "SEVERE"]


def _fills(d):
    return d.execute_script("return [...document.querySelectorAll('circle.sensor')].map(c => c.getAttribute('fill'))")


def _check_page(d, n_sensors, probabilistic=True):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    _ready(d)
    circles = d.find_elements(By.CSS_SELECTOR, "#map circle.sensor")
    assert len(circles) == n_sensors
    before = _fills(d)
    assert all(f and f.startswith("rgb(") for f in before)
    Select(d.find_element(By.ID, "horizon")).select_by_index(11)
    after = _fills(d)
    assert after != before  # the horizon control recolours the map
    circles[4].click()
    WebDriverWait(d, 20).until(lambda d: d.find_elements(By.ID, "fc-line"))
    assert d.find_element(By.ID, "fc-line").get_attribute("d").count("L") == 12  # last reading + 12 steps
    if probabilistic:
        assert d.find_element(By.ID, "fc-band").get_attribute("d").startswith("M")
    assert "selected" in circles[4].get_attribute("class")
    return d


def test_page(browser, server, stgt_run):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    _check_page(browser, len(stgt_run.series.sensor_ids))
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#why table"))
    browser.find_elements(By.CSS_SELECTOR, "#map circle.sensor")[1].click()  # 700002: three sensors feed it
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#map circle.sensor.top"))
    ids = list(stgt_run.series.sensor_ids)
    ei = stgt_run.graph.edge_index.numpy()
    feeders = {ids[s] for s, t in zip(*ei) if t == 1 and s != 1}
    ringed = {c.get_attribute("data-id") for c in browser.find_elements(By.CSS_SELECTOR, "#map circle.sensor.top")}
    assert ringed == feeders  # attention weighs exactly its in-neighbours (all of them: fewer than five)
    assert not browser.find_elements(By.ID, "truth-line")  # the newest forecast: nothing read after it yet
    assert _severe(browser) == []
    at = str(stgt_run.series.timestamps[-40])[:19]
    browser.get(server + "#at=" + at)  # an older forecast: the readings that followed are drawn
    browser.refresh()
    _ready(browser)
    assert browser.find_element(By.ID, "issued").text == "issued at " + at
    browser.find_elements(By.CSS_SELECTOR, "#map circle.sensor")[1].click()
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "truth-line"))
    assert browser.find_element(By.ID, "truth-line").get_attribute("d").count("L") == 11  # 12 readings
    assert _severe(browser) == []


def test_report(browser, served, tmp_path):
    from stgraph.cli.main import main

    out = tmp_path / "report.html"
    assert main(["report", str(served["stgt"]), "--out", str(out)]) == 0
    browser.get(out.as_uri())
    _check_page(browser, 10)
    assert _severe(browser) == []


def test_map_tiles_only_when_configured(browser, stgt_run, server):
    """Without a tile URL the map has no image; with one (a data: URL here: nothing leaves the machine) the
    tiles behind the sensors are the Web Mercator tiles {z}/{x}/{y} covering them."""
    import math

    from selenium.webdriver.common.by import By

    from stgraph.serve import create_app
    from stgraph.serve.facts import sensor_positions

    browser.get(server)
    _ready(browser)
    assert browser.find_elements(By.CSS_SELECTOR, "#map image") == []
    tile = ("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='256' height='256'%3E%3Crect "
            "width='256' height='256' fill='%23ddd'/%3E%3C/svg%3E#{z}/{x}/{y}")
    with _serving(create_app(stgt_run, tiles=tile)) as url:
        browser.get(url)
        _ready(browser)
        hrefs = [i.get_attribute("href") for i in browser.find_elements(By.CSS_SELECTOR, "#map image")]
        assert len(browser.find_elements(By.CSS_SELECTOR, "#map circle.sensor")) == 10
        zxy = {tuple(int(v) for v in h.rsplit("#", 1)[1].split("/")) for h in hrefs}
        z = next(iter(zxy))[0]
        lat, lon = sensor_positions(stgt_run)
        for a, o in zip(lat, lon):  # every sensor's own tile is drawn
            r = math.radians(a)
            x = int((o + 180) / 360 * 2 ** z)
            y = int((1 - math.log(math.tan(r) + 1 / math.cos(r)) / math.pi) / 2 * 2 ** z)
            assert (z, x, y) in zxy
        assert _severe(browser) == []


def test_page_with_a_token(browser, stgt_run):
    """Off loopback the data needs a token: the page sends the one in its address (#token=...), and says what
    failed without it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from stgraph.serve import create_app

    token = "k" * 40
    with _serving(create_app(stgt_run, token=token)) as url:
        try:
            browser.get(f"{url}#token={token}")
            _ready(browser)
            assert len(browser.find_elements(By.CSS_SELECTOR, "#map circle.sensor")) == 10
            browser.get(f"{url}?again#")
            WebDriverWait(browser, 20).until(
                lambda d: "could not load" in d.find_element(By.ID, "sensor-title").text)
            assert "401" in browser.find_element(By.ID, "sensor-title").text
        finally:
            browser.get_log("browser")  # the 401s' console errors are this test's, not the next one's


def test_api_docs_render_from_this_machine(browser, server):
    """/docs draws Swagger UI from fastapi-offline's files served here: no request leaves the machine."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "docs")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock-summary-path"))
    paths = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")]
    assert "/forecast" in paths and "/forecast/latest" in paths
    requested = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert requested and all(u.startswith(server) for u in requested), requested
    assert _severe(browser) == []
