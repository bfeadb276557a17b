// vigil dashboard charts: small SVG line charts and sparklines drawn with DOM calls (no
// library, no CDN, nothing inline that the page's Content-Security-Policy would block).
// Colours come from app.css classes (.ln-<name>), so the legend and the lines agree.
"use strict";

const VigilCharts = (() => {
  const NS = "http://www.w3.org/2000/svg";

  function svgEl(tag, attrs = {}, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // A readable number: 1234 -> "1.2k", 0.25 -> "0.25".
  function short(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e4) return Math.round(v / 1e3) + "k";
    if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
    if (v >= 10 || Number.isInteger(v)) return String(Math.round(v));
    return v.toFixed(2).replace(/0+$/, "").replace(/\.$/, "");
  }

  const hhmm = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

  // A line chart of `lines` ([{key, label}]) over `points` (objects with `at` and each key),
  // with axes, a legend and an accessible summary (peak of each line).
  function lineChart(points, lines, { title, unit = "" } = {}) {
    const W = 560, H = 180, L = 44, R = 8, T = 10, B = 24;
    const values = points.flatMap((p) => lines.map((l) => p[l.key]).filter((v) => v !== null && v !== undefined));
    const max = Math.max(1, ...values);
    const x = (i) => L + (points.length <= 1 ? 0 : (i * (W - L - R)) / (points.length - 1));
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const peaks = lines.map((l) => {
      let best = null;
      points.forEach((p) => { if (p[l.key] != null && (!best || p[l.key] > best[l.key])) best = p; });
      return best ? `${l.label} peak ${short(best[l.key])}${unit} at ${hhmm(best.at)}` : `${l.label}: no data`;
    });
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
      "aria-label": `${title}: ${peaks.join("; ")}` });
    svg.append(svgEl("title", {}, title));
    for (const f of [0, 0.5, 1]) {
      const v = max * f;
      svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      svg.append(svgEl("text", { x: L - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" }, short(v) + unit));
    }
    if (points.length) {
      for (const i of [0, Math.floor((points.length - 1) / 2), points.length - 1]) {
        svg.append(svgEl("text", { x: x(i), y: H - 6, class: "axis", "text-anchor": "middle" }, hhmm(points[i].at)));
      }
    }
    for (const l of lines) {
      // Gaps (no data in a step) break the line instead of dropping it to zero.
      let d = "", pen = "M";
      points.forEach((p, i) => {
        const v = p[l.key];
        if (v === null || v === undefined) { pen = "M"; return; }
        d += `${pen}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
        pen = "L";
      });
      if (d) svg.append(svgEl("path", { d, class: `line ln-${l.key}` }));
      // A point with no neighbour draws no line: mark it with a dot.
      points.forEach((p, i) => {
        const has = (j) => j >= 0 && j < points.length && points[j][l.key] != null;
        if (has(i) && !has(i - 1) && !has(i + 1)) {
          svg.append(svgEl("circle", { cx: x(i), cy: y(p[l.key]), r: 3, class: `dot ln-${l.key}` }));
        }
      });
    }
    const fig = document.createElement("figure");
    fig.className = "chart-box";
    const cap = document.createElement("figcaption");
    cap.append(document.createTextNode(title + " "));
    for (const l of lines) {
      const key = document.createElement("span");
      key.className = `key ln-${l.key}`;
      key.textContent = l.label;
      cap.append(key, document.createTextNode(" "));
    }
    fig.append(cap, svg);
    return fig;
  }

  // A sparkline of `values` (numbers), labelled for screen readers.
  function sparkline(values, label, cls = "done") {
    const W = 120, H = 24;
    const max = Math.max(1, ...values);
    const step = values.length > 1 ? W / (values.length - 1) : 0;
    const d = values.map((v, i) => `${i ? "L" : "M"}${(i * step).toFixed(1)},${(H - 2 - (H - 4) * (v / max)).toFixed(1)}`).join(" ");
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "spark", role: "img", "aria-label": label });
    svg.append(svgEl("title", {}, label));
    if (d) svg.append(svgEl("path", { d, class: `line ln-${cls}` }));
    return svg;
  }

  return { lineChart, sparkline, short };
})();
