/* Loupe App: one page over the JSON API. Every datum is rendered with textContent or SVG/canvas,
   never innerHTML (labels and metadata may contain markup). Writes carry the per-launch token. */
"use strict";
const TOKEN = document.querySelector('meta[name="loupe-token"]').content;
const COLORS = {tp: "#2ca02c", fp: "#d62728", fn: "#ff7f0e", ignored: "#999999", gt: "#1f77b4"};
const PAGE = 60;
const S = {info: null, ds: null, run: "", catalog: null, q: "", order: "", slice: "", sel: "", offset: 0,
           total: 0, items: [], objects: {}, tab: "grid", pOffset: 0, item: null, itemIndex: null,
           selected: null, edit: null};
const $ = id => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of kids) e.append(c instanceof Node ? c : document.createTextNode(c === null || c === undefined ? "" : String(c)));
  return e;
}
function toast(msg, err) {
  const t = $("toast");
  t.textContent = msg;
  t.className = err ? "err" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, err ? 6000 : 2500);
}
async function api(name, params, post) {
  let r;
  if (post) {
    r = await fetch("/api/" + name, {method: "POST", headers: {"Content-Type": "application/json", "X-Loupe-Token": TOKEN},
                                     body: JSON.stringify(params)});
  } else {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") qs.set(k, v);
    r = await fetch("/api/" + name + "?" + qs.toString());
  }
  const body = await r.json();
  if (!r.ok) { const e = new Error(body.error || r.statusText); e.body = body; e.status = r.status; throw e; }
  return body;
}
const enc = encodeURIComponent;
const thumbUrl = ref => `/thumb/${enc(S.ds)}/${enc(ref)}`;
const imgUrl = ref => `/img/${enc(S.ds)}/${enc(ref)}`;
const fmt = v => (v === null || v === undefined) ? "–" : (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v));
function runCommitted() {
  const d = dsInfo();
  const r = d && d.runs.find(x => x.name === S.run);
  return !!(r && r.committed);
}
const dsInfo = () => S.info && S.info.datasets.find(d => d.name === S.ds);
function boxColor(o) {
  if (o.status && COLORS[o.status]) return COLORS[o.status];
  return COLORS.gt;
}
function visible(o) {
  if (o.source === "gt") return $("show-gt").checked;
  if (!$("show-pred").checked) return false;
  return (o.confidence === null || o.confidence >= parseFloat($("conf").value));
}

/* ---------------------------------------------------------------- startup */
async function loadInfo() {
  S.info = await api("info");
  $("ro-badge").hidden = !S.info.read_only;
  for (const b of ["undo", "commit", "save-slice"]) $(b).disabled = S.info.read_only;
  const sel = $("dataset");
  sel.replaceChildren(...S.info.datasets.map(d => el("option", {value: d.name}, `${d.name} (${d.items})`)));
  const want = new URLSearchParams(location.hash.slice(1));
  if (!S.ds || !dsInfo()) S.ds = want.get("dataset") || (S.info.datasets[0] && S.info.datasets[0].name);
  sel.value = S.ds;
  fillRuns(want.get("run"));
}
function fillRuns(want) {
  const d = dsInfo();
  if (!d) return;
  const runs = d.runs.map(r => r.name);
  const opts = [el("option", {value: ""}, "(no run)"), ...d.runs.map(r => el("option", {value: r.name}, r.name + (r.committed ? "" : " (not committed)")))];
  $("run").replaceChildren(...opts);
  if (want !== undefined && want !== null && runs.includes(want)) S.run = want;
  else if (!runs.includes(S.run)) S.run = runs[0] || "";
  $("run").value = S.run;
  for (const id of ["m-run-a", "m-run-b"]) {
    $(id).replaceChildren(el("option", {value: ""}, "–"), ...d.runs.filter(r => r.committed).map(r => el("option", {value: r.name}, r.name)));
  }
  $("m-run-a").value = runCommitted() ? S.run : "";
  $("labels-state").textContent = `labels v${d.label_version}`;
  const emb = d.embeddings || [];
  $("tab-similarity").hidden = emb.length === 0;
  $("iv-similar").hidden = emb.length === 0;
  $("s-emb").replaceChildren(...emb.map(e => el("option", {value: e.name}, `${e.name} (${e.level}, ${e.count})`)));
}
async function loadCatalog() {
  S.catalog = await api("catalog", {dataset: S.ds});
  const sl = S.catalog.slices.map(s => el("option", {value: s.name}, `${s.name} (${s.kind})`));
  $("slice").replaceChildren(el("option", {value: ""}, "all items"), ...sl);
  $("slice").value = S.slice;
  $("m-slice").replaceChildren(el("option", {value: ""}, "all items"), ...S.catalog.slices.map(s => el("option", {value: s.name}, s.name)));
  $("p-label").replaceChildren(el("option", {value: ""}, "all"), ...S.catalog.labels.map(l => el("option", {value: l}, l)));
}

/* ---------------------------------------------------------------- grid */
function gridParams(extra) {
  return Object.assign({dataset: S.ds, q: S.q, run: S.run, order: S.order, slice: S.slice, sel: S.sel}, extra || {});
}
async function loadGrid() {
  hideError();
  let res;
  const seq = (loadGrid.seq = (loadGrid.seq || 0) + 1);
  try {
    res = await api("items", gridParams({offset: S.offset, limit: PAGE}));
  } catch (e) {
    if (seq !== loadGrid.seq) return;
    if (e.body && e.body.line) showError(e.body); else toast(e.message, true);
    return;
  }
  if (seq !== loadGrid.seq) return;  // a newer request was sent meanwhile
  S.total = res.total; S.items = res.items; S.objects = res.objects || {};
  $("page-info").textContent = S.total ? `${S.offset + 1}–${Math.min(S.offset + PAGE, S.total)} of ${S.total}` : "no items";
  $("sel-note").textContent = S.sel ? "showing a selection" : "";
  renderGrid();
}
function renderGrid() {
  const cells = S.items.map((it, i) => {
    const c = el("canvas", {width: 200, height: Math.round(200 * it.height / Math.max(1, it.width)), "data-ref": it.reference_id});
    const cap = el("div", {class: "cap", title: it.reference_id}, it.reference_id);
    const cell = el("div", {class: "cell", "data-ref": it.reference_id, onclick: () => openItem(it.reference_id, S.offset + i)}, c, cap);
    const img = new Image();
    img.onload = () => drawCell(c, img, it);
    img.src = thumbUrl(it.reference_id);
    c._img = img;
    c._item = it;
    return cell;
  });
  $("grid").replaceChildren(...cells);
}
function drawCell(c, img, it) {
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const s = img.naturalWidth / it.width;
  const showLabels = $("show-labels").checked;
  for (const o of S.objects[it.reference_id] || []) {
    if (!visible(o)) continue;
    g.strokeStyle = boxColor(o);
    g.lineWidth = 2;
    g.setLineDash(o.source === "gt" ? [] : [5, 3]);
    g.strokeRect(o.x * s, o.y * s, o.width * s, o.height * s);
    if (showLabels) {
      g.fillStyle = boxColor(o);
      g.font = "10px sans-serif";
      const t = o.label + (o.confidence !== null && o.confidence !== undefined ? " " + o.confidence.toFixed(2) : "");
      g.fillText(t, o.x * s + 2, Math.max(10, o.y * s - 2));
    }
  }
}
function redrawGrid() {
  for (const c of document.querySelectorAll("#grid canvas")) if (c._img && c._img.complete) drawCell(c, c._img, c._item);
}
function runQuery() {
  S.q = $("q").value.trim(); S.order = $("order").value; S.slice = $("slice").value; S.offset = 0;
  hideCompletions();
  loadGrid();
}
function showError(b) {
  $("q").classList.add("bad");
  $("q-error").hidden = false;
  $("q-error-msg").textContent = `${b.kind || "error"}: ${b.error}`;
  const lines = (b.text || "").split("\n");
  const src = lines[(b.line || 1) - 1] || "";
  $("q-error-src").textContent = src;
  $("q-error-caret").textContent = " ".repeat(Math.max(0, (b.column || 1) - 1)) + "^".repeat(Math.max(1, Math.min(b.length || 1, src.length - (b.column || 1) + 1)));
  const hint = [];
  if (b.suggestions && b.suggestions.length) hint.push("did you mean: " + b.suggestions.join(", "));
  if (b.expected && b.expected.length) hint.push("expected one of: " + b.expected.join(", "));
  $("q-error-hint").textContent = hint.join(" · ");
}
function hideError() { $("q").classList.remove("bad"); $("q-error").hidden = true; }

/* completion of fields, labels and metadata keys from the catalog */
let compIdx = -1;
function currentToken() {
  const q = $("q"), pos = q.selectionStart, text = q.value.slice(0, pos);
  const m = /[\w.]*$/.exec(text);
  return {start: pos - m[0].length, end: pos, word: m[0]};
}
function updateCompletions() {
  const {word} = currentToken();
  const ul = $("completions");
  if (!S.catalog || word.length < 1) return hideCompletions();
  const pool = [...S.catalog.fields, ...S.catalog.object_fields, ...S.catalog.labels.map(l => `"${l}"`), "slice(", "AND", "OR", "NOT"];
  const w = word.toLowerCase();
  const hits = [...new Set(pool)].filter(f => f.toLowerCase().startsWith(w) && f.toLowerCase() !== w).slice(0, 10);
  if (!hits.length) return hideCompletions();
  compIdx = 0;
  ul.replaceChildren(...hits.map((h, i) => el("li", {class: i === 0 ? "on" : "", onmousedown: ev => { ev.preventDefault(); acceptCompletion(h); }}, h)));
  ul.hidden = false;
}
function hideCompletions() { $("completions").hidden = true; compIdx = -1; }
function acceptCompletion(text) {
  const q = $("q"), t = currentToken();
  q.value = q.value.slice(0, t.start) + text + q.value.slice(t.end);
  const p = t.start + text.length;
  q.setSelectionRange(p, p);
  hideCompletions();
  q.focus();
}
function onQueryKey(ev) {
  const ul = $("completions"), lis = [...ul.children];
  if (!ul.hidden && lis.length) {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      compIdx = (compIdx + (ev.key === "ArrowDown" ? 1 : lis.length - 1)) % lis.length;
      lis.forEach((li, i) => li.className = i === compIdx ? "on" : "");
      return;
    }
    if (ev.key === "Tab") { ev.preventDefault(); acceptCompletion(lis[Math.max(0, compIdx)].textContent); return; }
    if (ev.key === "Escape") { hideCompletions(); return; }
  }
  if (ev.key === "Enter") { ev.preventDefault(); runQuery(); }
}
async function saveSlice() {
  const name = $("slice-name").value.trim();
  if (!name) return toast("type a slice name first", true);
  try {
    const r = await api("save_slice", gridParams({name, mode: $("slice-mode").value, q: $("q").value.trim()}), true);
    toast(`slice '${r.slice}' saved (${r.size} items)`);
    await loadCatalog();
  } catch (e) { if (e.body && e.body.line) showError(e.body); else toast(e.message, true); }
}
/* called by insights bars: put a query in the bar and show the grid */
function filterGrid(q) {
  $("q").value = q; S.sel = ""; showTab("grid"); runQuery();
}

/* ---------------------------------------------------------------- item view */
async function openItem(ref, index) {
  let res;
  try {
    res = ref !== null ? await api("item", {dataset: S.ds, ref, run: S.run}) : await api("item", gridParams({index}));
  } catch (e) { return toast(e.message, true); }
  S.item = res; S.itemIndex = (index === undefined || index === null) ? res.index : index; S.selected = null; S.edit = null;
  $("item-view").hidden = false;
  $("iv-title").textContent = res.item.reference_id;
  $("iv-pos").textContent = S.itemIndex !== null && S.itemIndex !== undefined && S.total ? ` ${S.itemIndex + 1} / ${S.total}` : "";
  const img = $("iv-img");
  img.onload = () => layoutSvg();
  img.src = imgUrl(res.item.reference_id);
  renderItemTables();
  renderActions();
  drawItemBoxes();
}
function closeItem() { $("item-view").hidden = true; S.item = null; }
function stepItem(d) {
  if (S.itemIndex === null || S.itemIndex === undefined) return;
  const i = S.itemIndex + d;
  if (i < 0 || i >= S.total) return;
  openItem(null, i);
}
function layoutSvg() {
  const img = $("iv-img"), svg = $("iv-svg");
  svg.setAttribute("width", img.clientWidth);
  svg.setAttribute("height", img.clientHeight);
  svg.style.left = img.offsetLeft + "px";
  svg.style.top = img.offsetTop + "px";
  drawItemBoxes();
}
function objKey(o) { return o.source + ":" + o.annotation_id; }
function drawItemBoxes() {
  const svg = $("iv-svg");
  if (!S.item) return;
  const it = S.item.item;
  svg.setAttribute("viewBox", `0 0 ${it.width} ${it.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const kids = [], handles = [];  // handles go last: on top of every box
  for (const o of S.item.objects) {
    if (!visible(o) && !(S.selected && objKey(o) === S.selected)) continue;
    const editing = S.edit && S.edit.key === objKey(o);
    const b = editing ? S.edit : o;
    const r = svgEl("rect", {x: b.x, y: b.y, width: b.width, height: b.height, stroke: boxColor(o),
                             class: "box" + (o.source === "gt" ? "" : " pred") + (S.selected === objKey(o) ? " sel" : ""),
                             "data-key": objKey(o)});
    r.appendChild(svgEl("title", {}, `${o.source} ${o.annotation_id}: ${o.label} ${o.status || ""}`));
    r.addEventListener("mousedown", ev => { if (editing) startDrag(ev, "move"); });
    r.addEventListener("click", ev => { ev.stopPropagation(); selectObject(objKey(o)); });
    kids.push(r);
    if ($("show-labels").checked || S.selected === objKey(o)) {
      kids.push(svgEl("text", {x: b.x + 2, y: Math.max(12, b.y - 3), fill: boxColor(o), "font-size": Math.max(11, it.width / 50)},
                      `${o.label} ${o.annotation_id}`));
    }
    if (editing) {
      const hs = Math.max(6, it.width / 70);
      for (const [cx, cy, corner] of [[b.x, b.y, "nw"], [b.x + b.width, b.y, "ne"], [b.x, b.y + b.height, "sw"], [b.x + b.width, b.y + b.height, "se"]]) {
        const h = svgEl("rect", {x: cx - hs / 2, y: cy - hs / 2, width: hs, height: hs, class: "handle", "data-corner": corner});
        h.addEventListener("mousedown", ev => startDrag(ev, corner));
        handles.push(h);
      }
    }
  }
  svg.replaceChildren(...kids, ...handles);
}
function svgPoint(ev) {
  const svg = $("iv-svg");
  return new DOMPoint(ev.clientX, ev.clientY).matrixTransform(svg.getScreenCTM().inverse());
}
function startDrag(ev, mode) {
  ev.preventDefault(); ev.stopPropagation();
  const p0 = svgPoint(ev), b0 = Object.assign({}, S.edit);
  const move = e => {
    const p = svgPoint(e), dx = p.x - p0.x, dy = p.y - p0.y, b = S.edit;
    if (mode === "move") { b.x = b0.x + dx; b.y = b0.y + dy; }
    if (mode.includes("w")) { b.x = Math.min(b0.x + dx, b0.x + b0.width - 1); b.width = b0.width - (b.x - b0.x); }
    if (mode.includes("e")) { b.width = Math.max(1, b0.width + dx); }
    if (mode.includes("n")) { b.y = Math.min(b0.y + dy, b0.y + b0.height - 1); b.height = b0.height - (b.y - b0.y); }
    if (mode.includes("s")) { b.height = Math.max(1, b0.height + dy); }
    const W = S.item.item.width, H = S.item.item.height;  // keep the box inside the image
    b.x = Math.min(Math.max(0, b.x), W - 1); b.y = Math.min(Math.max(0, b.y), H - 1);
    b.width = Math.min(b.width, W - b.x); b.height = Math.min(b.height, H - b.y);
    drawItemBoxes();
  };
  const up = () => { window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up); renderActions(); };
  window.addEventListener("mousemove", move);
  window.addEventListener("mouseup", up);
}
function selectObject(key) {
  S.selected = key; S.edit = null;
  renderItemTables(); renderActions(); drawItemBoxes();
}
function renderItemTables() {
  const tb = $("iv-objects").tBodies[0];
  tb.replaceChildren(...S.item.objects.map(o => {
    const tr = el("tr", {class: S.selected === objKey(o) ? "sel" : "", "data-key": objKey(o), onclick: () => selectObject(objKey(o))},
      el("td", {}, o.source === "gt" ? "GT" : "pred"), el("td", {}, o.annotation_id), el("td", {}, o.label),
      el("td", {}, o.status || ""), el("td", {}, fmt(o.confidence)), el("td", {}, fmt(o.iou !== null ? o.iou : o.best_iou)));
    tr.children[3].style.color = o.status ? COLORS[o.status] : "";
    return tr;
  }));
  const md = $("iv-meta").tBodies[0];
  const it = S.item.item;
  const meta = [["reference_id", it.reference_id], ["size", `${it.width} × ${it.height}`],
                ...Object.entries(it.metadata || {}).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : v])];
  md.replaceChildren(...meta.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))));
}
function renderActions() {
  const box = $("iv-actions");
  const o = S.item && S.item.objects.find(x => objKey(x) === S.selected);
  if (!o) { box.replaceChildren(el("span", {class: "muted"}, "click a box or a row to inspect or fix it; ← → move between items")); return; }
  const ro = S.info.read_only;
  const kids = [el("div", {}, `${o.source === "gt" ? "ground truth" : "prediction"} ${o.annotation_id} · ${o.label} · ${o.status || "no status"}` +
                   (o.confidence !== null && o.confidence !== undefined ? ` · conf ${fmt(o.confidence)}` : "") +
                   ` · box ${[o.x, o.y, o.width, o.height].map(v => Math.round(v)).join(", ")}`)];
  if (!ro) {
    if (o.source === "prediction") {
      kids.push(el("button", {id: "act-accept", onclick: () => fix({action: "add", label: o.label, x: o.x, y: o.y, width: o.width, height: o.height,
                                                                   reason: `accepted prediction ${o.annotation_id} as missing ground truth`})},
                   "Accept as missing ground truth"));
    } else {
      const lab = el("input", {id: "act-label", type: "text", value: o.label, size: 12});
      kids.push(el("button", {id: "act-delete", onclick: () => fix({action: "delete", annotation_id: o.annotation_id, reason: "spurious ground truth"})}, "Delete"),
                lab, el("button", {id: "act-relabel", onclick: () => fix({action: "change", annotation_id: o.annotation_id, label: lab.value.trim()})}, "Change label"));
      if (!S.edit) {
        kids.push(el("button", {id: "act-edit", onclick: () => { S.edit = {key: objKey(o), x: o.x, y: o.y, width: o.width, height: o.height}; drawItemBoxes(); renderActions(); }}, "Move / resize"));
      } else {
        kids.push(el("button", {id: "act-save-box", onclick: () => fix({action: "change", annotation_id: o.annotation_id, x: S.edit.x, y: S.edit.y, width: S.edit.width, height: S.edit.height})}, "Save box"),
                  el("button", {onclick: () => { S.edit = null; drawItemBoxes(); renderActions(); }}, "Cancel"));
      }
    }
  }
  box.replaceChildren(...kids);
}
async function fix(params) {
  try {
    const r = await api("fix", Object.assign({dataset: S.ds, ref: S.item.item.reference_id}, params), true);
    toast(`saved as label version ${r.label_version} — commit the run to see the metrics change`);
    const keep = S.selected;
    await afterLabelChange();
    if (S.item) {
      await openItem(S.item.item.reference_id, S.itemIndex);
      if (keep && S.item.objects.some(o => objKey(o) === keep)) selectObject(keep);
    }
  } catch (e) { toast(e.message, true); }
}
async function afterLabelChange() {
  await loadInfo();
  S.sel = S.sel; // results are re-read: the store generation moved
  if (S.tab === "grid") loadGrid();
  if (S.tab === "patches") loadPatches();
}
async function undo() {
  try {
    // the server keeps the stack: each undo reverts the latest fix still in effect, restoring the state before it
    const r = await api("undo", {dataset: S.ds}, true);
    toast(`undid label version ${r.result.undone}: now label version ${r.label_version}` +
          (r.can_undo ? "" : " (nothing more to undo)"));
    await afterLabelChange();
    if (S.item) await openItem(S.item.item.reference_id, S.itemIndex);
  } catch (e) { toast(e.message, true); }
}
async function commitRun() {
  if (!S.run) return toast("choose a run first", true);
  try {
    toast("committing…");
    const r = await api("commit", {dataset: S.ds, run: S.run}, true);
    const div = $("commit-result");
    const keys = ["AP", "AP50", "AP75", "AR100"];
    const t = el("table", {class: "m", id: "commit-table"},
      el("tr", {}, el("th", {}, `run ${S.run} (labels v${r.label_version})`), ...keys.map(k => el("th", {}, k)), el("th", {}, "TP"), el("th", {}, "FP"), el("th", {}, "FN")),
      ...[["before", r.before], ["after", r.after]].filter(x => x[1]).map(([n, m]) =>
        el("tr", {"data-when": n}, el("td", {}, n), ...keys.map(k => el("td", {"data-stat": k}, fmt(m.stats[k]))),
           el("td", {}, m.counts.tp), el("td", {}, m.counts.fp), el("td", {}, m.counts.fn))));
    div.replaceChildren(el("strong", {}, "Metrics before / after commit"), t, el("button", {onclick: () => { div.hidden = true; }}, "close"));
    div.hidden = false;
    await afterLabelChange();
    if (S.tab === "metrics") loadMetrics();
  } catch (e) { toast(e.message, true); }
}

/* ---------------------------------------------------------------- patches */
async function loadPatches() {
  if (!S.run) { $("patches").replaceChildren(el("p", {}, "choose a run")); return; }
  if (!runCommitted()) { $("patches").replaceChildren(el("p", {}, "the run is not committed yet: use ‘Commit run’")); return; }
  let res;
  const seq = (loadPatches.seq = (loadPatches.seq || 0) + 1);
  try {
    res = await api("patches", {dataset: S.ds, run: S.run, status: $("p-status").value, label: $("p-label").value,
                                sort: $("p-sort").value, desc: $("p-desc").checked, offset: S.pOffset, limit: PAGE});
  } catch (e) { return toast(e.message, true); }
  if (seq !== loadPatches.seq) return;  // a newer request was sent meanwhile
  $("p-info").textContent = res.patches.length ? `${S.pOffset + 1}–${S.pOffset + res.patches.length}` : "none";
  $("patches").replaceChildren(...res.patches.map(p => {
    const c = el("canvas", {width: 160, height: 160});
    const cap = el("div", {}, `${p.status} ${p.source === "gt" ? "GT" : "pred"} ${p.label}` + (p.partner_label && p.partner_label !== p.label ? ` (vs ${p.partner_label})` : ""),
                   el("br"), `IoU ${fmt(p.iou)} · best ${fmt(p.best_iou)}` + (p.confidence !== null ? ` · conf ${fmt(p.confidence)}` : ""),
                   el("br"), `${p.reference_id} #${p.annotation_id}`);
    const div = el("div", {class: "patch", "data-ref": p.reference_id, "data-status": p.status,
                           onclick: () => { openItem(p.reference_id, null).then(() => selectObject((p.source === "gt" ? "gt:" : "prediction:") + p.annotation_id)); }}, c, cap);
    const img = new Image();
    img.onload = () => drawPatch(c, img, p);
    img.src = imgUrl(p.reference_id);
    return div;
  }));
}
function drawPatch(c, img, p) {
  const xs = [p.x, p.x + p.width], ys = [p.y, p.y + p.height];
  if (p.partner_x !== null) { xs.push(p.partner_x, p.partner_x + p.partner_width); ys.push(p.partner_y, p.partner_y + p.partner_height); }
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const side = Math.max(x1 - x0, y1 - y0) * 1.15 + 8, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const sx = cx - side / 2, sy = cy - side / 2, k = c.width / side;
  const g = c.getContext("2d");
  g.fillStyle = "#eee"; g.fillRect(0, 0, c.width, c.height);
  g.drawImage(img, sx, sy, side, side, 0, 0, c.width, c.height);
  const draw = (x, y, w, h, color, dash) => { g.strokeStyle = color; g.lineWidth = 2; g.setLineDash(dash); g.strokeRect((x - sx) * k, (y - sy) * k, w * k, h * k); };
  if (p.partner_x !== null) draw(p.partner_x, p.partner_y, p.partner_width, p.partner_height, COLORS[p.partner_status] || COLORS.gt, p.source === "gt" ? [5, 3] : []);
  draw(p.x, p.y, p.width, p.height, COLORS[p.status] || COLORS.gt, p.source === "gt" ? [] : [5, 3]);
}

/* ---------------------------------------------------------------- insights */
function qName(s) { return /^[A-Za-z_][\w]*$/.test(s) ? s : "`" + s.replace(/`/g, "``") + "`"; }
function qStr(s) { return '"' + String(s).replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"'; }
async function loadInsights() {
  let r;
  try { r = await api("insights", {dataset: S.ds, run: runCommitted() ? S.run : "", slice: S.slice}); } catch (e) { return toast(e.message, true); }
  const out = [];
  out.push(barChart("Labels (annotations) — click to filter", r.labels.map(x => ({label: x.label, value: x.annotations, filter: `annotations.${qName(x.label)} > 0`})), d => filterGrid(d.filter)));
  out.push(barChart("Annotations per item — click to filter", r.annotations_per_item.map(x => ({label: `${x.annotations} annotations`, value: x.items, filter: `annotations.count = ${x.annotations}`})), d => filterGrid(d.filter)));
  const byMeasure = {};
  for (const b of r.box_histograms || []) (byMeasure[b.measure] = byMeasure[b.measure] || []).push(b);
  for (const [m, bins] of Object.entries(byMeasure)) out.push(histChart(`Box ${m}`, bins, null, {xlabel: m}));
  const byField = {};
  for (const v of r.metadata_values || []) if (v.scope === "item") (byField[v.field] = byField[v.field] || []).push(v);
  for (const [f, vals] of Object.entries(byField)) {
    out.push(barChart(`metadata.${f} — click to filter`, vals.map(v => ({label: v.value, value: v.count,
      filter: v.value === null ? null : `metadata.${f.split(".").map(qName).join(".")} = ${/^-?\d+(\.\d+)?$/.test(v.value) || v.value === "true" || v.value === "false" ? v.value : qStr(v.value)}`})), d => filterGrid(d.filter)));
  }
  const hByField = {};
  for (const b of r.metadata_histograms || []) if (b.scope === "item") (hByField[b.field] = hByField[b.field] || []).push(b);
  for (const [f, bins] of Object.entries(hByField)) {
    const key = `metadata.${f.split(".").map(qName).join(".")}`;
    out.push(histChart(`metadata.${f} — click to filter`, bins, b => filterGrid(`${key} >= ${b.lower} AND ${key} <= ${b.upper}`), {xlabel: f}));
  }
  if (r.per_class && r.per_class.length) {
    out.push(barChart("False positives per label — click to filter", r.per_class.map(x => ({label: x.label, value: x.fp, color: COLORS.fp, filter: `predictions.${qName(x.label)}.fp > 0`})), d => filterGrid(d.filter)));
    out.push(barChart("False negatives per label — click to filter", r.per_class.map(x => ({label: x.label, value: x.fn, color: COLORS.fn, filter: `predictions.${qName(x.label)}.fn > 0`})), d => filterGrid(d.filter)));
  }
  if (r.error_types && r.error_types.length) out.push(barChart("Error types", r.error_types.filter(x => x.error_type).map(x => ({label: `${x.source} ${x.error_type}`, value: x.count, filter: null})), null));
  if (r.scores && r.scores.length) out.push(histChart("Prediction confidence (all)", r.scores, null, {xlabel: "confidence"}));
  const div = el("div", {class: "charts"});
  div.append(...out);
  $("insights").replaceChildren(div);
}

/* ---------------------------------------------------------------- metrics */
async function loadMetrics() {
  const a = $("m-run-a").value, b = $("m-run-b").value;
  if (!a && !b) { $("metrics").replaceChildren(el("p", {}, "choose a committed run")); return; }
  let r;
  const seq = (loadMetrics.seq = (loadMetrics.seq || 0) + 1);
  try { r = await api("metrics", {dataset: S.ds, run: a, run_b: b, slice: $("m-slice").value}); } catch (e) { return toast(e.message, true); }
  if (seq !== loadMetrics.seq) return;  // a newer request was sent meanwhile
  const runs = ["run", "run_b"].filter(k => r[k]).map(k => r[k]);
  const stats = Object.keys(runs[0].stats);
  const out = [];
  out.push(el("table", {class: "m", id: "m-stats"}, el("tr", {}, el("th", {}, "COCO stat"), ...runs.map(x => el("th", {}, x.name)), ...(runs.length === 2 ? [el("th", {}, "B − A")] : [])),
    ...stats.map(s => el("tr", {"data-stat": s}, el("td", {}, s), ...runs.map(x => el("td", {}, fmt(x.stats[s]))),
                          ...(runs.length === 2 ? [el("td", {}, fmt(runs[1].stats[s] - runs[0].stats[s]))] : [])))));
  for (const x of runs) {
    out.push(el("h3", {}, `${x.name}: TP ${x.counts.tp} · FP ${x.counts.fp} · FN ${x.counts.fn}`));
    out.push(el("table", {class: "m"}, el("tr", {}, ...["label", "AP", "AP50", "AR", "GT", "predictions"].map(h => el("th", {}, h))),
      ...x.per_class.map(c => el("tr", {}, el("td", {}, c.label), el("td", {}, fmt(c.ap)), el("td", {}, fmt(c.ap50)), el("td", {}, fmt(c.ar)), el("td", {}, c.gt), el("td", {}, c.predictions)))));
    const charts = el("div", {class: "charts"});
    const series = {};
    for (const p of x.pr) (series[`${p.label} @${p.iou_threshold}`] = series[`${p.label} @${p.iou_threshold}`] || []).push([p.recall, p.precision]);
    charts.append(lineChart(`${x.name}: precision–recall`, Object.entries(series).slice(0, 8).map(([n, pts], i) => ({name: n, color: PALETTE[i % PALETTE.length], points: pts}))));
    const labs = [...new Set(x.confusion.flatMap(c => [c.gt_label, c.pred_label]))];
    const cm = {};
    for (const c of x.confusion) cm[c.gt_label + "\u0000" + c.pred_label] = c.count;
    const ct = el("table", {class: "m"}, el("tr", {}, el("th", {}, "GT \\ predicted"), ...labs.map(l => el("th", {}, l))),
      ...labs.map(g => el("tr", {}, el("th", {}, g), ...labs.map(p => el("td", {}, cm[g + "\u0000" + p] || 0)))));
    const cbox = chartBox(`${x.name}: confusion matrix (IoU 0.5)`);
    cbox.appendChild(ct);
    charts.append(cbox, barChart(`${x.name}: error types`, x.error_types.map(e => ({label: `${e.label} ${e.error_type}`, value: e.count, filter: null})), null));
    out.push(charts);
  }
  $("metrics").replaceChildren(...out);
}

/* ---------------------------------------------------------------- similarity */
let lassoPts = [], lassoSel = [];
async function loadSimilarity() {
  const name = $("s-emb").value;
  if (!name) return;
  let r;
  try { r = await api("similar_map", {dataset: S.ds, embeddings: name}); } catch (e) { return toast(e.message, true); }
  const W = 640, H = 520, P = 20;
  const xs = r.points.map(p => p.x), ys = r.points.map(p => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = x => P + (x - x0) / Math.max(1e-12, x1 - x0) * (W - 2 * P), sy = y => H - P - (y - y0) / Math.max(1e-12, y1 - y0) * (H - 2 * P);
  const svg = svgEl("svg", {width: W, height: H, id: "s-map"});
  svg.appendChild(svgEl("rect", {x: 0, y: 0, width: W, height: H, fill: "#fff"}));
  const pts = r.points.map(p => ({ref: p.reference_id, x: sx(p.x), y: sy(p.y)}));
  for (const p of pts) svg.appendChild(svgEl("circle", {cx: p.x, cy: p.y, r: 3, fill: "#4e79a7"}));
  const path = svgEl("path", {class: "lasso", d: ""});
  svg.appendChild(path);
  let drawing = false;
  const pos = ev => { const b = svg.getBoundingClientRect(); return [ev.clientX - b.left, ev.clientY - b.top]; };
  svg.addEventListener("mousedown", ev => { drawing = true; lassoPts = [pos(ev)]; });
  svg.addEventListener("mousemove", ev => { if (!drawing) return; lassoPts.push(pos(ev)); path.setAttribute("d", "M" + lassoPts.map(p => p.join(",")).join("L") + "Z"); });
  svg.addEventListener("mouseup", () => {
    drawing = false;
    lassoSel = pts.filter(p => inPoly(p.x, p.y, lassoPts)).map(p => p.ref);
    for (const [i, c] of [...svg.querySelectorAll("circle")].entries()) c.setAttribute("fill", lassoSel.includes(pts[i].ref) ? "#d62728" : "#4e79a7");
    $("s-count").textContent = `${lassoSel.length} selected`;
  });
  $("similarity").replaceChildren(svg);
}
function inPoly(x, y, poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}
async function showSelection(refs) {
  const r = await api("select", {dataset: S.ds, refs}, true);
  S.sel = r.sel; S.q = ""; $("q").value = ""; S.offset = 0; showTab("grid"); loadGrid();
}
async function findSimilar() {
  try {
    const r = await api("similar", {dataset: S.ds, ref: S.item.item.reference_id, embeddings: $("s-emb").value}, true);
    closeItem(); S.sel = r.sel; S.q = ""; $("q").value = ""; S.offset = 0; showTab("grid"); loadGrid();
  } catch (e) { toast(e.message, true); }
}

/* ---------------------------------------------------------------- tabs and wiring */
function showTab(name) {
  S.tab = name;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + name;
  if (name === "patches") loadPatches();
  if (name === "insights") loadInsights();
  if (name === "metrics") loadMetrics();
  if (name === "similarity") loadSimilarity();
}
async function changeDataset() {
  S.ds = $("dataset").value; S.q = ""; S.slice = ""; S.sel = ""; S.offset = 0; $("q").value = "";
  fillRuns(); await loadCatalog(); showTab(S.tab); if (S.tab !== "grid") loadGrid(); else loadGrid();
}
function wire() {
  $("dataset").addEventListener("change", changeDataset);
  $("run").addEventListener("change", () => { S.run = $("run").value; fillRuns(S.run); if (S.tab === "grid") loadGrid(); else showTab(S.tab); });
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("q").addEventListener("input", updateCompletions);
  $("q").addEventListener("keydown", onQueryKey);
  $("q").addEventListener("blur", () => setTimeout(hideCompletions, 150));
  $("run-query").addEventListener("click", runQuery);
  $("clear-query").addEventListener("click", () => { $("q").value = ""; S.sel = ""; $("slice").value = ""; runQuery(); });
  $("order").addEventListener("change", runQuery);
  $("slice").addEventListener("change", runQuery);
  $("save-slice").addEventListener("click", saveSlice);
  for (const id of ["show-gt", "show-pred", "show-labels"]) $(id).addEventListener("change", () => { redrawGrid(); drawItemBoxes(); });
  $("conf").addEventListener("input", () => { $("conf-val").textContent = parseFloat($("conf").value).toFixed(2); redrawGrid(); drawItemBoxes(); });
  $("prev-page").addEventListener("click", () => { if (S.offset > 0) { S.offset = Math.max(0, S.offset - PAGE); loadGrid(); } });
  $("next-page").addEventListener("click", () => { if (S.offset + PAGE < S.total) { S.offset += PAGE; loadGrid(); } });
  for (const id of ["p-status", "p-label", "p-sort", "p-desc"]) $(id).addEventListener("change", () => { S.pOffset = 0; loadPatches(); });
  $("p-prev").addEventListener("click", () => { S.pOffset = Math.max(0, S.pOffset - PAGE); loadPatches(); });
  $("p-next").addEventListener("click", () => { S.pOffset += PAGE; loadPatches(); });
  for (const id of ["m-run-a", "m-run-b", "m-slice"]) $(id).addEventListener("change", loadMetrics);
  $("s-emb").addEventListener("change", loadSimilarity);
  $("s-show").addEventListener("click", () => lassoSel.length ? showSelection(lassoSel) : toast("draw a lasso first", true));
  $("iv-similar").addEventListener("click", findSimilar);
  $("iv-close").addEventListener("click", closeItem);
  $("iv-prev").addEventListener("click", () => stepItem(-1));
  $("iv-next").addEventListener("click", () => stepItem(1));
  $("undo").addEventListener("click", undo);
  $("commit").addEventListener("click", commitRun);
  window.addEventListener("resize", () => { if (S.item) layoutSvg(); });
  document.addEventListener("keydown", ev => {
    if ($("item-view").hidden || ev.target.tagName === "INPUT") return;
    if (ev.key === "ArrowRight") stepItem(1);
    else if (ev.key === "ArrowLeft") stepItem(-1);
    else if (ev.key === "Escape") closeItem();
  });
}
async function main() {
  wire();
  try {
    await loadInfo();
    if (!S.ds) { $("grid").replaceChildren(el("p", {}, "this workspace has no datasets")); return; }
    await loadCatalog();
    await loadGrid();
  } catch (e) { toast(e.message, true); }
  document.body.dataset.ready = "1";
}
main();
