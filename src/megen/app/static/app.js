// megen app: the page's script. Plain JS, no libraries; plots are SVG drawn here.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7b83", "#6e7781",
  "#fb8f44", "#54aeff", "#4ac26b", "#c297ff"];
const LINK_COLORS = { uplink: "#1f6feb", downlink: "#d1242f", backhaul: "#9a6700" };
const LINKS = ["uplink", "downlink", "backhaul"];
const state = { options: null, upload: null, uploadName: "", seq: 0, series: null, timer: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text = "") {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== "") node.textContent = text;
  return node;
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("hidden", !text);
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error("the server does not answer (" + err.message + ")");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    throw new Error((body && body.error) || ("the server answered " + response.status));
  }
  return body;
}

// ------------------------------------------------------------------------------------------- Generate
function fillSelect(select, values, chosen) {
  select.replaceChildren(...values.map((v) => {
    const option = el("option", { value: String(v.value ?? v) }, String(v.label ?? v));
    return option;
  }));
  if (chosen !== undefined && chosen !== null) select.value = String(chosen);
}

function buildForm(opts) {
  $("model").textContent = "model: " + opts.model;
  fillSelect($("protocol"), opts.protocols, opts.default_protocol);
  const refs = [{ value: "", label: "none (text to image)" }].concat(
    opts.references.map((r) => ({ value: r.index, label: "#" + r.index + ": " + r.prompt })));
  fillSelect($("reference"), refs, opts.references.length ? opts.references[0].index : "");
  $("prompt").value = opts.references.length ? opts.references[0].prompt : "a photo of a sneaker";
  $("prompt").maxLength = opts.max_prompt_chars;
  const snr = $("snr");
  snr.min = opts.snr_db.min;
  snr.max = opts.snr_db.max;
  snr.value = opts.snr_db.default;
  $("snr-value").textContent = snr.value;
  $("steps").value = opts.steps;
  fillSelect($("channel"), opts.choices.channel.values, opts.choices.channel.default);
  const box = $("choice-fields");
  box.replaceChildren();
  for (const [name, choice] of Object.entries(opts.choices)) {
    if (name === "channel") continue;
    const select = el("select", { id: name, "data-path": choice.path });
    fillSelect(select, choice.values, choice.default);
    const label = el("label", {}, name.replace("_", " ") + " ");
    label.appendChild(select);
    box.appendChild(label);
    select.addEventListener("change", () => schedule(0));
  }
  if (opts.db) $("db").value = opts.db;
  applyQuery(new URLSearchParams(window.location.search));
  showReference();
}

// Form values from the address (?snr_db=20&steps=5&protocol=EIUG&reference=): shareable settings.
function applyQuery(params) {
  const ids = { prompt: "prompt", protocol: "protocol", channel: "channel", snr_db: "snr", steps: "steps",
    reference: "reference" };
  for (const name of Object.keys(state.options.choices)) ids[name] = name;
  for (const [name, id] of Object.entries(ids)) {
    if (params.has(name)) $(id).value = params.get(name);
  }
  $("snr-value").textContent = $("snr").value;
}

function showReference() {
  const value = $("reference").value;
  const thumb = $("ref-thumb");
  if (state.upload) {
    thumb.src = state.upload;
    thumb.classList.remove("hidden");
  } else if (value === "") {
    thumb.removeAttribute("src");
    thumb.classList.add("hidden");
  } else {
    thumb.src = "/api/reference/" + value + ".png";
    thumb.classList.remove("hidden");
  }
}

function formData() {
  const opts = state.options;
  const form = {
    prompt: $("prompt").value,
    protocol: $("protocol").value,
    channel: $("channel").value,
    snr_db: Number($("snr").value),
    steps: Number($("steps").value),
  };
  for (const name of Object.keys(opts.choices)) {
    if (name !== "channel") form[name] = $(name).value;
  }
  if (state.upload) form.upload = state.upload;
  else if ($("reference").value !== "") form.reference = Number($("reference").value);
  return form;
}

function schedule(delayMs) {
  clearTimeout(state.timer);
  state.timer = setTimeout(generate, delayMs);
}

async function generate() {
  const seq = ++state.seq;
  const prompt = $("prompt").value;
  if (!prompt.trim()) {
    showMessage("the prompt is empty; give a prompt such as 'a photo of a sneaker'");
    document.body.dataset.done = String(seq);
    return;
  }
  $("busy").classList.remove("hidden");
  document.body.dataset.busy = "1";
  try {
    const result = await api("/api/generate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(formData()),
    });
    if (seq !== state.seq) return;
    showMessage("");
    showResult(result);
  } catch (err) {
    if (seq !== state.seq) return;
    showMessage(err.message);
    if (state.upload) clearUpload();
  } finally {
    if (seq === state.seq) {
      $("busy").classList.add("hidden");
      document.body.dataset.busy = "";
      document.body.dataset.done = String(seq);
    }
  }
}

function showResult(result) {
  const s = result.summary;
  const b = result.baseline;
  $("img-error-free").src = result.images.error_free;
  $("img-received").src = result.images.received;
  $("img-baseline").src = result.images.baseline;
  $("received-caption").textContent = s.protocol + ": arrives at " + result.plan.result_node;
  $("baseline-caption").textContent = b.protocol + " at the same SNR";
  $("col-protocol").textContent = s.protocol;
  $("col-baseline").textContent = b.protocol;
  drawPlan(result.plan);
  fillNumbers(s, b);
  drawBars(s, b);
  $("timing").textContent = "answered in " + result.seconds.toFixed(2) + " s";
}

function fmt(value, scale, digits) {
  if (value === null || value === undefined) return "n/a";
  return (value * scale).toFixed(digits);
}

function numberRows(s, b) {
  const rows = LINKS.map((link) => ["uses-" + link, "channel uses, " + link, s.channel_uses[link],
    b.channel_uses[link], 1, 0]);
  rows.push(["uses-total", "channel uses, total", s.channel_uses.total, b.channel_uses.total, 1, 0]);
  rows.push(["latency", "latency (ms)", s.latency_s, b.latency_s, 1e3, 3]);
  rows.push(["energy", "energy (mJ)", s.energy_j, b.energy_j, 1e3, 3]);
  rows.push(["psnr", "PSNR vs error-free (dB)", s.quality.psnr_fidelity_db, b.quality.psnr_fidelity_db, 1, 2]);
  rows.push(["failures", "failed code blocks", s.link_failures, b.link_failures, 1, 0]);
  return rows;
}

function fillNumbers(s, b) {
  const body = $("numbers-body");
  body.replaceChildren();
  for (const [key, label, sv, bv, scale, digits] of numberRows(s, b)) {
    const tr = el("tr");
    tr.appendChild(el("th", {}, label));
    for (const [which, v] of [["protocol", sv], ["baseline", bv]]) {
      const td = el("td", { id: which + "-" + key, "data-value": JSON.stringify(v) }, fmt(v, scale, digits));
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function barChart(title, unit, bars) {
  const width = 300;
  const rowH = 18;
  const labelW = 110;
  const svg = el("svg:svg", { width: width, height: 22 + rowH * bars.length, class: "barchart" });
  svg.appendChild(el("svg:text", { x: 0, y: 12, class: "title" }, title));
  const max = Math.max(...bars.map((d) => d.value || 0), 1e-30);
  bars.forEach((d, i) => {
    const y = 18 + i * rowH;
    const w = Math.max(1, ((width - labelW - 70) * (d.value || 0)) / max);
    svg.appendChild(el("svg:text", { x: 0, y: y + 12, class: "label" }, d.label));
    const rect = el("svg:rect", { x: labelW, y: y + 2, width: w, height: rowH - 5, fill: d.color });
    rect.appendChild(el("svg:title", {}, d.label + ": " + d.text + " " + unit));
    svg.appendChild(rect);
    svg.appendChild(el("svg:text", { x: labelW + w + 4, y: y + 12, class: "value" }, d.text));
  });
  return svg;
}

function drawBars(s, b) {
  const box = $("bars");
  box.replaceChildren();
  const uses = [];
  for (const link of LINKS) {
    if (!s.channel_uses[link] && !b.channel_uses[link]) continue;
    uses.push({ label: s.protocol + " " + link.slice(0, 2).toUpperCase(), value: s.channel_uses[link],
      text: String(s.channel_uses[link]), color: LINK_COLORS[link] });
    uses.push({ label: b.protocol + " " + link.slice(0, 2).toUpperCase(), value: b.channel_uses[link],
      text: String(b.channel_uses[link]), color: LINK_COLORS[link] + "88" });
  }
  box.appendChild(barChart("channel uses per link", "uses", uses));
  const pair = (key, scale, digits) => [
    { label: s.protocol, value: s[key], text: fmt(s[key], scale, digits), color: COLORS[0] },
    { label: b.protocol, value: b[key], text: fmt(b[key], scale, digits), color: COLORS[7] },
  ];
  box.appendChild(barChart("latency (ms)", "ms", pair("latency_s", 1e3, 3)));
  box.appendChild(barChart("energy (mJ)", "mJ", pair("energy_j", 1e3, 3)));
}

function drawPlan(plan) {
  const svg = $("plan");
  svg.replaceChildren();
  $("plan-desc").textContent = plan.protocol + ": " + plan.description;
  const colW = 170;
  const boxTop = 6;
  const maxStages = Math.max(...plan.nodes.map((n) => n.stages.length), 1);
  const boxH = 24 + 15 * maxStages;
  const rowH = 22;
  const height = boxTop + boxH + 20 + rowH * plan.transfers.length + 10;
  svg.setAttribute("viewBox", "0 0 " + colW * plan.nodes.length + " " + height);
  svg.setAttribute("width", colW * plan.nodes.length);
  svg.setAttribute("height", height);
  const defs = el("svg:defs");
  for (const [link, color] of Object.entries(LINK_COLORS)) {
    const marker = el("svg:marker", { id: "arrow-" + link, viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.appendChild(el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: color }));
    defs.appendChild(marker);
  }
  svg.appendChild(defs);
  const x = {};
  plan.nodes.forEach((n, i) => {
    const cx = i * colW + colW / 2;
    x[n.node] = cx;
    const g = el("svg:g", { class: "node" + (n.node === plan.result_node ? " result" : "") });
    g.appendChild(el("svg:rect", { x: cx - colW / 2 + 8, y: boxTop, width: colW - 16, height: boxH, rx: 6 }));
    g.appendChild(el("svg:text", { x: cx, y: boxTop + 16, class: "node-name" }, n.node));
    n.stages.forEach((st, j) => g.appendChild(el("svg:text", { x: cx, y: boxTop + 32 + 15 * j, class: "stage" }, st)));
    g.appendChild(el("svg:line", { x1: cx, y1: boxTop + boxH, x2: cx, y2: height, class: "lifeline" }));
    svg.appendChild(g);
  });
  plan.transfers.forEach((t, k) => {
    const y = boxTop + boxH + 24 + rowH * k;
    const color = LINK_COLORS[t.link];
    const dir = x[t.dst] > x[t.src] ? 1 : -1;
    svg.appendChild(el("svg:line", { x1: x[t.src], y1: y, x2: x[t.dst] - dir * 3, y2: y, stroke: color,
      "stroke-width": 2, "stroke-dasharray": t.mode === "analog" ? "5,3" : "", "marker-end": "url(#arrow-" + t.link + ")" }));
    const label = el("svg:text", { x: (x[t.src] + x[t.dst]) / 2, y: y - 4, class: "transfer", fill: color },
      t.item + " (" + t.mode + ", " + t.link + ")");
    label.appendChild(el("svg:title", {}, t.text));
    svg.appendChild(label);
  });
}

function readUpload(file) {
  if (!file) return;
  const limit = state.options.max_upload_bytes;
  if (file.size > limit) {
    rejectUpload("the file " + file.name + " is too large (at most " + Math.round(limit / 1048576) + " MiB)");
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    const url = String(reader.result);
    const probe = new Image();
    probe.onload = () => {
      const pixels = probe.naturalWidth * probe.naturalHeight;
      if (pixels > state.options.max_upload_pixels) {
        rejectUpload("the image " + file.name + " is too large (" + probe.naturalWidth + "x" +
          probe.naturalHeight + " pixels; at most " + state.options.max_upload_pixels + " pixels)");
        return;
      }
      state.upload = url;
      state.uploadName = file.name;
      $("upload-name").textContent = file.name;
      showReference();
      schedule(0);
    };
    probe.onerror = () => rejectUpload("cannot read the file " + file.name + ": it is not an image (PNG, JPEG, WebP ...)");
    probe.src = url;
  };
  reader.onerror = () => rejectUpload("cannot read the file " + file.name);
  reader.readAsDataURL(file);
}

function rejectUpload(text) {
  clearUpload();
  showMessage(text);
}

function clearUpload() {
  state.upload = null;
  state.uploadName = "";
  $("upload").value = "";
  $("upload-name").textContent = "";
  showReference();
}

// -------------------------------------------------------------------------------------------- Explore
function dbParam() {
  const db = $("db").value.trim();
  return db ? "db=" + encodeURIComponent(db) : "";
}

async function openDb() {
  try {
    const opts = await api("/api/explore/options?" + dbParam());
    const metrics = opts.metrics.concat(opts.costs);
    fillSelect($("metric"), metrics, opts.metrics.includes("psnr_fidelity_db") ? "psnr_fidelity_db" : metrics[0]);
    fillSelect($("xaxis"), opts.x_axes, opts.x_axes.includes("snr_db") ? "snr_db" : opts.x_axes[0]);
    fillSelect($("channel-filter"), [{ value: "", label: "all" }].concat(opts.channels), "");
    const box = $("protocols");
    box.replaceChildren();
    for (const p of opts.protocols) {
      const label = el("label", { class: "check" });
      const box1 = el("input", { type: "checkbox", value: p });
      box1.checked = true;
      box1.addEventListener("change", plotSeries);
      label.appendChild(box1);
      label.appendChild(document.createTextNode(" " + p));
      box.appendChild(label);
    }
    $("explore-info").textContent = opts.rows + " rows in " + opts.db + "; click a point to see its images.";
    showMessage("");
    await plotSeries();
  } catch (err) {
    showMessage(err.message);
  }
}

async function plotSeries() {
  const chosen = [...document.querySelectorAll("#protocols input:checked")].map((c) => c.value);
  const query = [dbParam(), "metric=" + encodeURIComponent($("metric").value),
    "x=" + encodeURIComponent($("xaxis").value), "protocols=" + encodeURIComponent(chosen.join(",")),
    "channel=" + encodeURIComponent($("channel-filter").value)].filter(Boolean).join("&");
  try {
    if (!chosen.length) throw new Error("pick at least one protocol");
    state.series = await api("/api/explore/series?" + query);
    showMessage("");
    drawPlot(state.series);
  } catch (err) {
    showMessage(err.message);
  }
}

function ticks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function drawPlot(data) {
  const svg = $("plot");
  svg.replaceChildren();
  const W = 760, H = 420, L = 70, R = 230, T = 20, B = 50;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  const pts = data.series.flatMap((s) => s.points.filter((p) => p.y !== null));
  if (!pts.length) {
    svg.appendChild(el("svg:text", { x: W / 2, y: H / 2, class: "empty" }, "no values for this choice"));
    return;
  }
  let [x0, x1] = [Math.min(...pts.map((p) => p.x)), Math.max(...pts.map((p) => p.x))];
  let [y0, y1] = [Math.min(...pts.map((p) => p.y)), Math.max(...pts.map((p) => p.y))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 + 1; y1 += Math.abs(y1) * 0.1 + 1; }
  const sx = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const sy = (v) => H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
  const axes = el("svg:g", { class: "axes" });
  axes.appendChild(el("svg:line", { x1: L, y1: H - B, x2: W - R, y2: H - B }));
  axes.appendChild(el("svg:line", { x1: L, y1: T, x2: L, y2: H - B }));
  for (const v of ticks(x0, x1, 6)) {
    axes.appendChild(el("svg:line", { x1: sx(v), y1: H - B, x2: sx(v), y2: H - B + 4 }));
    axes.appendChild(el("svg:text", { x: sx(v), y: H - B + 16, class: "tick-x" }, String(v)));
  }
  for (const v of ticks(y0, y1, 5)) {
    axes.appendChild(el("svg:line", { x1: L - 4, y1: sy(v), x2: L, y2: sy(v) }));
    axes.appendChild(el("svg:line", { x1: L, y1: sy(v), x2: W - R, y2: sy(v), class: "grid" }));
    axes.appendChild(el("svg:text", { x: L - 6, y: sy(v) + 4, class: "tick-y" }, String(v)));
  }
  axes.appendChild(el("svg:text", { x: (L + W - R) / 2, y: H - 10, class: "axis-label" }, data.x));
  axes.appendChild(el("svg:text", { x: 14, y: (T + H - B) / 2, class: "axis-label",
    transform: "rotate(-90 14 " + (T + H - B) / 2 + ")" }, data.metric));
  svg.appendChild(axes);
  data.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const valid = s.points.filter((p) => p.y !== null);
    const d = valid.map((p, k) => (k ? "L" : "M") + sx(p.x).toFixed(1) + "," + sy(p.y).toFixed(1)).join(" ");
    svg.appendChild(el("svg:path", { d: d, stroke: color, fill: "none", "stroke-width": 2 }));
    for (const p of valid) {
      const c = el("svg:circle", { cx: sx(p.x), cy: sy(p.y), r: 5, fill: color, class: "point",
        "data-series": s.label, "data-x": p.x, "data-y": p.y });
      c.appendChild(el("svg:title", {}, s.label + ": " + data.x + "=" + p.x + ", " + data.metric + "=" +
        p.y.toPrecision(4) + " (n=" + p.n + ")"));
      c.addEventListener("click", () => showPoint(s, p));
      svg.appendChild(c);
    }
    const ly = T + 14 + 18 * i;
    svg.appendChild(el("svg:rect", { x: W - R + 12, y: ly - 9, width: 12, height: 10, fill: color }));
    svg.appendChild(el("svg:text", { x: W - R + 30, y: ly, class: "legend" }, s.label));
  });
}

async function showPoint(series, point) {
  const title = series.label + " at " + state.series.x + " = " + point.x + ": " + state.series.metric +
    " = " + point.y.toPrecision(4) + " (n = " + point.n + ")";
  $("point-title").textContent = title;
  try {
    const data = await api("/api/explore/images?" + [dbParam(),
      "hashes=" + encodeURIComponent(point.config_hashes.join(","))].filter(Boolean).join("&"));
    const box = $("point-images");
    box.replaceChildren(...data.images.map((im) => {
      const fig = el("figure");
      fig.appendChild(el("img", { src: im.png, alt: im.prompt, title: im.prompt }));
      fig.appendChild(el("figcaption", {}, "#" + im.sample + " " + im.prompt));
      return fig;
    }));
    showMessage("");
  } catch (err) {
    showMessage(err.message);
  }
}

// ----------------------------------------------------------------------------------------------- start
function switchTab(button) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.classList.toggle("active", tab === button);
    $(tab.dataset.panel).classList.toggle("hidden", tab !== button);
  }
  if (button.id === "tab-explore" && $("db").value && !state.series) openDb();
}

async function start() {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => switchTab(tab));
  try {
    state.options = await api("/api/options");
  } catch (err) {
    showMessage(err.message);
    return;
  }
  buildForm(state.options);
  $("form").addEventListener("submit", (ev) => { ev.preventDefault(); schedule(0); });
  $("snr").addEventListener("input", () => { $("snr-value").textContent = $("snr").value; });
  $("snr").addEventListener("change", () => { $("snr-value").textContent = $("snr").value; schedule(0); });
  for (const id of ["protocol", "channel", "steps", "prompt"]) $(id).addEventListener("change", () => schedule(0));
  $("reference").addEventListener("change", () => {
    clearUpload();
    const ref = state.options.references.find((r) => String(r.index) === $("reference").value);
    if (ref) $("prompt").value = ref.prompt;
    showReference();
    schedule(0);
  });
  $("upload").addEventListener("change", () => readUpload($("upload").files[0]));
  $("db-open").addEventListener("click", openDb);
  for (const id of ["metric", "xaxis", "channel-filter"]) $(id).addEventListener("change", plotSeries);
  document.body.dataset.ready = "1";
  schedule(0);
}

start();
