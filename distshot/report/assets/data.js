/* distshot report: the data and the page's state. Indexes the records once (search text,
   facet values, counts), filters them, and reads and writes the state in the URL's #hash:

     #view=failures&q=shop&status=ok,failed&http=4xx&change=changed&group=3&open=42

   A record's key in the page is its position in D.state.records (= its "_i" in a static
   report); "open" and the cards use it. */
(function (D) {
  "use strict";

  const FACETS = (D.FACETS = {
    report: [
      { name: "status", label: "Status", values: ["ok", "failed", "rejected"] },
      { name: "http", label: "HTTP", values: ["2xx", "3xx", "4xx", "5xx", "none"] },
    ],
    diff: [
      {
        name: "change",
        label: "Change",
        values: ["changed", "failed", "new", "gone", "unchanged"],
      },
      { name: "http", label: "HTTP (new)", values: ["2xx", "3xx", "4xx", "5xx", "none"] },
    ],
  });

  const S = (D.state = {
    meta: {},
    kind: "report",
    records: [], // in data order; a record's position is its key in the page
    posOfI: new Map(), // _i -> position (group members name records by _i; live: seen)
    ids: new Set(), // live only: ids seen, for records a server sends without their _i
    hay: [], // per position: lower-cased URL and title, for search
    facet: { status: [], http: [], change: [] }, // per position: its value for each facet
    counts: { status: {}, http: {}, change: {} },
    groups: [],
    groupById: new Map(),
    ui: emptyUi(),
    filtered: [], // positions that pass the filters, in data order
    pass: new Uint8Array(0), // per position: 1 when it passes the filters
  });

  function emptyUi() {
    return {
      view: "gallery",
      group: null,
      q: "",
      status: new Set(),
      http: new Set(),
      change: new Set(),
      open: null,
    };
  }

  // ---- the hash -------------------------------------------------------------------------

  function toHash(ui) {
    const params = new URLSearchParams();
    if (ui.view !== "gallery") params.set("view", ui.view);
    if (ui.group != null) params.set("group", String(ui.group));
    if (ui.q) params.set("q", ui.q);
    for (const facet of FACETS[S.kind]) {
      if (ui[facet.name].size) params.set(facet.name, [...ui[facet.name]].join(","));
    }
    if (ui.open != null) params.set("open", String(ui.open));
    return `#${params}`;
  }

  function fromHash(hash) {
    const params = new URLSearchParams(hash.replace(/^#/, ""));
    const ui = emptyUi();
    const views = S.kind === "diff" ? ["gallery", "failures"] : ["gallery", "failures", "groups"];
    if (views.includes(params.get("view"))) ui.view = params.get("view");
    const group = parseInt(params.get("group"), 10);
    if (ui.view === "groups" && Number.isInteger(group)) ui.group = group;
    ui.q = params.get("q") || "";
    for (const facet of FACETS[S.kind]) {
      const values = (params.get(facet.name) || "").split(",");
      ui[facet.name] = new Set(values.filter((v) => facet.values.includes(v)));
    }
    const open = parseInt(params.get("open"), 10);
    if (Number.isInteger(open) && open >= 0) ui.open = open;
    return ui;
  }

  /** Index records (from the chunks, or from live polling): search text, facets, counts.
      A record whose _i is known is skipped; a live one also when its id is known (chunk
      records are not compared by id: two manifests of one report may share ids). */
  function addRecords(list, live = false) {
    const diff = S.kind === "diff";
    const keepIds = Boolean(S.meta.live); // live polling may send a record without its _i
    for (const record of list) {
      if (!record || typeof record !== "object") continue;
      const index = typeof record._i === "number" ? record._i : null;
      if (index !== null && S.posOfI.has(index)) continue;
      if (live && record.id != null && S.ids.has(record.id)) continue;
      if (keepIds && record.id != null) S.ids.add(record.id);
      for (const field of ["_thumb", "_image", "_group", "_source"]) {
        if (!(field in record)) record[field] = null;
      }
      const pos = S.records.length;
      S.records.push(record);
      if (index !== null) S.posOfI.set(index, pos);
      // Search text: URL, title and final URL (of both sides of a diff pair).
      const one = diff ? record.new || {} : record;
      const other = diff ? record.old || {} : {};
      S.hay.push(
        `${record.url || ""} ${one.title || ""} ${one.final_url || ""} ${other.title || ""} ${other.final_url || ""}`.toLowerCase(),
      );
      count("status", diff ? null : record.status || "unknown");
      count("http", D.httpClass(one.http_status ?? other.http_status));
      count("change", diff ? record.change || "unknown" : null);
    }
  }

  function count(facet, value) {
    S.facet[facet].push(value);
    if (value != null) S.counts[facet][value] = (S.counts[facet][value] || 0) + 1;
  }

  function indexGroups(list) {
    S.groups = (Array.isArray(list) ? list : [])
      .filter((g) => g && Array.isArray(g.members) && g.members.length > 0)
      .map((g) => ({
        id: g.id,
        phash: g.phash,
        size: g.size || g.members.length,
        members: g.members.map((i) => S.posOfI.get(i)).filter((pos) => pos !== undefined),
      }))
      .sort((a, b) => b.size - a.size);
    for (const group of S.groups) S.groupById.set(group.id, group);
  }

  function filter() {
    const terms = S.ui.q.toLowerCase().split(/\s+/).filter(Boolean);
    const facets = FACETS[S.kind].filter((f) => S.ui[f.name].size > 0);
    const n = S.records.length;
    const pass = new Uint8Array(n);
    const filtered = [];
    outer: for (let pos = 0; pos < n; pos++) {
      for (const term of terms) if (!S.hay[pos].includes(term)) continue outer;
      for (const f of facets) if (!S.ui[f.name].has(S.facet[f.name][pos])) continue outer;
      pass[pos] = 1;
      filtered.push(pos);
    }
    S.filtered = filtered;
    S.pass = pass;
  }

  Object.assign(D, { emptyUi, toHash, fromHash, addRecords, indexGroups, filter });
})((window.Distshot = window.Distshot || {}));
