/* portfleet report: sortable and filterable tables, copy buttons, the timeline's rows and the
 * Plotly charts.
 *
 * What grows with hosts and nights arrives packed (gzip, base64) in the #report-data block and
 * is built here once the first screen is up: the timeline's rows a page at a time, the charts
 * when they come into view (Plotly, packed in #plotly-code, is evaluated only then).
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

  // Timeline rows written at first, and added by each "Show more".
  const EVENT_PAGE = 200;
  // How near the window a chart is drawn, so it is there when scrolled to.
  const CHART_MARGIN = "600px 0px";

  async function unpack(id) {
    // A packed block: base64 of gzip, inflated by the browser itself.
    const node = document.getElementById(id);
    if (!node) return null;
    const binary = atob(node.textContent.trim());
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text();
  }

  async function readData() {
    const text = await unpack("report-data");
    return text === null ? {} : JSON.parse(text);
  }

  let plotlyLoading = null;

  function loadPlotly() {
    // Indirect eval runs the bundle in the global scope, where it defines window.Plotly.
    if (!plotlyLoading) {
      plotlyLoading = unpack("plotly-code").then((code) => {
        if (code !== null) (0, eval)(code);
      });
    }
    return plotlyLoading;
  }

  function whenNear(node, draw) {
    if (!node) return;
    const observer = new IntersectionObserver(
      (entries) => {
        if (!entries.some((entry) => entry.isIntersecting)) return;
        observer.disconnect();
        loadPlotly().then(draw).catch((error) => console.error("portfleet: a chart failed", error));
      },
      { rootMargin: CHART_MARGIN },
    );
    observer.observe(node);
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
      // A table whose rows the script writes sorts its data, not its rows (EventTable).
      if (!table.tHead || !table.tBodies.length || table.dataset.rows === "script") continue;
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
      if (!target || target.dataset.rows === "script") continue;
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
    const names = data.hosts || [];
    const hosts = names.map(plotText);
    const byKind = new Map();
    for (const row of columnRows(data.port_map)) {
      if (row.start === null || row.host === null) continue;
      row.host = names[row.host];
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
      row.host = names[row.host];
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
    const words = data.causes || [];
    for (const row of columnRows(data.events)) {
      if (row.at === null || row.host === null) continue;
      const kind = row.kind === null ? "change" : String(row.kind);
      const host = plotText(data.hosts[row.host]);
      hosts.add(host);
      const hover =
        "<b>" + host + "</b> " + plotText(row.at).replace("T", " ").replace(/Z$/, " UTC") +
        "<br>" + plotText(kind) + (row.protocol ? " (" + plotText(row.protocol) + ")" : "") +
        ": " + portRange(row.previous_start, row.previous_end) + " \u2192 " + portRange(row.start, row.end) +
        "<br><i>causes:</i><br>" + causeLines(row.causes.map((cause) => words[cause]));
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

  /* ---- the timeline's rows ---- */

  function when(iso) {
    // As the server writes times: to the minute, UTC.
    return iso === null || iso === undefined ? DASH : String(iso).replace("T", " ").slice(0, 16);
  }

  function count(value) {
    return value === null || value === undefined ? DASH : String(value);
  }

  function spanText(start, end) {
    // A range as a range with its size, like the server's port_span.
    if (start === end) return start + ", 1 port";
    return start + "\u2013" + end + ", " + (end - start + 1).toLocaleString("en-US") + " ports";
  }

  function rangeText(start, end) {
    if (start === null || start === undefined) return DASH;
    return start === end ? String(start) : start + "\u2013" + end;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function cell(tag, className, sort) {
    const node = element(tag, className);
    if (sort !== undefined) node.dataset.sort = sort === null ? "" : String(sort);
    return node;
  }

  class EventTable {
    /* The range changes, newest first: a page of rows at a time, sorted and filtered on the data. */

    constructor(table, data) {
      this.table = table;
      this.body = table.tBodies[0];
      this.data = data;
      this.columns = data.events || {};
      this.total = (this.columns.id || []).length;
      this.rowOf = new Map((this.columns.id || []).map((id, index) => [id, index]));
      this.order = Array.from({ length: this.total }, (_, index) => index);
      this.matching = this.order;
      this.limit = EVENT_PAGE;
      // Rows something on the page links to are always written, so each link lands.
      this.pinned = new Set();
      for (const link of document.querySelectorAll('a[href^="#event-"]')) {
        const row = this.rowOf.get(Number(link.getAttribute("href").slice(7)));
        if (row !== undefined) this.pinned.add(row);
      }
      this.texts = null;
      this.counter = document.querySelector('[data-count-for="' + CSS.escape(table.id) + '"]');
      this.more = document.querySelector('[data-more-for="' + CSS.escape(table.id) + '"]');
      this.filter = document.querySelector('input[data-filter-target="' + CSS.escape(table.id) + '"]');
      this.needle = "";
      this.listen();
      this.render();
    }

    listen() {
      for (const header of this.table.tHead.querySelectorAll("th")) {
        const button = header.querySelector("button.sort");
        if (!button) continue;
        button.addEventListener("click", () => {
          const descending = header.getAttribute("aria-sort") === "ascending";
          this.sortBy(header, descending);
        });
      }
      if (this.filter) {
        this.filter.addEventListener("input", () => {
          this.needle = this.filter.value.trim().toLocaleLowerCase();
          this.limit = EVENT_PAGE;
          this.applyFilter();
          this.render();
        });
      }
      if (this.more) {
        this.more.addEventListener("click", () => {
          this.limit += EVENT_PAGE;
          this.render();
        });
      }
    }

    key(index, column) {
      const c = this.columns;
      switch (column) {
        case 0: return this.data.hosts[c.host[index]];
        case 1: return c.at[index];
        case 2: return c.kind[index] + " " + c.protocol[index];
        case 3: return c.start[index];
        case 4: return c.previous_start[index];
        case 5: return c.ports[index];
        default: return this.causes(index).join(" ");
      }
    }

    sortBy(header, descending) {
      const column = Array.prototype.indexOf.call(header.parentNode.children, header);
      const type = header.dataset.type || "text";
      const keyed = this.order.map((index, position) => {
        const raw = this.key(index, column);
        const key = raw === null || raw === undefined || raw === "" ? null : raw;
        return { index, position, key };
      });
      keyed.sort((a, b) => {
        // Empty cells stay at the bottom whichever way the column is sorted.
        if (a.key === null || b.key === null) {
          if (a.key === b.key) return a.position - b.position;
          return a.key === null ? 1 : -1;
        }
        const order = compareKeys(a.key, b.key, type === "number" ? "number" : "text");
        return (descending ? -order : order) || a.position - b.position;
      });
      this.order = keyed.map((item) => item.index);
      for (const other of header.parentNode.children) other.setAttribute("aria-sort", "none");
      header.setAttribute("aria-sort", descending ? "descending" : "ascending");
      this.applyFilter();
      this.render();
    }

    causes(index) {
      return this.columns.causes[index].map((cause) => this.data.causes[cause]);
    }

    text(index) {
      // What a filter looks in: every cell's words, as the row shows them.
      const c = this.columns;
      return [
        this.data.hosts[c.host[index]], when(c.at[index]), when(c.previous_at[index]),
        c.kind[index], c.protocol[index], rangeText(c.start[index], c.end[index]),
        rangeText(c.previous_start[index], c.previous_end[index]), count(c.ports[index]),
        ...this.causes(index),
      ].join(" ").toLocaleLowerCase();
    }

    applyFilter() {
      if (this.needle === "") {
        this.matching = this.order;
        return;
      }
      if (this.texts === null) this.texts = this.order.map(() => null);
      this.matching = this.order.filter((index) => {
        if (this.texts[index] === null) this.texts[index] = this.text(index);
        return this.texts[index].includes(this.needle);
      });
    }

    show(id) {
      // Write the row of a change a link or the address asks for; return it.
      const index = this.rowOf.get(id);
      if (index === undefined) return null;
      if (!this.pinned.has(index)) {
        this.pinned.add(index);
        this.render();
      }
      return document.getElementById("event-" + id);
    }

    render() {
      const shown = this.matching.filter(
        (index, position) => position < this.limit || (this.needle === "" && this.pinned.has(index)),
      );
      const fragment = document.createDocumentFragment();
      for (const index of shown) fragment.appendChild(this.row(index));
      this.body.replaceChildren(fragment);
      const all = this.matching.length;
      if (this.counter) {
        // As the other tables say it; a filter's matches beyond the page are counted apart.
        let said = shown.length + " of " + this.total + " shown";
        if (shown.length === this.total) said = shown.length + " shown";
        else if (this.needle !== "" && shown.length < all) said += " (" + all + " match)";
        this.counter.textContent = said;
      }
      if (this.more) {
        const left = all - Math.min(all, this.limit);
        this.more.parentNode.hidden = left <= 0;
        this.more.textContent = "Show " + Math.min(left, EVENT_PAGE) + " more (" + left + " not shown)";
      }
    }

    row(index) {
      const c = this.columns;
      const tr = element("tr");
      tr.id = "event-" + c.id[index];
      tr.appendChild(element("th", "", this.data.hosts[c.host[index]])).scope = "row";
      const at = cell("td", "when", c.at[index]);
      const time = at.appendChild(element("time", "", when(c.at[index])));
      time.dateTime = c.at[index] || "";
      at.appendChild(element("div", "muted", "since " + when(c.previous_at[index])));
      tr.appendChild(at);
      const change = tr.appendChild(element("td"));
      change.appendChild(element("span", "tag tag-" + c.kind[index], c.kind[index]));
      change.appendChild(document.createTextNode(" "));
      change.appendChild(element("span", "muted", c.protocol[index]));
      const start = c.start[index];
      const end = c.end[index];
      const now = tr.appendChild(cell("td", "num", start));
      if (start !== null && c.ports[index] === end - start + 1) {
        now.textContent = spanText(start, end);
      } else {
        now.textContent = rangeText(start, end);
        if (start !== null) now.appendChild(element("div", "muted", "several ranges"));
      }
      const before = tr.appendChild(cell("td", "num", c.previous_start[index]));
      before.textContent = rangeText(c.previous_start[index], c.previous_end[index]);
      tr.appendChild(cell("td", "num", c.ports[index])).textContent = count(c.ports[index]);
      const causes = tr.appendChild(element("td", "wrap"));
      const words = this.causes(index);
      if (words.length) {
        const list = causes.appendChild(element("ul", "causes"));
        for (const word of words) list.appendChild(element("li", "", word));
      } else {
        causes.appendChild(element("span", "muted", "nothing recorded changed"));
      }
      return tr;
    }
  }

  function followEventLinks(events) {
    // A change asked for by the address, or by a link, is written before the page goes there.
    const land = () => {
      const match = /^#event-(\d+)$/.exec(location.hash);
      if (!match || document.getElementById(location.hash.slice(1))) return;
      const row = events.show(Number(match[1]));
      if (row) row.scrollIntoView();
    };
    window.addEventListener("hashchange", land);
    land();
  }

  setUpSorting();
  setUpFilters();
  setUpCopyButtons();
  readData()
    .then((data) => {
      const table = document.getElementById("events-table");
      if (table) followEventLinks(new EventTable(table, data));
      whenNear(document.getElementById("port-map-plot"), () => drawPortMap(data));
      whenNear(document.getElementById("timeline-plot"), () => drawTimeline(data));
      // Tests and the benchmark wait for this: every row a link points at is written.
      document.documentElement.dataset.ready = "true";
    })
    .catch((error) => console.error("portfleet: the report's details could not be read", error));
})();
