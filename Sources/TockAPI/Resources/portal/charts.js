// Bar charts in plain SVG: no library and no build step. Sizes come from the viewBox, so a chart fills its panel's
// width on a laptop and on a phone; colours from classes in style.css (the Content-Security-Policy refuses style
// attributes). Each bar carries a <title> (its tooltip) and may link somewhere.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "href") el.setAttribute("href", value);
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// bars: [{ parts: [{ value, cls }], title, href }], drawn left to right, each bar's parts stacked from the bottom.
// axis: (value) => label for the top of the scale; ticks: [{ at: barIndex, label }] under the bars. slots: room for
// at least that many bars, the bars at the right (a job's first few runs are not a wall of colour).
function barChart({ id, bars, axis, ticks, label, height = 160, slots = 0 }) {
  // As wide as the page's content is now, so that text keeps its size (a stretched viewBox would shrink it on a phone).
  const view = document.getElementById("view");
  const width = Math.round(Math.max(300, Math.min(1160, (view ? view.clientWidth : 800) - 34)));
  const top = 14, bottom = 22, left = 58, right = 6;
  const plotHeight = height - top - bottom, plotWidth = width - left - right;
  const most = Math.max(0, ...bars.map((bar) => bar.parts.reduce((sum, part) => sum + part.value, 0)));
  const scale = most > 0 ? plotHeight / most : 0;
  const count = Math.max(bars.length, slots, 1);
  const step = plotWidth / count;
  const offset = count - bars.length;
  const gap = step > 6 ? Math.min(2, step * 0.2) : 0;
  const chart = svg("svg", { id, class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    svg("title", {}, label),
    svg("line", { class: "axis", x1: left, y1: top + plotHeight + 0.5, x2: width - right, y2: top + plotHeight + 0.5 }),
    svg("line", { class: "grid", x1: left, y1: top + 0.5, x2: width - right, y2: top + 0.5 }),
    svg("text", { class: "tick", x: left - 6, y: top + 4, "text-anchor": "end" }, axis(most)),
    svg("text", { class: "tick", x: left - 6, y: top + plotHeight, "text-anchor": "end" }, "0"));
  bars.forEach((bar, index) => {
    let y = top + plotHeight;
    const group = svg("g", { class: "bar", "data-index": index });
    for (const part of bar.parts) {
      if (part.value <= 0) continue;
      const h = Math.max(1, part.value * scale);
      y -= h;
      group.append(svg("rect", { class: part.cls, x: (left + (offset + index) * step + gap / 2).toFixed(2), y: y.toFixed(2),
        width: Math.max(0.5, step - gap).toFixed(2), height: h.toFixed(2) }));
    }
    // The whole column answers the pointer, so that a short bar is as easy to hover or tap as a tall one.
    group.append(svg("rect", { class: "hit", x: (left + (offset + index) * step).toFixed(2), y: top, width: step.toFixed(2), height: plotHeight }));
    group.append(svg("title", {}, bar.title));
    chart.append(bar.href ? svg("a", { href: bar.href }, group) : group);
  });
  for (const tick of ticks || []) {
    const x = left + (offset + tick.at + 0.5) * step;
    chart.append(svg("text", { class: "tick", x: x.toFixed(1), y: height - 6,
      "text-anchor": offset + tick.at === 0 ? "start" : tick.at >= bars.length - 1 ? "end" : "middle" }, tick.label));
  }
  return chart;
}
