// stgraph's forecast page: plain SVG, no library, no network access beyond the server that serves it.
// Live (stgraph serve): reads sensors, model, forecast/latest and explain from the server (a token in the
// address's #token=... is sent as a Bearer token). Embedded (stgraph report): window.STGRAPH_DATA holds the same
// answers, plus the report's figures.
"use strict";
const EMBED = window.STGRAPH_DATA || null;
const TOKEN = (location.hash.match(/token=([^&]+)/) || [])[1];
const AT = (location.hash.match(/at=([^&]+)/) || [])[1];  // #at=2012-03-07T08:00:00: the forecast issued then
const NS = "http://www.w3.org/2000/svg";
const S = { selected: null, top: [] };

async function get(path) {
  if (EMBED) return EMBED[path] === undefined ? null : EMBED[path];
  const headers = TOKEN ? { Authorization: "Bearer " + decodeURIComponent(TOKEN) } : {};
  const r = await fetch(path, { headers });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status + " " + (await r.text()));
  return r.json();
}

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function text(parent, x, y, s, anchor) {
  const t = el("text", { x, y, class: "tick", "text-anchor": anchor || "start" }, parent);
  t.textContent = s;
  return t;
}

function fmt(v) { return v === null || v === undefined ? "-" : Number(v).toFixed(2); }

// colours: a viridis-like ramp for values, blue-white-red for changes
const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function ramp(t) {
  t = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
  const i = Math.min(Math.floor(t), RAMP.length - 2), f = t - i;
  const c = RAMP[i].map((a, k) => Math.round(a + f * (RAMP[i + 1][k] - a)));
  return "rgb(" + c.join(",") + ")";
}
function diverging(t) {  // t in [-1, 1]
  t = Math.max(-1, Math.min(1, t));
  const a = Math.round(255 * (1 - Math.abs(t)));
  return t < 0 ? "rgb(" + a + "," + a + ",255)" : "rgb(255," + a + "," + a + ")";
}

function lastReading(i) {
  const h = S.fc.history || [];
  for (let t = h.length - 1; t >= 0; t--) if (h[t][i][0] !== null) return h[t][i][0];
  return null;
}

function values(mode, h) {
  if (mode === "mae") return S.report.per_sensor;
  const f = S.fc.forecast[h].map(r => r[0]);
  if (mode === "forecast") return f;
  return f.map((v, i) => { const now = lastReading(i); return now === null ? null : v - now; });
}

function colour() {
  const mode = document.getElementById("mode").value, h = +document.getElementById("horizon").value;
  // one scale for every horizon (colours compare across horizons): the range over all of them
  const v = values(mode, h), every = mode === "mae" ? v : S.fc.steps.flatMap((_, k) => values(mode, k));
  const ok = every.filter(x => x !== null && isFinite(x));
  const lo = Math.min(...ok), hi = Math.max(...ok), big = Math.max(...ok.map(Math.abs)) || 1;
  S.circles.forEach((c, i) => {
    const x = v[i];
    const fill = x === null || !isFinite(x) ? "#ccc" : mode === "change" ? diverging(x / big)
      : mode === "mae" ? ramp(1 - (x - lo) / ((hi - lo) || 1)) : ramp((x - lo) / ((hi - lo) || 1));
    c.setAttribute("fill", fill);
    c.querySelector("title").textContent = S.sensors[i].id + ": " + fmt(x);
  });
  const what = mode === "change" ? "change from the last reading" : mode === "mae" ? "test MAE (purple ring: worst)"
    : "forecast";
  const when = mode === "mae" ? "" : " at " + S.fc.steps[h];
  const sw = mode === "change" ? [diverging(-1), diverging(0), diverging(1)] : [ramp(0), ramp(.5), ramp(1)];
  const ends = mode === "change" ? [-big, big] : mode === "mae" ? [hi, lo] : [lo, hi];
  document.getElementById("legend").innerHTML = what + when + ": " + fmt(ends[0]) + " " +
    sw.map(c => '<span class="swatch" style="background:' + c + '"></span>').join("") + " " + fmt(ends[1]);
  if (S.selected !== null) drawSeries(S.selected);
}

function mercator(s) {  // [x, y] in [0, 1): the world's Web Mercator square
  const r = s.lat * Math.PI / 180;
  return [(s.lon + 180) / 360, (1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2];
}

function drawTiles(svg, x0, y0, sc, W, H, pad) {  // only when a tile URL is configured (--tiles)
  const z = Math.max(0, Math.min(19, Math.round(Math.log2(sc / 256)))), n = 2 ** z, size = sc / n;
  const g = el("g", { class: "tiles" }, svg);
  const tx0 = Math.floor((x0 - pad / sc) * n), tx1 = Math.floor((x0 + (W - pad) / sc) * n);
  const ty0 = Math.max(0, Math.floor((y0 - pad / sc) * n)), ty1 = Math.min(n - 1, Math.floor((y0 + (H - pad) / sc) * n));
  for (let tx = tx0; tx <= tx1; tx++) {
    for (let ty = ty0; ty <= ty1; ty++) {
      const href = S.tiles.replace("{z}", z).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
      el("image", { href, x: pad + (tx / n - x0) * sc, y: pad + (ty / n - y0) * sc, width: size, height: size,
                    opacity: 0.6 }, g);
    }
  }
  const host = S.tiles.startsWith("http") ? new URL(S.tiles.replace(/[{}]/g, "")).host : "configured";
  text(svg, W - 4, H - 4, "map tiles: " + host, "end");
}

function drawMap() {
  const svg = document.getElementById("map");
  svg.innerHTML = "";
  const W = 800, H = 560, pad = 20, sensors = S.sensors;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  let pts;
  if (sensors.every(s => s.lat !== null)) {  // Web Mercator, as map tiles are drawn
    const m = sensors.map(mercator), xs = m.map(p => p[0]), ys = m.map(p => p[1]);
    const x0 = Math.min(...xs), y0 = Math.min(...ys);
    const sc = Math.min((W - 2 * pad) / ((Math.max(...xs) - x0) || 1e-6), (H - 2 * pad) / ((Math.max(...ys) - y0) || 1e-6));
    pts = sensors.map((s, i) => [pad + (xs[i] - x0) * sc, pad + (ys[i] - y0) * sc]);
    if (S.tiles) drawTiles(svg, x0, y0, sc, W, H, pad);
  } else {  // no coordinates: a circle
    text(svg, 10, 14, "no sensor coordinates known: sensors on a circle (pass --locations)");
    pts = sensors.map((s, i) => [W / 2 + 240 * Math.cos(2 * Math.PI * i / sensors.length),
                                 H / 2 + 240 * Math.sin(2 * Math.PI * i / sensors.length)]);
  }
  const edges = el("g", {}, svg);
  for (const [a, b] of S.edges) {
    el("line", { x1: pts[a][0], y1: pts[a][1], x2: pts[b][0], y2: pts[b][1], class: "edge" }, edges);
  }
  const dots = el("g", {}, svg);
  S.circles = sensors.map((s, i) => {
    const c = el("circle", { cx: pts[i][0], cy: pts[i][1], r: sensors.length > 60 ? 4.5 : 6, class: "sensor",
                             "data-id": s.id }, dots);
    el("title", {}, c);
    if (s.drift) c.classList.add("drift");
    c.addEventListener("click", () => select(i));
    return c;
  });
  if (S.report) S.report.worst.forEach(id => S.circles[S.index[id]].classList.add("worst"));
}

function drawSeries(i) {
  const svg = document.getElementById("series");
  svg.innerHTML = "";
  const W = 520, H = 260, L = 44, R = 10, T = 10, B = 28;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  const hist = (S.fc.history || []).map(r => r[i][0]);
  const fc = S.fc.forecast.map(r => r[i][0]);
  const lo = S.fc.q05 ? S.fc.q05.map(r => r[i][0]) : null, hi = S.fc.q95 ? S.fc.q95.map(r => r[i][0]) : null;
  const truth = (S.fc.truth || []).map(r => r[i][0]);
  const n = hist.length + fc.length;
  const all = hist.concat(fc, lo || [], hi || [], truth).filter(v => v !== null && isFinite(v));
  const y0 = Math.min(...all), y1 = Math.max(...all), span = (y1 - y0) || 1;
  const X = t => L + (W - L - R) * t / Math.max(1, n - 1), Y = v => T + (H - T - B) * (1 - (v - y0) / span);
  el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }, svg);
  el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, svg);
  text(svg, L - 4, Y(y1) + 4, fmt(y1), "end");
  text(svg, L - 4, Y(y0), fmt(y0), "end");
  const path = pts => pts.filter(p => p[1] !== null).map((p, k) => (k ? "L" : "M") + X(p[0]) + " " + Y(p[1])).join(" ");
  const h0 = hist.length;
  if (lo) {
    const up = hi.map((v, t) => X(h0 + t) + " " + Y(v)), down = lo.map((v, t) => X(h0 + t) + " " + Y(v)).reverse();
    el("path", { d: "M" + up.join(" L") + " L" + down.join(" L") + " Z", class: "band", id: "fc-band" }, svg);
  }
  el("path", { d: path(hist.map((v, t) => [t, v])), class: "history", id: "history-line" }, svg);
  const start = h0 ? [[h0 - 1, hist[h0 - 1]]] : [];
  el("path", { d: path(start.concat(fc.map((v, t) => [h0 + t, v]))), class: "forecast", id: "fc-line" }, svg);
  if (truth.some(v => v !== null)) {
    el("path", { d: path(truth.map((v, t) => [h0 + t, v])), class: "truth", id: "truth-line" }, svg);
  }
  const h = +document.getElementById("horizon").value;
  el("line", { x1: X(h0 + h), y1: T, x2: X(h0 + h), y2: H - B, class: "axis", "stroke-dasharray": "3 3" }, svg);
  const stamps = (S.fc.history_steps || []).concat(S.fc.steps);
  [0, h0 - 1, n - 1].filter(t => t >= 0).forEach(t => text(svg, X(t), H - 8, stamps[t].slice(5, 16).replace("T", " "),
                                                           t === 0 ? "start" : t === n - 1 ? "end" : "middle"));
  document.getElementById("series-legend").innerHTML = "black: readings, blue: forecast" + (lo ? " with its 90% band" : "") +
    (truth.some(v => v !== null) ? ", green dashed: what was then read" : "") + "; dashed line: the map's horizon";
}

async function select(i) {
  S.selected = i;
  S.circles.forEach(c => c.classList.remove("selected", "top"));
  S.circles[i].classList.add("selected");
  S.circles[i].parentNode.appendChild(S.circles[i]);  // drawn on top of its neighbours
  const id = S.sensors[i].id;
  document.getElementById("sensor-title").textContent = "sensor " + id;
  drawSeries(i);
  const why = document.getElementById("why");
  const h = +document.getElementById("horizon").value + 1;
  let top = [], how = "";
  try {
    if (EMBED) {
      top = (EMBED.attention || {})[id] || [];
      how = "spatial attention into it";
    } else {
      const ex = await get("explain?sensor=" + encodeURIComponent(id) + "&step=" + h + "&alphas=16" +
                           (AT ? "&at=" + AT : ""));
      top = (ex.spatial || []).filter(r => r.sensor !== id).slice(0, 5);
      how = "spatial attention into it";
      if (!top.length) {  // no attention, or no other sensor feeds this one in the graph
        const tot = ex.sensors.map((s, j) => [s, ex.attribution.reduce((a, row) => a + Math.abs(row[j]), 0)]);
        top = tot.filter(r => r[0] !== id).sort((a, b) => b[1] - a[1]).slice(0, 5).map(r => ({ sensor: r[0], weight: r[1] }));
        how = "integrated gradients (|attribution| summed over the input steps)";
      }
    }
  } catch (e) { console.warn(e); }
  if (S.selected !== i) return;
  top.forEach(r => { if (r.sensor in S.index) S.circles[S.index[r.sensor]].classList.add("top"); });
  why.innerHTML = top.length ? "<h2>weighed most (" + how + ")</h2><table>" +
    top.map(r => "<tr><td>" + r.sensor + "</td><td>" + Number(r.weight).toFixed(3) + "</td></tr>").join("") + "</table>" : "";
}

function drawBars(svgId, labels, vals, title) {
  const svg = document.getElementById(svgId);
  svg.innerHTML = "";
  const W = 520, H = 150, L = 40, B = 22, T = 14, top = Math.max(...vals.filter(isFinite)) || 1;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  const w = (W - L) / vals.length;
  vals.forEach((v, k) => {
    const h = isFinite(v) ? (H - B - T) * v / top : 0;
    const r = el("rect", { x: L + k * w + 1, y: H - B - h, width: Math.max(1, w - 2), height: h, class: "bar" }, svg);
    el("title", {}, r).textContent = labels[k] + ": " + fmt(v);
    if (vals.length <= 24 || k % Math.ceil(vals.length / 12) === 0) text(svg, L + k * w + w / 2, H - 8, labels[k], "middle");
  });
  text(svg, L - 4, T + 4, fmt(top), "end");
  if (title) text(svg, L, 10, title);
}

function drawReport() {
  const r = S.report, box = document.getElementById("extra");
  document.querySelector("#map-panel .note").insertAdjacentHTML("beforeend",
    " Ringed in purple: the " + r.worst.length + " sensors of largest test MAE.");
  box.innerHTML = "<h2>test MAE by time of day (last horizon step)</h2>" +
    '<svg id="tod" class="small" role="img" aria-label="error by time of day"></svg>' +
    "<h2>worst sensors (test MAE)</h2><table><tr><th>sensor</th><th>MAE</th></tr>" +
    r.worst.map(id => "<tr><td>" + id + "</td><td>" + fmt(r.per_sensor[S.index[id]]) + "</td></tr>").join("") +
    "</table>";
  drawBars("tod", r.tod.labels, r.tod.mae);
  const opt = document.createElement("option");
  opt.value = "mae"; opt.textContent = "test MAE per sensor";
  document.getElementById("mode").appendChild(opt);
}

async function main() {
  const [sensors, model, fc] = await Promise.all([get("sensors"), get("model"),
                                                  get("forecast/latest" + (AT && !EMBED ? "?at=" + AT : ""))]);
  S.sensors = sensors.sensors; S.edges = sensors.edges; S.tiles = sensors.tiles || null; S.fc = fc; S.report = EMBED ? EMBED.report : null;
  S.index = Object.fromEntries(S.sensors.map((s, i) => [s.id, i]));
  document.getElementById("title").textContent = "stgraph forecast: " + model.model;
  document.getElementById("facts").textContent = S.sensors.length + " sensors, " + model.input_len +
    " steps in, " + model.horizon + " out, every " + model.interval + (model.probabilistic ? ", probabilistic" : "") +
    (model.trained_at ? ", trained " + model.trained_at.slice(0, 10) : "");
  document.getElementById("issued").textContent = "issued at " + fc.issued_at;
  const sel = document.getElementById("horizon");
  fc.steps.forEach((s, h) => {
    const o = document.createElement("option");
    o.value = h; o.textContent = (h + 1) + " (" + s.slice(11, 16) + ")";
    sel.appendChild(o);
  });
  sel.value = Math.min(2, fc.steps.length - 1);
  const hs = Object.keys(model.test_mae || {});
  drawBars("mae", hs, hs.map(h => model.test_mae[h]));
  const flagged = S.sensors.filter(s => s.drift).map(s => s.id);
  document.getElementById("drift").innerHTML = flagged.length ? "<h2>drift flags</h2>" + flagged.join(", ") : "";
  if (S.report) drawReport();
  drawMap();
  colour();
  sel.addEventListener("change", colour);
  document.getElementById("mode").addEventListener("change", colour);
  document.body.dataset.ready = "1";
}

main().catch(e => {
  document.getElementById("sensor-title").textContent = "could not load: " + e.message;
  console.error(e);
});
