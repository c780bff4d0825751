/* portfleet report: sortable and filterable tables, copy buttons, and the Plotly charts.
 *
 * Every string that came from a host reaches the page through textContent, or through Plotly
 * after plotText() has turned its markup characters into entities (Plotly reads a small HTML
 * subset in labels, and would otherwise swallow a host named like a tag).
 */
"use strict";

(function () {
  const DASH = "\u2014";
  const KIND_COLOURS = {
    "excluded-administered": "#7b3294",
    "administered": "#7b3294",
    "excluded": "#d7301f",
    "reserved": "#d7301f",
    "in-use": "#2b8cbe",
    "listener": "#2b8cbe",
    "probably-reserved": "#f4a582",
    "dynamic-unreserved": "#bf812d",
    "unexplained": "#e08214",
    "appeared": "#d7301f",
    "range-appeared": "#d7301f",
    "moved": "#e08214",
    "range-moved": "#e08214",
    "disappeared": "#1a9850",
    "range-disappeared": "#1a9850",
    "dynamic-changed": "#7570b3",
  };
  const SPARE_COLOURS = ["#66a61e", "#e7298a", "#a6761d", "#1b9e77", "#666666", "#7570b3"];
  // Above this many points a chart switches to WebGL (when the browser has it).
  const WEBGL_POINTS = 4000;

  function readData() {
    const node = document.getElementById("report-data");
    return node ? JSON.parse(node.textContent) : {};
  }

  function plotText(value) {
    return String(value === null || value === undefined ? "" : value)
      .replace(/&/g, "&#38;")
      .replace(/</g, "&#60;")
      .replace(/>/g, "&#62;");
  }

  function colourFor(kind, used) {
    if (Object.prototype.hasOwnProperty.call(KIND_COLOURS, kind)) return KIND_COLOURS[kind];
    if (!used.has(kind)) used.set(kind, SPARE_COLOURS[used.size % SPARE_COLOURS.length]);
    return used.get(kind);
  }

  function portRange(start, end) {
    if (start === null || start === undefined) return DASH;
    if (end === null || end === undefined || end === start) return String(start);
    return start + "\u2013" + end + " (" + (end - start + 1) + " ports)";
  }

  function hasWebGL() {
    try {
      const canvas = document.createElement("canvas");
      return Boolean(canvas.getContext("webgl2") || canvas.getContext("webgl"));
    } catch (error) {
      return false;
    }
  }

  function traceType(points) {
    return points > WEBGL_POINTS && hasWebGL() ? "scattergl" : "scatter";
  }

  /* ---- tables ---- */

  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function sortKey(cell, type) {
    if (!cell) return null;
    const raw = (cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent).trim();
    if (raw === "" || raw === DASH) return null;
    if (type === "number") {
      const number = Number(raw);
      return Number.isNaN(number) ? null : number;
    }
    return raw;
  }

  function compareKeys(a, b, type) {
    if (a === b) return 0;
    if (type === "number") return a < b ? -1 : 1;
    return collator.compare(a, b);
  }

  function sortTable(table, header, descending) {
    const index = Array.prototype.indexOf.call(header.parentNode.children, header);
    const type = header.dataset.type || "text";
    const body = table.tBodies[0];
    const keyed = Array.from(body.rows, (row, position) => ({
      row,
      position,
      key: sortKey(row.cells[index], type),
    }));
    keyed.sort((a, b) => {
      // Empty cells stay at the bottom whichever way the column is sorted.
      if (a.key === null || b.key === null) {
        if (a.key === b.key) return a.position - b.position;
        return a.key === null ? 1 : -1;
      }
      const order = compareKeys(a.key, b.key, type);
      return (descending ? -order : order) || a.position - b.position;
    });
    const fragment = document.createDocumentFragment();
    keyed.forEach((item) => fragment.appendChild(item.row));
    body.appendChild(fragment);
    for (const other of header.parentNode.children) other.setAttribute("aria-sort", "none");
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  function setUpSorting() {
    for (const table of document.querySelectorAll("table.data-table")) {
      if (!table.tHead || !table.tBodies.length) continue;
      for (const header of table.tHead.querySelectorAll("th")) {
        const button = header.querySelector("button.sort");
        if (!button) continue;
        button.addEventListener("click", () => {
          const descending = header.getAttribute("aria-sort") === "ascending";
          sortTable(table, header, descending);
        });
      }
    }
  }

  function filterItems(target) {
    if (target.tagName === "TABLE") return Array.from(target.tBodies[0].rows);
    return Array.from(target.querySelectorAll("[data-filter-item]"));
  }

  function setUpFilters() {
    for (const input of document.querySelectorAll("input[data-filter-target]")) {
      const targetId = input.dataset.filterTarget;
      const target = document.getElementById(targetId);
      if (!target) continue;
      const counter = document.querySelector('[data-count-for="' + CSS.escape(targetId) + '"]');
      const apply = () => {
        const needle = input.value.trim().toLocaleLowerCase();
        const items = filterItems(target);
        let shown = 0;
        for (const item of items) {
          const hit = needle === "" || item.textContent.toLocaleLowerCase().includes(needle);
          item.hidden = !hit;
          if (hit) shown += 1;
        }
        if (counter) {
          counter.textContent = needle === "" ? shown + " shown" : shown + " of " + items.length + " shown";
        }
      };
      input.addEventListener("input", apply);
    }
  }

  /* ---- copy buttons ---- */

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return Promise.reject(new Error("no clipboard"));
  }

  function selectContents(node) {
    const range = document.createRange();
    range.selectNodeContents(node);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function setUpCopyButtons() {
    for (const button of document.querySelectorAll("button.copy")) {
      button.addEventListener("click", () => {
        const block = button.parentNode.querySelector("pre");
        if (!block) return;
        const done = (label) => {
          button.textContent = label;
          window.setTimeout(() => {
            button.textContent = "Copy";
          }, 2000);
        };
        copyText(block.textContent).then(
          () => done("Copied"),
          () => {
            // No clipboard access (some file:// setups): select it for Ctrl+C instead.
            selectContents(block);
            done("Press Ctrl+C");
          },
        );
      });
    }
  }

  /* ---- charts ---- */

  const PLOT_CONFIG = {
    responsive: true,
    displaylogo: false,
    showSendToCloud: false,
    typesetMath: false,
    modeBarButtonsToRemove: ["select2d", "lasso2d"],
  };

  function columnRows(columns) {
    const names = Object.keys(columns || {});
    const length = names.length ? columns[names[0]].length : 0;
    const rows = [];
    for (let i = 0; i < length; i += 1) {
      const row = {};
      for (const name of names) row[name] = columns[name][i];
      rows.push(row);
    }
    return rows;
  }

  function segmentTrace(name, colour, segments, width) {
    // One trace per kind: every range is a line from start to end, gaps (null) between them.
    const x = [];
    const y = [];
    const text = [];
    for (const segment of segments) {
      x.push(segment.start, segment.end, null);
      y.push(segment.host, segment.host, null);
      text.push(segment.hover, segment.hover, null);
    }
    return {
      name: plotText(name),
      x,
      y,
      customdata: text,
      mode: "lines+markers",
      connectgaps: false,
      line: { color: colour, width },
      marker: { color: colour, size: width, symbol: "square" },
      hovertemplate: "%{customdata}<extra></extra>",
    };
  }

  function drawPortMap(data) {
    const node = document.getElementById("port-map-plot");
    if (!node || typeof Plotly === "undefined") return;
    const hosts = (data.hosts || []).map(plotText);
    const byKind = new Map();
    for (const row of columnRows(data.port_map)) {
      if (row.start === null || row.host === null) continue;
      const end = row.end === null ? row.start : row.end;
      const kind = row.kind === null ? "unknown" : String(row.kind);
      const hover =
        "<b>" + plotText(row.host) + "</b><br>" + plotText(kind) + ": " + portRange(row.start, end) +
        (row.label ? "<br>" + plotText(row.label) : "");
      if (!byKind.has(kind)) byKind.set(kind, []);
      byKind.get(kind).push({ host: plotText(row.host), start: row.start, end, hover });
    }
    const dynamic = [];
    for (const row of columnRows(data.dynamic)) {
      if (row.start === null || row.end === null) continue;
      const hover = "<b>" + plotText(row.host) + "</b><br>dynamic range: " + portRange(row.start, row.end);
      dynamic.push({ host: plotText(row.host), start: row.start, end: row.end, hover });
    }
    let points = dynamic.length * 3;
    byKind.forEach((segments) => {
      points += segments.length * 3;
    });
    const type = traceType(points);
    const height = Math.min(Math.max(hosts.length * 24 + 140, 280), 900);
    // Bars as thick as a host's row allows, so a thousand hosts do not smear into each other.
    const row = (height - 90) / Math.max(hosts.length, 1);
    const thickness = (most) => Math.max(1, Math.min(most, Math.floor(row * 0.6)));
    const used = new Map();
    const traces = [];
    if (dynamic.length) {
      const band = segmentTrace("dynamic range", "rgb(222,222,222)", dynamic, thickness(14));
      band.mode = "lines";
      traces.push(Object.assign(band, { type }));
    }
    byKind.forEach((segments, kind) => {
      const trace = segmentTrace(kind, colourFor(kind, used), segments, thickness(8));
      traces.push(Object.assign(trace, { type }));
    });
    const shapes = (data.wanted_ports || []).map((port) => ({
      type: "line",
      xref: "x",
      yref: "paper",
      x0: port,
      x1: port,
      y0: 0,
      y1: 1,
      layer: "below",
      line: { color: "#555", width: 1, dash: "dot" },
    }));
    const layout = {
      height,
      margin: { l: 150, r: 20, t: 40, b: 50 },
      hovermode: "closest",
      showlegend: true,
      legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom" },
      xaxis: {
        title: { text: "port" },
        range: [0, 65535],
        minallowed: 0,
        maxallowed: 65535,
        tickformat: "d",
        zeroline: false,
        showgrid: true,
      },
      yaxis: {
        type: "category",
        categoryorder: "array",
        categoryarray: hosts,
        autorange: "reversed",
        automargin: true,
        fixedrange: hosts.length < 40,
      },
      shapes,
      plot_bgcolor: "#fff",
      paper_bgcolor: "#fff",
      font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12 },
    };
    Plotly.newPlot(node, traces, layout, PLOT_CONFIG);
  }

  function causeLines(causes) {
    const list = Array.isArray(causes) ? causes : causes === null || causes === undefined ? [] : [causes];
    if (!list.length) return "nothing recorded changed";
    const shown = list.slice(0, 6).map(plotText);
    if (list.length > shown.length) shown.push("+" + (list.length - shown.length) + " more");
    return shown.join("<br>");
  }

  function plotTime(iso) {
    // Plotly reads "YYYY-MM-DD HH:MM:SS" as given; the report's times are all UTC.
    return String(iso).replace("T", " ").replace(/Z$/, "");
  }

  function drawTimeline(data) {
    const node = document.getElementById("timeline-plot");
    if (!node || typeof Plotly === "undefined") return;
    const byKind = new Map();
    const hosts = new Set();
    for (const row of columnRows(data.events)) {
      if (row.at === null || row.host === null) continue;
      const kind = row.kind === null ? "change" : String(row.kind);
      const host = plotText(row.host);
      hosts.add(host);
      const hover =
        "<b>" + host + "</b> " + plotText(row.at).replace("T", " ").replace(/Z$/, " UTC") +
        "<br>" + plotText(kind) + (row.protocol ? " (" + plotText(row.protocol) + ")" : "") +
        ": " + portRange(row.previous_start, row.previous_end) + " \u2192 " + portRange(row.start, row.end) +
        "<br><i>causes:</i><br>" + causeLines(row.causes);
      if (!byKind.has(kind)) byKind.set(kind, { x: [], y: [], text: [] });
      const series = byKind.get(kind);
      series.x.push(plotTime(row.at));
      series.y.push(host);
      series.text.push(hover);
    }
    let points = 0;
    byKind.forEach((series) => {
      points += series.x.length;
    });
    const type = traceType(points);
    const used = new Map();
    const traces = [];
    byKind.forEach((series, kind) => {
      traces.push({
        type,
        name: plotText(kind),
        x: series.x,
        y: series.y,
        customdata: series.text,
        mode: "markers",
        marker: { color: colourFor(kind, used), size: 11, line: { color: "#fff", width: 1 } },
        hovertemplate: "%{customdata}<extra></extra>",
      });
    });
    const order = (data.hosts || []).map(plotText).filter((host) => hosts.has(host));
    const layout = {
      height: Math.min(Math.max(order.length * 26 + 130, 260), 900),
      margin: { l: 150, r: 20, t: 40, b: 50 },
      hovermode: "closest",
      legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom" },
      xaxis: { type: "date", title: { text: "when (UTC)" } },
      yaxis: {
        type: "category",
        categoryorder: "array",
        categoryarray: order,
        autorange: "reversed",
        automargin: true,
        fixedrange: order.length < 40,
      },
      plot_bgcolor: "#fff",
      paper_bgcolor: "#fff",
      font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12 },
    };
    Plotly.newPlot(node, traces, layout, PLOT_CONFIG);
  }

  setUpSorting();
  setUpFilters();
  setUpCopyButtons();
  const data = readData();
  drawPortMap(data);
  drawTimeline(data);
})();
