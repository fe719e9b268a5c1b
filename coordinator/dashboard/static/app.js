// The pgtrain dashboard. It polls the coordinator's JSON API with the user's bearer token
// and draws everything itself: no library, no inline script (the Content-Security-Policy
// forbids it), and text only ever goes in as text (textContent, never parsed as markup), so
// nothing a job carries (ids, table names, errors) can become HTML.
"use strict";

const TOKEN_KEY = "pgtrain.token";
const POLL_MS = 1000;
// Throughput is measured over this much history, so one late poll does not make it jump.
const RATE_WINDOW_MS = 5000;
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

let selected = "";    // the job shown in detail
let userChose = false; // a click pins the selection; otherwise the newest job is followed
let samples = [];     // {t, trained, read} of the selected job, for the rates
let timer = 0;

// The token comes from the URL fragment (a link `pgtrain up` prints) or the form, and lives
// in sessionStorage: it is gone when the tab closes, and never goes into a URL the server sees.
function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "#" + rest : ""));
  }
  const job = params.get("job");
  if (job) {
    selected = job;
    userChose = true;
  }
}

class AuthError extends Error {}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const resp = await fetch(path, { headers, cache: "no-store" });
  if (resp.status === 401 || resp.status === 403) {
    let msg = resp.status === 401 ? "the token is not valid" : "the token lacks the read scope";
    try { msg = (await resp.json()).error || msg; } catch (e) { /* keep the default */ }
    throw new AuthError(msg);
  }
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    try { msg = (await resp.json()).error || msg; } catch (e) { /* keep the status */ }
    throw new Error(path + ": " + msg);
  }
  return resp.json();
}

function showLogin(message) {
  clearTimeout(timer);
  $("main").hidden = true;
  $("forget").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  $("conn").textContent = "";
  $("token").focus();
}

function showMain() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("forget").hidden = false;
}

// ---- formatting

function fmtInt(n) { return Math.round(n).toLocaleString("en-US"); }

function fmtNum(v) {
  if (v === undefined || v === null || !isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return v.toPrecision(4).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

function fmtBytes(b) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i === 0 ? b : b.toFixed(1)) + " " + units[i];
}

function fmtRate(r) { return r === null ? "–" : fmtInt(r) + " rows/s"; }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function bar(fraction, cls) {
  const inner = el("div");
  inner.style.width = (100 * Math.min(Math.max(fraction, 0), 1)).toFixed(1) + "%";
  return el("div", { class: "bar" + (cls ? " " + cls : "") }, inner);
}

// ---- progress

// trainedRows is how many rows the trainer has read over all epochs: its report counts the
// rows of the epoch it is in.
function trainedRows(job) {
  if (job.state === "done") return job.epochs * job.rows;
  const t = job.trainer || {};
  return (t.epoch || 0) * job.rows + (t.rows || 0);
}

function progress(job) {
  const total = job.epochs * job.rows;
  return total > 0 ? Math.min(trainedRows(job) / total, 1) : 0;
}

function epochText(job) {
  if (!job.epochs) return "–";
  const done = (job.results || []).length;
  const at = job.state === "done" ? job.epochs : Math.min((job.trainer || {}).epoch || 0, job.epochs - 1) + 1;
  return job.state === "running" ? at + " / " + job.epochs : done + " / " + job.epochs;
}

// ---- jobs table

function renderJobs(jobs) {
  const body = $("jobs").tBodies[0];
  body.replaceChildren();
  $("no-jobs").hidden = jobs.length > 0;
  for (const job of jobs.slice().reverse()) {
    const tr = el("tr", { "data-job": job.id },
      el("td", {}, el("code", {}, job.id)),
      el("td", {}, job.table || ""),
      el("td", {}, el("span", { class: "state " + job.state }, job.state)),
      el("td", { class: "num" }, epochText(job)),
      el("td", {}, bar(progress(job), job.state === "failed" ? "full" : "")),
      el("td", {}, new Date(job.created_at).toLocaleString()));
    if (job.id === selected) tr.classList.add("selected");
    tr.addEventListener("click", () => {
      selected = job.id;
      userChose = true;
      samples = [];
      history.replaceState(null, "", location.pathname + "#job=" + encodeURIComponent(job.id));
      refresh();
    });
    body.append(tr);
  }
}

// ---- charts

// drawChart plots series ({name, values: [{epoch, value}], val}) against epochs 1..epochs
// in an SVG: one polyline and one circle per point, each circle tagged with its series and
// epoch so that a reader (or a test) can count them.
function drawChart(svg, epochs, series) {
  const W = 480, H = 240, L = 52, R = 12, T = 12, B = 44;
  svg.replaceChildren();
  const all = series.flatMap((s) => s.values.map((p) => p.value)).filter(isFinite);
  const maxEpoch = Math.max(epochs, 1, ...series.flatMap((s) => s.values.map((p) => p.epoch)));
  let lo = all.length ? Math.min(...all) : 0, hi = all.length ? Math.max(...all) : 1;
  if (hi - lo < 1e-12) { const pad = Math.abs(hi) * 0.1 || 1; lo -= pad; hi += pad; }
  const x = (e) => L + (maxEpoch === 1 ? (W - L - R) / 2 : ((e - 1) / (maxEpoch - 1)) * (W - L - R));
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    svg.append(svgEl("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const t = svgEl("text", { class: "axis", x: L - 6, y: y(v) + 4, "text-anchor": "end" });
    t.textContent = fmtNum(v);
    svg.append(t);
  }
  const step = Math.ceil(maxEpoch / 10);
  for (let e = 1; e <= maxEpoch; e += step) {
    const t = svgEl("text", { class: "axis", x: x(e), y: H - B + 16, "text-anchor": "middle" });
    t.textContent = e;
    svg.append(t);
  }
  let lx = L;
  series.forEach((s, i) => {
    const cls = "c" + (i % 6);
    const g = svgEl("g", { class: (s.val ? "val " : "") + "series", "data-series": s.name });
    const pts = s.values.filter((p) => isFinite(p.value));
    g.append(svgEl("polyline", { class: cls, points: pts.map((p) => x(p.epoch) + "," + y(p.value)).join(" ") }));
    for (const p of pts) {
      const c = svgEl("circle", { class: cls, cx: x(p.epoch), cy: y(p.value), r: 3.5, "data-series": s.name, "data-epoch": p.epoch });
      const title = svgEl("title");
      title.textContent = s.name + ", epoch " + p.epoch + ": " + fmtNum(p.value);
      c.append(title);
      g.append(c);
    }
    svg.append(g);
    const label = svgEl("text", { class: cls, x: lx, y: H - 8 });
    label.textContent = "● " + s.name;
    svg.append(label);
    lx += 14 + 7 * (s.name.length + 2);
  });
}

function curves(job) {
  const results = job.results || [];
  const pick = (f) => results.map((r) => ({ epoch: r.epoch + 1, value: f(r) })).filter((p) => p.value !== undefined && p.value !== null);
  const loss = [{ name: "loss", values: pick((r) => r.loss) }];
  const valLoss = pick((r) => r.val_loss);
  if (valLoss.length) loss.push({ name: "val_loss", val: true, values: valLoss });
  const names = [...new Set(results.flatMap((r) => Object.keys(r.metrics || {})))].sort();
  const metrics = [];
  for (const n of names) {
    metrics.push({ name: n, values: pick((r) => (r.metrics || {})[n]) });
    const v = pick((r) => (r.val_metrics || {})[n]);
    if (v.length) metrics.push({ name: "val_" + n, val: true, values: v });
  }
  return { loss, metrics, names };
}

function renderEpochs(job, names) {
  const head = $("epochs").tHead.rows[0];
  const cols = ["epoch", "loss", "val_loss", ...names.flatMap((n) => [n, "val_" + n]), "seconds", "rows/s"];
  head.replaceChildren(...cols.map((c) => el("th", { class: "num" }, c)));
  const body = $("epochs").tBodies[0];
  body.replaceChildren();
  for (const r of job.results || []) {
    const vals = [r.epoch + 1, fmtNum(r.loss), fmtNum(r.val_loss),
      ...names.flatMap((n) => [fmtNum((r.metrics || {})[n]), fmtNum((r.val_metrics || {})[n])]),
      r.seconds !== undefined ? r.seconds.toFixed(1) : "–", fmtInt(r.rows_per_second || 0)];
    body.append(el("tr", { "data-epoch": r.epoch + 1 }, ...vals.map((v) => el("td", { class: "num" }, String(v)))));
  }
}

// ---- ranges

const RANGE_STATES = ["planned", "leased", "fetched", "trained"];

function renderRanges(rs) {
  $("ranges-epoch").textContent = rs.epoch + 1;
  const counts = Object.fromEntries(RANGE_STATES.map((s) => [s, 0]));
  const strip = $("strip");
  strip.replaceChildren();
  for (const r of rs.ranges) {
    counts[r.state] = (counts[r.state] || 0) + 1;
    const d = el("div", { class: "range " + r.state + (r.validation ? " validation" : ""), "data-range": r.index, "data-state": r.state });
    d.style.flexGrow = Math.max(r.rows, 1);
    let tip = "range " + r.index + (r.validation ? " (validation)" : "") + ": " + r.state;
    if (r.worker) tip += " by " + r.worker;
    tip += ", " + fmtInt(r.rows_read) + " of " + fmtInt(r.rows) + " rows read";
    d.title = tip;
    d.append(el("span", {}, "#" + r.index));
    if (r.worker) d.append(el("span", { class: "worker" }, r.worker));
    strip.append(d);
  }
  $("legend").replaceChildren(...RANGE_STATES.map((s) => el("span", { class: s, "data-count": s }, s + " " + counts[s])),
    el("span", { class: "muted" }, "a dark top edge marks a validation range"));
}

// ---- throughput

function rates(job) {
  const now = performance.now();
  const s = { t: now, trained: trainedRows(job), read: (job.fetch || {}).rows_read || 0 };
  if (samples.length && (s.trained < samples[samples.length - 1].trained || s.read < samples[samples.length - 1].read)) samples = [];
  samples.push(s);
  while (samples.length > 2 && now - samples[0].t > RATE_WINDOW_MS) samples.shift();
  const first = samples[0], dt = (now - first.t) / 1000;
  if (job.state !== "running" || dt < 0.5) return { trained: null, read: null };
  return { trained: (s.trained - first.trained) / dt, read: (s.read - first.read) / dt };
}

// ---- the selected job

function renderJob(job, rs) {
  $("job").hidden = false;
  $("job-id").textContent = job.id;
  const state = $("job-state");
  state.textContent = job.state;
  state.className = "state " + job.state;
  $("job-error").hidden = !job.error;
  $("job-error").textContent = job.error || "";
  $("job-table").textContent = job.table || "";
  $("job-rows").textContent = fmtInt(job.rows || 0) + " in " + (job.ranges || 0) + " ranges" + (job.replay ? ", replayed from READY" : "");
  $("job-epoch").textContent = epochText(job);
  $("job-progress").replaceChildren(bar(progress(job)), (100 * progress(job)).toFixed(1) + "%");
  const r = rates(job);
  const last = (job.results || []).at(-1);
  // Once the job stops, the last epoch's own figure stands in for the live one.
  $("rate-trained").textContent = r.trained === null && last ? fmtRate(last.rows_per_second) + " in the last epoch" : fmtRate(r.trained);
  $("rate-read").textContent = fmtRate(r.read);
  const f = job.fetch || {};
  $("job-leases").textContent = (job.leases || []).length + " held; " + (f.grants || 0) + " granted, " + (f.expired_leases || 0) + " expired, " + (f.resumed_leases || 0) + " resumed";
  $("job-model").textContent = job.model_path || "–";
  const c = curves(job);
  drawChart($("loss-chart"), job.epochs, c.loss);
  $("metric-figure").hidden = c.metrics.length === 0;
  if (c.metrics.length) drawChart($("metric-chart"), job.epochs, c.metrics);
  renderEpochs(job, c.names);
  if (rs) {
    renderRanges(rs);
  } else { // a job without a plan has no ranges to show
    $("ranges-epoch").textContent = "–";
    $("strip").replaceChildren();
    $("legend").replaceChildren();
  }
}

// ---- the bus

function renderBus(bus) {
  const meter = (title, s) => {
    const frac = s.max_bytes > 0 ? s.bytes / s.max_bytes : 0;
    const limit = s.max_bytes > 0 ? fmtBytes(s.max_bytes) : "no limit";
    return el("div", { class: "meter", "data-stream": title },
      el("div", { class: "label" }, el("strong", {}, title + " (" + s.name + ")"),
        el("span", {}, fmtBytes(s.bytes) + " of " + limit + ", " + fmtInt(s.messages) + " pages")),
      bar(frac, frac > 0.9 ? "full" : ""));
  };
  $("bus").replaceChildren(meter("RAW", bus.raw), meter("READY", bus.ready));
  const p = bus.preprocessors;
  $("bus-consumer").textContent = "preprocessors: " + fmtInt(p.pending) + " pages waiting, " + fmtInt(p.ack_pending) +
    " in flight, " + fmtInt(p.redeliveries) + " redelivered";
}

// ---- the loop

async function refresh() {
  clearTimeout(timer);
  try {
    // GET /v1/jobs answers a list; a paged answer carries it under "jobs".
    const listed = await api("/v1/jobs");
    const jobs = Array.isArray(listed) ? listed : listed.jobs || [];
    if (!jobs.some((j) => j.id === selected)) userChose = false;
    if (!userChose) {
      // Follow the newest job in flight, or else the newest job.
      const running = jobs.filter((j) => j.state === "running" || j.state === "planning");
      const id = ((running.length ? running : jobs).at(-1) || {}).id || "";
      if (id !== selected) { selected = id; samples = []; }
    }
    showMain();
    renderJobs(jobs);
    const path = "/v1/jobs/" + encodeURIComponent(selected);
    const [job, rs, bus] = await Promise.all([
      selected ? api(path) : null,
      selected ? api(path + "/ranges").catch(() => null) : null,
      api("/v1/bus"),
    ]);
    if (job) renderJob(job, rs); else $("job").hidden = true;
    renderBus(bus);
    $("conn").textContent = "connected";
    $("conn").className = "conn";
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (e instanceof AuthError) {
      const had = sessionStorage.getItem(TOKEN_KEY);
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(had ? e.message : "");
      return;
    }
    $("conn").textContent = "cannot reach the coordinator: " + e.message;
    $("conn").className = "conn bad";
  }
  timer = setTimeout(refresh, POLL_MS);
}

function init() {
  takeTokenFromFragment();
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    refresh();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  });
  // A link pasted into the same tab changes only the fragment: the page does not reload.
  window.addEventListener("hashchange", () => {
    takeTokenFromFragment();
    refresh();
  });
  // Try even without a token: a coordinator without tokens (loopback) answers anyway, and
  // one with tokens answers 401, which shows the form.
  refresh();
}

document.addEventListener("DOMContentLoaded", init);
