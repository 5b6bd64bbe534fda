// Review UI: list logged predictions, confirm or fix their labels, mostly from the keyboard.
"use strict";

const state = { config: null, items: [], cursor: 0, offset: 0, selected: new Set() };
const $ = (sel) => document.querySelector(sel);

function filterQuery() {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData($("#filters"))) {
    if (value !== "") params.set(key, value);
  }
  params.set("limit", state.config.page_size);
  params.set("offset", state.offset);
  return params;
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options,
    headers: { "Content-Type": "application/json", ...(options.headers || {}) } });
  if (response.status === 401 || response.status === 403) {
    window.location.href = "/login";
    throw new Error("not logged in");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function say(message, isError = false) {
  const el = $("#status");
  el.textContent = message;
  el.className = isError ? "error" : "";
}

function showCounts(filtered, all) {
  $("#count-reviewed").textContent = filtered.reviewed;
  $("#count-unreviewed").textContent = filtered.unreviewed;
  $("#count-fixed").textContent = filtered.fixed;
  $("#count-total").textContent = filtered.total;
  $("#count-all-reviewed").textContent = all.reviewed;
  $("#count-all-total").textContent = all.total;
}

async function refreshCounts() {
  const body = await api(`/api/counts?${filterQuery()}`);
  showCounts(body.counts, body.all);
}

async function load() {
  try {
    const body = await api(`/api/items?${filterQuery()}`);
    state.items = body.items;
    state.cursor = Math.min(state.cursor, Math.max(body.items.length - 1, 0));
    state.selected.clear();
    $("#select-all").checked = false;
    showCounts(body.counts, body.all);
    render();
    const first = body.items.length ? state.offset + 1 : 0;
    $("#page").textContent = `${first}–${state.offset + body.items.length}`;
    say("");
  } catch (err) {
    say(err.message, true);
  }
}

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function reviewText(review) {
  if (!review) return "—";
  const mark = review.action === "fixed" ? `✎ fixed → ${review.label}` : "✓ confirmed";
  return `${mark} (${review.reviewer})`;
}

function row(item, index) {
  const tr = document.createElement("tr");
  tr.dataset.id = item.id;
  tr.dataset.index = index;
  if (index === state.cursor) tr.classList.add("current");
  if (item.review) tr.classList.add(item.review.action);
  const box = document.createElement("input");
  box.type = "checkbox";
  box.className = "pick";
  box.checked = state.selected.has(item.id);
  box.addEventListener("change", () => toggle(item.id, box.checked));
  const pick = document.createElement("td");
  pick.append(box);
  const score = cell(item.score.toFixed(3), "score");
  score.style.setProperty("--score", item.score);
  const disagree = item.shadow_label && item.shadow_label !== item.label;
  const text = item.text === null
    ? `(text not logged; sha256 ${item.text_sha256.slice(0, 12)}…)` : item.text;
  tr.append(pick, cell(item.label, `label label-${state.config.labels.indexOf(item.label)}`),
    score, cell(item.shadow_label || "—", disagree ? "shadow disagree" : "shadow"),
    cell(text, item.text === null ? "text hashed" : "text"), cell(reviewText(item.review), "review"),
    cell(`${item.model_version} · ${item.created_at.slice(0, 19).replace("T", " ")}`, "meta"));
  tr.addEventListener("click", (event) => {
    if (event.target.tagName !== "INPUT") moveTo(index);
  });
  return tr;
}

function render() {
  const body = $("#items tbody");
  body.replaceChildren(...state.items.map(row));
  $("#empty").hidden = state.items.length > 0;
}

function moveTo(index) {
  if (!state.items.length) return;
  state.cursor = Math.max(0, Math.min(index, state.items.length - 1));
  document.querySelectorAll("#items tbody tr").forEach((tr) => {
    tr.classList.toggle("current", Number(tr.dataset.index) === state.cursor);
  });
  const current = document.querySelector("#items tbody tr.current");
  if (current) current.scrollIntoView({ block: "nearest" });
}

function toggle(id, on) {
  if (on) state.selected.add(id); else state.selected.delete(id);
  const tr = document.querySelector(`#items tbody tr[data-id="${id}"]`);
  if (tr) tr.querySelector("input.pick").checked = on;
}

async function save(pairs) {
  if (!pairs.length) return;
  try {
    const body = await api("/api/corrections", { method: "POST",
      body: JSON.stringify({ items: pairs.map(([item, label]) => ({ id: item.id, label })) }) });
    for (const [item, label] of pairs) {
      item.review = { label, reviewer: body.reviewer,
        action: label === item.label ? "confirmed" : "fixed" };
    }
    render();
    await refreshCounts();
    say(`saved ${body.saved} review(s)`);
  } catch (err) {
    say(err.message, true);
  }
}

async function undo(items) {
  if (!items.length) return;
  try {
    await api("/api/corrections/undo", { method: "POST",
      body: JSON.stringify({ ids: items.map((item) => item.id) }) });
    for (const item of items) item.review = null;
    render();
    await refreshCounts();
    say(`undid ${items.length} review(s)`);
  } catch (err) {
    say(err.message, true);
  }
}

function current() {
  return state.items[state.cursor];
}

function selectedItems() {
  return state.items.filter((item) => state.selected.has(item.id));
}

async function labelCurrent(label) {
  const item = current();
  if (!item) return;
  await save([[item, label ?? item.label]]);
  moveTo(state.cursor + 1);
}

function page(step) {
  const next = state.offset + step * state.config.page_size;
  if (next < 0 || (step > 0 && state.items.length < state.config.page_size)) return;
  state.offset = next;
  state.cursor = 0;
  load();
}

function onKey(event) {
  if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey
      || event.altKey) return;
  const labels = state.config.labels;
  const digit = Number(event.key);
  if (Number.isInteger(digit) && digit >= 1 && digit <= labels.length) {
    labelCurrent(labels[digit - 1]);
  } else if (event.key === "j" || event.key === "ArrowDown") {
    moveTo(state.cursor + 1);
  } else if (event.key === "k" || event.key === "ArrowUp") {
    moveTo(state.cursor - 1);
  } else if (event.key === "a") {
    labelCurrent(null);
  } else if (event.key === "A") {
    save(selectedItems().map((item) => [item, item.label]));
  } else if (event.key === "x") {
    const item = current();
    if (item) toggle(item.id, !state.selected.has(item.id));
  } else if (event.key === "u") {
    if (current()) undo([current()]);
  } else if (event.key === "n") {
    page(1);
  } else if (event.key === "p") {
    page(-1);
  } else if (event.key === "r") {
    load();
  } else {
    return;
  }
  event.preventDefault();
}

function option(select, value) {
  const el = document.createElement("option");
  el.value = value;
  el.textContent = value;
  select.append(el);
}

// -- the second queue: training rows whose label the validate stage doubts -----------------

function pct(share) {
  return `${(100 * share).toFixed(1)} %`;
}

function estimateText(queue) {
  if (!queue.scored) return `Not scored: ${queue.reason || "no estimate in the report"}.`;
  const e = queue.estimate;
  const head = e
    ? `An estimated ${pct(e.share)} [${pct(e.low)}, ${pct(e.high)}] of the ${e.rows} rows new or ` +
      `changed since production's data have wrong labels (${e.scorer} scorer)`
    : "No estimate";
  return `${head}${queue.flagged ? " — over the limit" : ""}; ${queue.items.length} ` +
    `suspicious row(s), most confident first (${queue.report}).`;
}

function labelRow(item) {
  const tr = document.createElement("tr");
  if (item.review) tr.classList.add(item.review.action);
  const decide = document.createElement("td");
  decide.className = "decide";
  for (const label of state.config.labels) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label === item.label ? `keep ${label}` : `change to ${label}`;
    button.addEventListener("click", () => decideLabel(item, label));
    decide.append(button);
  }
  const review = item.review
    ? `${item.review.action === "changed" ? "✎ changed →" : "✓ kept"} ${item.review.label} ` +
      `(${item.review.reviewer})` : "—";
  tr.append(cell(`${item.file}:${item.line}`, "meta"), cell(item.text, "text"),
    cell(item.label, `label label-${state.config.labels.indexOf(item.label)}`),
    cell(`${item.suggested} (${item.confidence.toFixed(2)})`, "label"), cell(review, "review"),
    decide);
  return tr;
}

async function loadLabelQueue() {
  try {
    const queue = await api("/api/label-queue");
    $("#labels-estimate").textContent = estimateText(queue);
    $("#label-items tbody").replaceChildren(...queue.items.map(labelRow));
  } catch (err) {
    $("#labels-estimate").textContent = err.message;
  }
}

async function decideLabel(item, label) {
  try {
    await api("/api/label-decisions", { method: "POST",
      body: JSON.stringify({ items: [{ id: item.id, label }] }) });
    say(`${item.file}:${item.line}: ${label === item.label ? "kept" : "changed to"} ${label}`);
    await loadLabelQueue();
  } catch (err) {
    say(err.message, true);
  }
}

async function start() {
  state.config = await api("/api/config");
  $("#reviewer").textContent = `reviewer: ${state.config.reviewer}`;
  state.config.labels.forEach((label) => option($("#f-label"), label));
  state.config.model_versions.forEach((version) => option($("#f-model"), version));
  $("#help-labels").innerHTML = state.config.labels
    .map((label, i) => `<kbd>${i + 1}</kbd> ${label}`).join(" · ");
  for (const label of state.config.labels) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `Set selected to ${label}`;
    button.addEventListener("click", () => save(selectedItems().map((item) => [item, label])));
    $("#bulk-set").append(button);
  }
  $("#filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.offset = 0;
    state.cursor = 0;
    load();
  });
  $("#filters").addEventListener("change", () => $("#filters").requestSubmit());
  $("#select-all").addEventListener("change", (event) => {
    state.items.forEach((item) => toggle(item.id, event.target.checked));
  });
  $("#bulk-confirm").addEventListener("click",
    () => save(selectedItems().map((item) => [item, item.label])));
  $("#bulk-undo").addEventListener("click", () => undo(selectedItems()));
  $("#prev").addEventListener("click", () => page(-1));
  $("#next").addEventListener("click", () => page(1));
  document.addEventListener("keydown", onKey);
  await Promise.all([load(), loadLabelQueue()]);
  document.body.dataset.ready = "true";
}

start().catch((err) => say(err.message, true));
