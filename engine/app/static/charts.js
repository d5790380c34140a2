/* Loupe App charts: small SVG bar, line and scatter charts drawn in the browser.
   All text goes through textContent (labels and metadata may contain markup). */
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = String(text);
  return e;
}
function chartBox(title, width) {
  const div = document.createElement("div");
  div.className = "chart";
  if (width) div.style.width = width + "px";
  const h = document.createElement("h4");
  h.textContent = title;
  div.appendChild(h);
  return div;
}
function fmtNum(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3);
}
/* Horizontal bars: data = [{label, value, color?, filter?}]; a click calls onClick(d). */
function barChart(title, data, onClick, opts) {
  opts = opts || {};
  const W = opts.width || 420, rowH = 20, left = opts.left || 150, pad = 50;
  const shown = data.slice(0, opts.max || 30);
  const H = Math.max(rowH * shown.length + 24, 40);
  const box = chartBox(title, W + 14);
  const svg = svgEl("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`});
  const max = Math.max(1e-12, ...shown.map(d => d.value || 0));
  shown.forEach((d, i) => {
    const y = i * rowH + 4, w = Math.max(1, ((d.value || 0) / max) * (W - left - pad));
    const g = svgEl("g", {class: onClick && d.filter !== null ? "bar" : ""});
    const lab = svgEl("text", {x: left - 6, y: y + 13, "text-anchor": "end"}, String(d.label).slice(0, 26));
    const t = svgEl("title", {}, `${d.label}: ${fmtNum(d.value)}`);
    const r = svgEl("rect", {x: left, y: y + 2, width: w, height: rowH - 6, fill: d.color || "#4e79a7"});
    const val = svgEl("text", {x: left + w + 4, y: y + 13}, fmtNum(d.value));
    g.append(t, lab, r, val);
    if (onClick && d.filter !== null) g.addEventListener("click", () => onClick(d));
    svg.appendChild(g);
  });
  if (opts.note) {
    const n = svgEl("text", {x: 4, y: H - 4, fill: "#889"}, opts.note);
    svg.appendChild(n);
  }
  box.appendChild(svg);
  return box;
}
/* Vertical histogram: bins = [{lower, upper, count, filter?}]. */
function histChart(title, bins, onClick, opts) {
  opts = opts || {};
  const W = opts.width || 420, H = opts.height || 180, L = 44, B = 34, T = 8, R = 8;
  const box = chartBox(title, W + 14);
  const svg = svgEl("svg", {width: W, height: H});
  const max = Math.max(1, ...bins.map(b => b.count));
  const bw = (W - L - R) / Math.max(1, bins.length);
  bins.forEach((b, i) => {
    const h = (b.count / max) * (H - T - B);
    const g = svgEl("g", {class: onClick ? "bar" : ""});
    g.append(svgEl("title", {}, `${fmtNum(b.lower)} – ${fmtNum(b.upper)}: ${b.count}`),
             svgEl("rect", {x: L + i * bw + 1, y: H - B - h, width: Math.max(1, bw - 2), height: h, fill: b.color || "#4e79a7"}));
    if (onClick) g.addEventListener("click", () => onClick(b));
    svg.appendChild(g);
  });
  svg.append(svgEl("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#888"}),
             svgEl("text", {x: L - 4, y: T + 10, "text-anchor": "end"}, fmtNum(max)),
             svgEl("text", {x: L - 4, y: H - B, "text-anchor": "end"}, "0"));
  if (bins.length) {
    svg.append(svgEl("text", {x: L, y: H - B + 14}, fmtNum(bins[0].lower)),
               svgEl("text", {x: W - R, y: H - B + 14, "text-anchor": "end"}, fmtNum(bins[bins.length - 1].upper)));
  }
  if (opts.xlabel) svg.appendChild(svgEl("text", {x: (W + L) / 2, y: H - 4, "text-anchor": "middle", fill: "#556"}, opts.xlabel));
  box.appendChild(svg);
  return box;
}
/* Lines in [0,1]x[0,1]: series = [{name, color, points: [[x, y], ...]}]. */
function lineChart(title, series, opts) {
  opts = opts || {};
  const W = opts.width || 360, H = opts.height || 260, L = 40, B = 36, T = 10, R = 10;
  const box = chartBox(title, W + 14);
  const svg = svgEl("svg", {width: W, height: H});
  const sx = x => L + x * (W - L - R), sy = y => H - B - y * (H - T - B);
  for (let k = 0; k <= 4; k++) {
    const v = k / 4;
    svg.append(svgEl("line", {x1: sx(0), y1: sy(v), x2: sx(1), y2: sy(v), stroke: "#eee"}),
               svgEl("text", {x: L - 4, y: sy(v) + 4, "text-anchor": "end"}, v.toFixed(2)),
               svgEl("text", {x: sx(v), y: H - B + 14, "text-anchor": "middle"}, v.toFixed(2)));
  }
  svg.append(svgEl("text", {x: (W + L) / 2, y: H - 4, "text-anchor": "middle", fill: "#556"}, opts.xlabel || "recall"),
             svgEl("text", {x: 10, y: T + 4, fill: "#556"}, opts.ylabel || "precision"));
  series.forEach((s, i) => {
    const d = s.points.map((p, j) => (j ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(Math.max(0, p[1])).toFixed(1)).join("");
    svg.appendChild(svgEl("path", {d, fill: "none", stroke: s.color, "stroke-width": 2}));
    svg.appendChild(svgEl("text", {x: W - R - 4, y: T + 12 + 13 * i, "text-anchor": "end", fill: s.color}, s.name));
  });
  box.appendChild(svg);
  return box;
}
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"];
