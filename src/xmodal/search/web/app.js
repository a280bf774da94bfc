// The xmodal search page: query box / image upload -> POST /search; a result -> POST /explain,
// drawn as a heat map over the image's region grid and words shaded by their weight. No libraries.
"use strict";

const $ = (id) => document.getElementById(id);
let lastQuery = null; // {text} or {file, url}

// A message box ("error", or "warning": the server's word when the run can hardly read the query,
// whose results are then close to arbitrary), hidden when there is no message.
function showMessage(id, message) {
  const box = $(id);
  box.textContent = message || "";
  box.hidden = !message;
}
const showError = (message) => showMessage("error", message);
const showWarning = (message) => showMessage("warning", message);

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function request(path, fields, file) {
  if (file) {
    const form = new FormData();
    for (const [key, value] of Object.entries(fields)) form.append(key, value);
    form.append("image", file);
    return api(path, { method: "POST", body: form });
  }
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(fields) });
}

async function search(event) {
  event.preventDefault();
  showError("");
  showWarning("");
  const file = $("image").files[0];
  const text = $("text").value;
  const k = Number($("k").value);
  lastQuery = file ? { file, url: URL.createObjectURL(file) } : { text };
  $("results").textContent = "searching...";
  $("explain").hidden = true;
  try {
    const body = await request("/search", file ? { k } : { text, k }, file);
    showWarning(body.warning);
    renderResults(body.hits);
  } catch (error) {
    $("results").textContent = "";
    showError(error.message);
  }
}

function renderResults(hits) {
  const results = $("results");
  results.textContent = "";
  if (!hits.length) results.textContent = "no results";
  for (const hit of hits) {
    const cell = document.createElement("div");
    cell.className = "hit" + (hit.side === "texts" ? " text" : "");
    cell.dataset.id = hit.id;
    if (hit.side === "images") {
      const image = document.createElement("img");
      image.src = `/thumbnails/${encodeURIComponent(hit.id)}`;
      image.alt = hit.meta.caption || hit.id;
      cell.append(image, line(hit.meta.caption || hit.id));
    } else {
      cell.append(line(hit.source || hit.id));
    }
    cell.append(line(`#${hit.rank}  score ${hit.score.toFixed(3)}`, "score"));
    cell.addEventListener("click", () => explain(hit, cell));
    results.append(cell);
  }
}

function line(text, className) {
  const div = document.createElement("div");
  div.textContent = text;
  if (className) div.className = className;
  return div;
}

async function explain(hit, cell) {
  document.querySelectorAll(".hit.selected").forEach((el) => el.classList.remove("selected"));
  cell.classList.add("selected");
  const panel = $("explain"), body = $("explain-body");
  panel.hidden = false;
  body.textContent = "computing...";
  try {
    const fields = lastQuery.file ? { item: hit.id } : { item: hit.id, text: lastQuery.text };
    const result = await request("/explain", fields, lastQuery.file);
    const imageUrl = hit.side === "images" ? `/thumbnails/${encodeURIComponent(hit.id)}` : lastQuery.url;
    renderAttention(result.attention, imageUrl, body);
  } catch (error) {
    body.textContent = "";
    showError(error.message);
  }
}

// -- drawing attention maps -----------------------------------------------------------------------

function flatten(weights) { return Array.isArray(weights) ? weights.flatMap(flatten) : [weights]; }

// Weights of one axis: the map itself when 1-D; for a 2-D map, the row `pick` of the other axis,
// or the mean over it when pick is null.
function along(map, axis, pick) {
  const position = map.axes.indexOf(axis);
  if (map.axes.length === 1) return map.weights.slice();
  const rows = position === 1 ? map.weights : transpose(map.weights);
  if (pick !== null && pick !== undefined) return rows[pick].slice();
  const sums = new Array(rows[0].length).fill(0);
  rows.forEach((row) => row.forEach((value, i) => { sums[i] += value / rows.length; }));
  return sums;
}

function transpose(matrix) { return matrix[0].map((_, i) => matrix.map((row) => row[i])); }

function renderAttention(attention, imageUrl, body) {
  body.textContent = "";
  if (!attention) { body.textContent = "this model's score has no attention to show"; return; }
  for (const [name, map] of Object.entries(attention.maps)) {
    const block = document.createElement("div");
    block.className = "map";
    const title = document.createElement("h3");
    title.textContent = `${name} (${map.axes.join(" x ")})`;
    block.append(title);
    const grid = map.grids.region;
    const words = map.labels.word;
    let redraw = () => {};
    if (grid && imageUrl) {
      const canvas = document.createElement("canvas");
      canvas.className = "heat";
      canvas.width = canvas.height = 256;
      block.append(canvas);
      redraw = (pick) => drawHeat(canvas, imageUrl, along(map, "region", pick), grid);
      redraw(null);
    }
    if (words) {
      const wordWeights = map.axes.length === 1 ? map.weights : along(map, "word", null);
      block.append(wordsView(words, wordWeights, map.axes.length === 2 && grid ? redraw : null));
    }
    if (!grid && !words) {
      // a 1-D map with named positions (conse's ImageNet classes) labels its bars
      const names = map.axes.length === 1 ? map.labels[map.axes[0]] : undefined;
      block.append(bars(flatten(map.weights), names));
    }
    body.append(block);
  }
  if (attention.note) body.append(line(attention.note, "note"));
}

function wordsView(words, weights, onPick) {
  const top = Math.max(...weights, 1e-12);
  const box = document.createElement("div");
  box.className = "words";
  words.forEach((word, i) => {
    const span = document.createElement("span");
    span.textContent = word;
    span.title = `weight ${weights[i].toFixed(4)}`;
    span.style.background = `rgba(220, 40, 40, ${(weights[i] / top).toFixed(3)})`;
    if (onPick) {
      span.style.cursor = "pointer";
      span.addEventListener("click", () => {
        const chosen = span.classList.toggle("chosen");
        box.querySelectorAll("span.chosen").forEach((other) => { if (other !== span) other.classList.remove("chosen"); });
        onPick(chosen ? i : null);
      });
    }
    box.append(span);
  });
  return box;
}

function bars(weights, names) {
  const top = Math.max(...weights, 1e-12);
  const box = document.createElement("div");
  box.className = "bars";
  weights.slice(0, 64).forEach((value, i) => {
    const bar = document.createElement("div");
    bar.style.width = `${Math.round(200 * value / top)}px`;
    bar.title = value.toFixed(4);
    if (names) {
      const row = document.createElement("div");
      row.className = "named";
      row.append(bar, line(`${names[i]} ${value.toFixed(3)}`, "bar-name"));
      box.append(row);
    } else {
      box.append(bar);
    }
  });
  return box;
}

function drawHeat(canvas, imageUrl, weights, grid) {
  const [rows, cols] = grid;
  const image = new Image();
  image.onload = () => {
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.drawImage(image, 0, 0, canvas.width, canvas.height);
    const top = Math.max(...weights, 1e-12);
    const cellW = canvas.width / cols, cellH = canvas.height / rows;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const share = weights[r * cols + c] / top;
        context.fillStyle = `rgba(255, 0, 0, ${(0.65 * share).toFixed(3)})`;
        context.fillRect(c * cellW, r * cellH, cellW, cellH);
      }
    }
    canvas.dataset.drawn = "1";
  };
  image.src = imageUrl;
}

async function start() {
  $("query-form").addEventListener("submit", search);
  try {
    const health = await api("/health");
    const items = Object.entries(health.items).map(([side, n]) => `${n} ${side}`).join(", ");
    $("status").textContent = `${health.model} on ${health.dataset}: ${items}` +
      (health.two_stage ? " (two-stage search)" : "");
  } catch (error) {
    $("status").textContent = "";
    showError(error.message);
  }
}

start();
