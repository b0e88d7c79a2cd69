"""Text reports (issue 27): the reports file, its placement on (time, sensor) tokens, the batches' text
(never before publication, at the forecast steps only what was published by the forecast origin), the
hashed n-gram encoder and its gate."""
import logging
import zlib

import networkx as nx
import numpy as np
import pytest
import torch

from stgraph.data import ForecastData
from stgraph.data.reports import (NGRAM_BUCKETS, ReportOptions, ReportTokens, hash_ngrams, join_text, read_sources,
                                  stated_end)
from stgraph.errors import ConfigError, DataFormatError
from stgraph.graph import to_pyg
from stgraph.io.covariates import read_covariates
from stgraph.io.reports import read_reports
from stgraph.io.series import Series
from stgraph.nn.fusion import GatedFusion
from stgraph.nn.text import ReportEncoder

IDS = ["a", "b", "c", "d"]


def _series(steps=24):
    ts = np.datetime64("2012-03-01", "ns") + np.arange(steps) * np.timedelta64(5, "m")
    v = 50 + np.arange(steps * 4, dtype=np.float32).reshape(steps, 4) % 7
    return Series(v[:, :, None], ts, IDS, ["speed"], 0.0)


def _chain():
    """a -> b -> c -> d (traffic flows a to d: b and a are upstream of c), nodes with lat/lon 1 km apart."""
    g = nx.DiGraph()
    for i, s in enumerate(IDS):
        g.add_node(s, sensor_id=s, lat=34.0 + 0.009 * i, lon=-118.0)
    g.add_edges_from(zip(IDS, IDS[1:]), weight=1.0)
    return g


def _write(tmp_path, body, name="reports.csv"):
    p = tmp_path / name
    p.write_text("timestamp,sensor,lat,lon,end,duration,text\n" + body)
    return p


def test_read_reports_places_times_ends_and_bad_rows(tmp_path):
    p = _write(tmp_path, "2012-03-01 00:07,c,,,2012-03-01 00:30,,major crash two lanes blocked\n"
                         "2012-03-01 00:12,,,,,90,network notice\n"
                         "2012-03-01 00:20,,34.009,-118.0,,,concert ends soon\n")
    t = read_reports(p)
    assert t.sensors == ["c", "", ""] and t.texts[0] == "major crash two lanes blocked"
    assert t.ends[0] == np.datetime64("2012-03-01T00:30") and t.ends[1] == np.datetime64("2012-03-01T01:42")
    assert np.isnat(t.ends[2]) and t.lat[2] == pytest.approx(34.009) and np.isnan(t.lat[0])
    assert read_covariates([str(p)], _series())[0].kind == "text"
    for row, why in (("nonsense,c,,,,,text\n", "no publication time"), ("2012-03-01 00:10,c,,,,,\n", "empty text"),
                     ("2012-03-01 00:10,,34.0,,,,t\n", "expected both or neither"),
                     ("2012-03-01 00:10,c,,,2012-03-01 00:05,,t\n", "is not after the publication time")):
        bad = _write(tmp_path, "2012-03-01 00:07,c,,,,,fine\n" + row, "bad.csv")
        with pytest.raises(DataFormatError, match=rf"bad.csv': line 3: .*{why}.*--skip-bad-rows"):
            read_reports(bad)
        assert len(read_reports(bad, skip_bad_rows=True).skipped) == 1
    with pytest.raises(ConfigError, match="never known ahead"):
        read_covariates([str(p) + ":forecast"], _series())


def test_placement_by_hand_upstream_hops_and_publication(tmp_path):
    p = _write(tmp_path, "2012-03-01 00:07,c,,,2012-03-01 00:30,,crash at c\n"     # rows 2..5 at c, b (1 hop)
                         "2012-03-01 00:12,,,,,,network notice\n"                  # rows 3.. every sensor, 1 h
                         "2012-03-01 00:20,,34.0,-118.0,,,event near a\n")         # at a only (radius 0.5 km)
    g = _chain()
    opts = ReportOptions(hops=1, hours=1.0, radius_km=0.5)
    tok = ReportTokens(read_reports(p), _series(), g, to_pyg(g, IDS), opts)
    s = tok.slots.numpy()
    got = {(t, IDS[n]): sorted(int(r) for r in s[t, n] if r >= 0) for t in range(24) for n in range(4)}
    assert [t for t in range(24) if 0 in got[(t, "c")]] == [2, 3, 4, 5]        # 00:10 .. 00:25 (< end 00:30)
    assert [t for t in range(24) if 0 in got[(t, "b")]] == [2, 3, 4, 5]        # upstream, 1 hop
    assert not any(0 in got[(t, x)] for t in range(24) for x in ("a", "d"))    # 2 hops up; downstream
    assert [t for t in range(24) if 1 in got[(t, "d")]] == list(range(3, 15))  # 00:15 .. 01:10 (1 h)
    assert [t for t in range(24) if 2 in got[(t, "a")]] == list(range(4, 16)) and not any(
        2 in got[(t, "b")] for t in range(24))
    hop = tok.hops.numpy()
    assert hop[2, 1][s[2, 1] == 0].tolist() == [1] and hop[2, 2][s[2, 2] == 0].tolist() == [0]


def test_reports_stating_an_end_reach_until_it_plus_after_hours(tmp_path):
    p = _write(tmp_path, "2012-03-01 00:07,c,,,,,crash at c expect 20 minutes\n"         # said end 00:27
                         "2012-03-01 00:02,d,,,,,stadium event ends 00:40\n"               # said end 00:40
                         "2012-03-01 00:07,b,,,2012-03-01 00:20,,cleared by 01:30\n"        # the end column wins
                         "2012-03-01 00:12,a,,,,,lane blocked\n")                          # states none: 1 h
    opts = ReportOptions(hops=0, hours=1.0, after_hours=0.25)
    tok = ReportTokens(read_reports(p), _series(), None, None, opts)
    s = tok.slots.numpy()
    steps = lambda r, n: [t for t in range(24) if r in s[t, IDS.index(n)]]  # noqa: E731
    assert steps(0, "c") == list(range(2, 9))     # 00:10 .. 00:40 (< 00:27 + 15 min = 00:42)
    assert steps(1, "d") == list(range(1, 11))    # 00:05 .. 00:50 (< 00:40 + 15 min = 00:55)
    assert steps(2, "b") == [2, 3]                # 00:10, 00:15 (< the end column's 00:20)
    assert steps(3, "a") == list(range(3, 15))    # 00:15 .. 01:10 (< 00:12 + 1 h)
    assert tok.stated.tolist() == [True, True, True, False]
    with pytest.raises(ConfigError, match=r"data.report_after_hours = -1"):
        ReportOptions.of(type("D", (), {"report_after_hours": -1})())


def test_bad_places_refused_or_skipped_and_counted(tmp_path, caplog):
    g = _chain()
    p = _write(tmp_path, "2012-03-01 00:07,zz,,,,,crash\n2012-03-01 00:07,c,,,,,crash\n"
                         "2012-03-01 00:09,,40.0,-100.0,,,far away\n")
    with pytest.raises(DataFormatError, match=r"line 2: sensor 'zz' is not a sensor of the series"):
        ReportTokens(read_reports(p), _series(), g, to_pyg(g, IDS))
    with caplog.at_level(logging.WARNING, logger="stgraph"):
        tok = ReportTokens(read_reports(p), _series(), g, to_pyg(g, IDS), skip_bad_rows=True)
    assert tok.skipped == 2 and tok.texts == ["crash"] and "2 report(s) skipped" in caplog.text
    with pytest.raises(ConfigError, match="data.locations"):
        ReportTokens(read_reports(p), _series(), None, None, skip_bad_rows=True)
    with pytest.raises(ConfigError, match=r"data.report_hops = -1"):
        ReportOptions.of(type("D", (), {"report_hops": -1})())


def test_batches_see_reports_from_publication_and_forecast_steps_only_what_was_published(tmp_path, caplog):
    p = _write(tmp_path, "2012-03-01 00:12,c,,,,,published before the origin\n"
                         "2012-03-01 00:17,c,,,,,published after the origin\n")
    s, g = _series(), _chain()

    class D:  # the DataConfig fields read_sources reads
        report_hops, report_hours, report_radius_km, locations, text_encoder, skip_bad_rows = 0, 1.0, 1.0, None, None, False
        covariate_tolerance = time_zone = None

    data = ForecastData.from_series(s, input_len=4, horizon=3, split=(0.5, 0.25, 0.25),
                                    covariates=read_sources([str(p)], s, g, to_pyg(g, IDS), D()))
    assert data.exogenous.layout == [["reports", 22, "text", 0]] and data.exogenous.num_channels == 0
    b = data.batch(torch.tensor([0]))                       # input rows 0..3 (origin 00:15), forecast rows 4..6
    t = b.text["reports"]
    assert b.exo_in.shape == (1, 4, 4, 0)
    assert (t["slot_in"][0, :3] < 0).all() and t["slot_in"][0, 3, 2, 0] >= 0  # 00:12 seen from row 3 (00:15) on
    first = t["slot_in"][0, 3, 2, 0]
    assert t["age_in"][0, 3, 2, 0] == pytest.approx(3 / 60)
    out = t["slot_out"][0, :, 2]                            # rows 4..6 at c: the 00:17 report is not seen
    assert (out[:, 0] == first).all() and (out[:, 1:] < 0).all()
    assert t["age_out"][0, :, 2, 0].tolist() == pytest.approx([8 / 60, 13 / 60, 18 / 60])
    assert t["offsets"].tolist() == [0] and t["ngrams"].tolist() == hash_ngrams("published before the origin").tolist()
    b = data.batch(torch.tensor([3]))                       # origin row 6 (00:30): both seen, each encoded once
    assert len(b.text["reports"]["offsets"]) == 2
    j = join_text(data.batch(torch.tensor([0])).text, b.text)["reports"]  # an update's replay joins batches
    assert j["slot_in"].shape[0] == 2 and j["offsets"].tolist() == [0, len(t["ngrams"]), len(t["ngrams"]) + int(
        b.text["reports"]["offsets"][1])]
    second = j["slot_in"][1][j["slot_in"][1] >= 0]
    assert second.min() >= 1 and torch.equal(j["slot_in"][0], t["slot_in"][0])  # shifted past the first's report
    with caplog.at_level(logging.INFO, logger="stgraph"):
        _, cov, _ = data.window_at(s, "2012-03-01T01:35")  # both reports over (1 h each): said, no text signal
    assert "no report of 'reports'" in caplog.text and "no text signal" in caplog.text
    assert (cov["text"]["reports"]["slot_in"] < 0).all() and (cov["text"]["reports"]["slot_out"] < 0).all()


def test_hashed_ngrams_and_pooled_encoder_by_hand():
    ids = hash_ngrams("Major crash")
    assert ids[0] == zlib.crc32(b"w:major") % (NGRAM_BUCKETS - 1) + 1 and ids[2] == zlib.crc32(b"b:major crash") % (
        NGRAM_BUCKETS - 1) + 1
    assert len(ids) == 2 + 1 + 5 + 5 and (hash_ngrams("major crash") == ids).all()  # <major> 5, <crash> 5
    enc = ReportEncoder(2).eval()                           # no dropout of n-grams or embeddings in evaluation
    with torch.no_grad():
        enc.bag.weight.zero_()
        enc.bag.weight[1] = torch.tensor([1.0, 0.0])
        enc.bag.weight[2] = torch.tensor([0.0, 3.0])
        enc.rate.fill_(0.0)                                 # softplus(0) = ln 2 per hour
    text = {"ngrams": torch.tensor([1, 2]), "offsets": torch.tensor([0, 1]), "open": torch.tensor([0.0, 1.0]),
            "stated": torch.tensor([1.0, 0.0]), "slot_in": torch.tensor([[[[0, 1], [-1, -1]]]]),
            "age_in": torch.tensor([[[[0.5, 1.0], [0.0, 0.0]]]]), "hop_in": torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]]),
            "left_in": torch.tensor([[[[0.25, 0.0], [0.0, 0.0]]]])}
    out = enc(text, "in")                                   # [1, 1, 2, 2 + 6]
    w = 0.5                                                 # exp(-ln 2 * 1 h) for the open report; 1 for the ended
    assert out[0, 0, 0, :2].tolist() == pytest.approx([1 / (1 + w), 3 * w / (1 + w)])
    # reports, mean age, mean hop, hours left (of the one stating an end), share stating one, relevance (0.5 each)
    assert out[0, 0, 0, 2:].tolist() == pytest.approx([np.log(3), 0.75, 0.5, 0.25, 0.5, 0.5])
    assert out[0, 0, 1].tolist() == [0] * 8


def test_fusion_takes_text_through_its_own_gate():
    f = GatedFusion([["rain", 1], ["reports", 8, "text", 0]], dim=8, horizon=3)
    assert set(f.gates()) == {"rain", "reports"}
    z_in, z_out = torch.zeros(2, 4, 3, 1), torch.zeros(2, 3, 3, 1)
    text = {"reports": {"ngrams": torch.tensor([5, 6]), "offsets": torch.tensor([0]), "open": torch.tensor([1.0]),
                        "stated": torch.tensor([0.0]), "slot_in": torch.zeros(2, 4, 3, 1, dtype=torch.long),
                        "age_in": z_in + 1, "hop_in": z_in, "left_in": z_in,
                        "slot_out": -torch.ones(2, 3, 3, 1, dtype=torch.long), "age_out": z_out, "hop_out": z_out,
                        "left_out": z_out}}
    exo_in, exo_out = f.with_text(z_in, z_out, text)
    assert exo_in.shape == (2, 4, 3, 9) and exo_out.shape == (2, 3, 3, 9) and (exo_out == 0).all()
    assert f.encode(exo_in).shape == (2, 4, 3, 8)
    # no report at a token: the text source adds nothing there (relevance 0), whatever its gate
    assert torch.allclose(f.decode(exo_out), f.decode(torch.cat([exo_out[..., :1], 0 * exo_out[..., 1:]], -1)))
    with torch.no_grad():
        f.gate_in[1] = -100.0                               # the text gate shut: its embedding is gone
    assert torch.allclose(f.encode(exo_in), f.encode(torch.cat([exo_in[..., :1], 0 * exo_in[..., 1:]], -1)))
    with pytest.raises(ValueError, match="built for text reports"):
        f.with_text(torch.zeros(2, 4, 3, 1), torch.zeros(2, 3, 3, 1), None)


def test_stated_end_from_the_words():
    pub = np.datetime64("2012-03-01T21:30", "ns")
    assert stated_end("concert ends at 22:30, crowds for 45 min", pub) == np.datetime64("2012-03-01T22:30")
    assert stated_end("ends 01:15", pub) == np.datetime64("2012-03-02T01:15")          # the next 01:15
    assert stated_end("two lanes blocked, expect 90 minutes", pub) == np.datetime64("2012-03-01T23:00")
    assert stated_end("closed for about 2 hours", pub) == np.datetime64("2012-03-01T23:30")
    assert np.isnat(stated_end("debris on the road", pub))
    # a unit with two letters swapped is still the unit; a number before another word is skipped
    assert stated_end("two lanes blocked, expetc 90 minuets", pub) == np.datetime64("2012-03-01T23:00")
    assert stated_end("closed for about 2 huors", pub) == np.datetime64("2012-03-01T23:30")
    assert stated_end("3 lanes closed, expect 40 mins", pub) == np.datetime64("2012-03-01T22:10")
    assert np.isnat(stated_end("3 lanes closed, expect 40 nmiuets", pub))           # two swaps: not read
    assert np.isnat(stated_end("3 lanes closed on 2nd street", pub))
    assert stated_end("a 90-minute closure", pub) == np.datetime64("2012-03-01T23:00")


def test_sentence_encoder_from_disk_each_distinct_text_once_or_a_message(tmp_path, monkeypatch):
    import sys
    import types

    p = _write(tmp_path, "2012-03-01 00:07,c,,,,,crash\n2012-03-01 00:12,b,,,,,crash\n2012-03-01 00:20,a,,,,,fog\n")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)      # the package absent
    with pytest.raises(ConfigError, match=r"pip install 'stgraph\[text\]'"):
        ReportTokens(read_reports(p), _series(), opts=ReportOptions(encoder=str(tmp_path)))
    with pytest.raises(ConfigError, match="not a folder"):
        ReportTokens(read_reports(p), _series(), opts=ReportOptions(encoder=str(tmp_path / "nope")))
    seen = []

    class Model:  # stands in for sentence_transformers.SentenceTransformer (no download, no package)
        def __init__(self, path, local_files_only):
            assert path == str(tmp_path) and local_files_only

        def encode(self, texts, convert_to_numpy):
            seen.extend(texts)
            return np.array([[len(t), 1.0, 0.0] for t in texts], np.float32)

    monkeypatch.setitem(sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=Model))
    tok = ReportTokens(read_reports(p), _series(), opts=ReportOptions(encoder=str(tmp_path)))
    assert seen == ["crash", "fog"] and tok.vectors.tolist() == [[5, 1, 0], [5, 1, 0], [3, 1, 0]]
    t = tok.gather(torch.tensor([[3, 4, 5, 6]]), torch.tensor([[7, 8, 9]]))
    assert t["vectors"].shape == (3, 3) and "ngrams" not in t
    assert ReportEncoder(4, vectors=3)(t, "out").shape == (1, 3, 4, 10)
