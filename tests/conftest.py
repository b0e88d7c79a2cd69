"""Shared fixtures: real data folders, a tiny synthetic dataset, model inputs (a ring graph, a batch
with its calendar) and a local HTTP server for the download tests."""
import os
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from stgraph.shared_data import shared_data_dir


def _require(*parts):
    root = shared_data_dir()
    path = None if root is None else root.joinpath(*parts)
    if path is None or not path.exists():
        msg = f"real data {'/'.join(parts)} not found beside the project (../shared/data)"
        if os.environ.get("STGRAPH_REQUIRE_SHARED_DATA"):
            pytest.fail(msg + " and STGRAPH_REQUIRE_SHARED_DATA is set")
        pytest.skip(msg)
    return path


@pytest.fixture
def metr_week_dir():
    """``../shared/data/metr-la-week``; skips (or fails in CI) when absent."""
    return _require("metr-la-week")


@pytest.fixture
def shared_graphs_dir():
    """``../shared/data/graphs``; skips (or fails in CI) when absent."""
    return _require("graphs")


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A 10-sensor, 2-day synthetic road network in METR-LA's layout (files: data, adj, locations, ...)."""
    from stgraph.synth import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("tiny_synth"), num_sensors=10, days=2, seed=3)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors run faster on one thread than on two contended ones; restore afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ model inputs
@pytest.fixture
def ring_graph():
    """``ring_graph(n)``: a PyG graph on ``n`` nodes with the edges ``i -> i + 1 (mod n)``, unit weights."""
    import torch
    from torch_geometric.data import Data

    def make(n: int):
        i = torch.arange(n)
        return Data(edge_index=torch.stack([i, (i + 1) % n]), edge_weight=torch.ones(n), num_nodes=n)
    return make


@pytest.fixture
def calendar_batch():
    """``calendar_batch(B, T_in, T_out, N, C, seed=0) -> (x, covariates)``: ``x`` ``[B, T_in, N, C]``
    standard normal and the calendar of a random 5-minute window of a day: ``tod_in``/``tod_out``
    ``[B, T]`` in ``[0, 1)`` and ``dow_in``/``dow_out`` ``[B, T]`` one random weekday per sample."""
    import torch

    def make(B: int, T_in: int, T_out: int, N: int, C: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(B, T_in, N, C, generator=g)
        start = torch.randint(0, 288 - T_in - T_out, (B, 1), generator=g)
        steps = start + torch.arange(T_in + T_out)
        dow = torch.randint(0, 7, (B, 1), generator=g).expand(B, T_in + T_out)
        cov = {"tod_in": steps[:, :T_in] / 288.0, "dow_in": dow[:, :T_in].clone(),
               "tod_out": steps[:, T_in:] / 288.0, "dow_out": dow[:, T_in:].clone()}
        return x, cov
    return make


@pytest.fixture
def sinusoid_series():
    """``sinusoid_series(B, T, N) -> (steps, series)``: ``steps`` ``[B, T]`` 5-minute slots of the day from a
    random start per sample (torch's global generator), ``series`` ``[B, T, N]`` a sinusoid of the time of
    day (period 4 hours) per node, each node with its own phase: a forecastable toy signal."""
    import math

    import torch

    def make(B: int, T: int, N: int):
        start = torch.randint(0, 288, (B, 1))
        steps = (start + torch.arange(T)) % 288
        phase = torch.arange(N) * (2 * math.pi / N)
        return steps, torch.sin(2 * math.pi * steps[..., None] / 48 + phase)
    return make


# ------------------------------------------------------------------ local HTTP server
@dataclass
class ServerState:
    """What the server serves and how it misbehaves, per path; ``log`` records ``(path, Range)``."""
    files: dict[str, bytes] = field(default_factory=dict)
    log: list[tuple[str, str | None]] = field(default_factory=list)
    cut_once: set[str] = field(default_factory=set)  # promise the body, send half, hang up (once)
    stall_after: dict[str, int] = field(default_factory=dict)  # bytes sent before stalling (once)
    corrupt: set[str] = field(default_factory=set)  # one byte flipped
    no_range: set[str] = field(default_factory=set)  # Range ignored: the whole file again
    html: set[str] = field(default_factory=set)  # an HTML "confirm download" page instead
    redirects: dict[str, str] = field(default_factory=dict)
    endless: set[str] = field(default_factory=set)  # a body that never ends, no Content-Length
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server_version = "stgraph-test/1.0"
    timeout = 30

    def log_message(self, *args):  # keep test output clean
        pass

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        st: ServerState = self.server.state  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        rng = self.headers.get("Range")
        with st.lock:
            st.log.append((path, rng))
            cut = path in st.cut_once
            st.cut_once.discard(path)
            stall = st.stall_after.pop(path, None)
        if path in st.redirects:
            self.send_response(302)
            self.send_header("Location", st.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path in st.html:
            page = b"<html><body>Virus scan warning: confirm download</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            if body:
                self.wfile.write(page)
            return
        if path in st.endless:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            block = b"\0" * 65536
            try:
                while not st.release.is_set():
                    self.wfile.write(block)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
            return
        data = st.files.get(path)
        if data is None:
            self.send_error(404, "no such file")
            return
        if path in st.corrupt:
            buf = bytearray(data)
            buf[len(buf) // 2] ^= 0xFF
            data = bytes(buf)
        start, end, status = 0, len(data) - 1, 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if m and path not in st.no_range:
            start = int(m.group(1))
            end = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        payload = data[start:end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(payload)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if not body:
            return
        if cut:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if stall is not None:
            self.wfile.write(payload[:stall])
            self.wfile.flush()
            st.release.wait(60)  # hold the connection open: the client blocks mid-transfer
            self.close_connection = True
            return
        self.wfile.write(payload)


class LocalServer:
    """An HTTP server on 127.0.0.1 (a free port) serving in-memory files with ``Range`` support;
    ``srv.url('/x')``, ``srv.base``; ``srv.state`` (:class:`ServerState`) steers it."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.state = ServerState(files=dict(files or {}))
        self.httpd.state = self.state  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.running = False

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> "LocalServer":
        self.thread.start()
        self.running = True
        return self

    def __exit__(self, *exc) -> None:
        if not self.running:
            return
        self.running = False
        self.state.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def local_server(monkeypatch):
    """``with local_server({'/x': b'...'}) as srv:`` a :class:`LocalServer`; proxies are switched off
    and any server still running at the end of the test is stopped."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    made: list[LocalServer] = []

    def make(files: dict[str, bytes] | None = None) -> LocalServer:
        made.append(LocalServer(files))
        return made[-1]
    yield make
    for srv in made:
        srv.__exit__(None, None, None)
