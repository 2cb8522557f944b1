/* distshot report: the app. Loads data/ (meta.js, the record chunks, groups.js) as scripts
   (fetch() is blocked on file://), and draws the header, the current view and the detail
   dialog from the state in the URL's #hash (data.js), so a reload or a shared link shows
   the same thing. Links (cards, tabs) push a new hash and the hashchange handler applies
   it; filters and search replace the hash as they change. */
(function (D) {
  "use strict";

  const h = D.h;
  const SEARCH_DEBOUNCE_MS = 100;
  const FACETS = D.FACETS;
  const S = D.state;

  /** The href of the current state changed by `patch` (cards and tabs link to these). */
  D.hrefFor = (patch) => D.toHash({ ...S.ui, ...patch });

  const searchBox = () => document.getElementById("q");
  let searchPending = false; // typed, not yet applied (the search waits for a pause)

  /** Change the state: push a history entry (views, a group) or replace it (filters). */
  function setUi(patch, { push = false } = {}) {
    if (searchPending && !("q" in patch)) patch = { ...patch, q: searchBox().value.trim() };
    searchPending = false; // (what was typed is in this state: the debounced call is moot)
    const hash = D.hrefFor(patch);
    if (push) location.hash = hash;
    else location.replace(hash);
    apply(D.fromHash(hash));
  }

  let openedByLink = false; // the detail was opened by a history entry: closing goes back
  window.addEventListener("hashchange", () => {
    if (!view) return; // not drawn yet: start() reads the hash when it draws
    const ui = D.fromHash(location.hash);
    if (D.toHash(ui) === D.toHash(S.ui)) return; // our own replace(): already applied
    if (ui.open == null) openedByLink = false;
    else if (S.ui.open == null) openedByLink = true; // (stepping to the next shot keeps it)
    apply(ui);
  });

  // ---- drawing ---------------------------------------------------------------------------

  let view = null;
  let viewKey = "";
  let filterKey = null;

  /** Make the page show S.ui = ui: filters, view, detail; each redone only if it changed. */
  function apply(ui) {
    S.ui = ui;
    const fKey = JSON.stringify([ui.q, ...FACETS[S.kind].map((f) => [...ui[f.name]].sort())]);
    const vKey = `${ui.view}/${ui.group}`;
    const fresh = fKey !== filterKey;
    if (fresh) D.filter();
    filterKey = fKey;
    drawHeader();
    if (vKey !== viewKey) {
      if (view) view.destroy();
      const make =
        ui.view === "groups"
          ? ui.group != null
            ? D.views.group
            : D.views.groups
          : D.views[ui.view];
      view = make(document.getElementById("main"));
      viewKey = vKey;
      view.update(true);
    } else if (fresh) view.update(true);
    if (ui.open != null && S.records[ui.open]) D.showDetail(ui.open);
    else D.hideDetail();
    performance.mark("distshot:render");
  }

  /** Live records arrived: index them, filter again, keep the view where it is. */
  function grow(list, live = false) {
    const before = S.records.length;
    D.addRecords(list, live);
    if (S.records.length === before) return;
    D.filter();
    drawHeader();
    view.update(false);
  }

  /** The shots the current view lists, in order (the detail's previous and next). */
  D.currentPositions = () => (view ? view.positions() : S.filtered);

  let firstCards = false;
  D.onCardsRendered = function onCardsRendered(n) {
    if (n > 0 && !firstCards) {
      firstCards = true;
      performance.mark("distshot:first-cards");
    }
  };

  function chip(facet, value) {
    return h(
      "button",
      {
        type: "button",
        class: `chip f-${facet.name} v-${value}`,
        "data-facet": facet.name,
        "data-value": value,
        "aria-pressed": "false",
        onclick: () => toggle(facet.name, value),
      },
      h("span", { class: "label" }, value),
      h("span", { class: "n" }),
    );
  }

  function toggle(name, value) {
    const set = new Set(S.ui[name]);
    if (set.has(value)) set.delete(value);
    else set.add(value);
    setUi({ [name]: set, open: null });
  }

  function buildHeader() {
    document.title = S.meta.title || document.title;
    document.getElementById("title").textContent = S.meta.title || document.title;
    const sources = S.meta.sources || [];
    const when = S.meta.generated_at
      ? `generated ${S.meta.generated_at.replace("T", " ").replace("Z", " UTC")}`
      : "";
    const from =
      S.kind === "diff" && sources.length === 2
        ? `${sources[0]} → ${sources[1]}`
        : sources.join(", ");
    const subtitle = document.getElementById("subtitle");
    subtitle.textContent = [from, when].filter(Boolean).join(" · ");
    subtitle.title = sources.join("\n");
    document.getElementById("facets").replaceChildren(
      ...FACETS[S.kind].map((facet) =>
        h(
          "div",
          { class: "chips", role: "group", "aria-label": facet.label },
          h("span", { class: "facet-label" }, facet.label),
          facet.values.map((v) => chip(facet, v)),
        ),
      ),
    );
    const tabs = [
      ["gallery", S.kind === "diff" ? "Changes" : "Gallery"],
      ["failures", "Failures"],
    ];
    if (S.kind === "report" && S.meta.groups) tabs.push(["groups", "Look-alikes"]);
    document.getElementById("views").replaceChildren(
      ...tabs.map(([name, label]) =>
        h(
          "a",
          {
            class: "tab",
            "data-view": name,
            "data-patch": JSON.stringify({ view: name, group: null, open: null }),
          },
          label,
          " ",
          h("span", { class: "n" }),
        ),
      ),
    );
    const search = searchBox();
    const onSearch = D.debounce(() => {
      if (searchPending) setUi({ q: search.value.trim(), open: null });
    }, SEARCH_DEBOUNCE_MS);
    search.addEventListener("input", () => {
      searchPending = true;
      onSearch();
    });
    document.getElementById("clear").addEventListener("click", () => {
      search.value = "";
      setUi({ q: "", status: new Set(), http: new Set(), change: new Set(), open: null });
    });
  }

  function drawHeader() {
    const ui = S.ui;
    const search = searchBox();
    if (!searchPending && document.activeElement !== search && search.value.trim() !== ui.q) {
      search.value = ui.q; // the state came from the hash (a reload, back)
    }
    for (const button of document.querySelectorAll("#facets .chip")) {
      const { facet, value } = button.dataset;
      const n = S.counts[facet][value] || 0;
      button.querySelector(".n").textContent = D.num(n);
      button.dataset.count = String(n);
      button.classList.toggle("zero", n === 0);
      button.setAttribute("aria-pressed", String(ui[facet].has(value)));
    }
    const filtering = ui.q !== "" || FACETS[S.kind].some((f) => ui[f.name].size > 0);
    document.getElementById("clear").hidden = !filtering;
    const tabCounts = {
      gallery: S.records.length,
      failures: S.records.filter(D.isFailure).length,
      groups: S.groups.length,
    };
    for (const tab of document.querySelectorAll("#views .tab")) {
      tab.querySelector(".n").textContent = D.num(tabCounts[tab.dataset.view]);
      if (ui.view === tab.dataset.view) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    // Links that name a state (tabs, "all groups") follow the filters.
    for (const link of document.querySelectorAll("a[data-patch]")) {
      link.href = D.hrefFor(JSON.parse(link.dataset.patch));
    }
    const shown = document.getElementById("shown");
    shown.dataset.shown = String(S.filtered.length);
    if (S.loading) {
      shown.textContent = `loading… ${D.num(S.records.length)} of ${D.num(S.meta.total)}`;
      return;
    }
    shown.textContent = filtering
      ? `${D.num(S.filtered.length)} of ${D.num(S.records.length)} shown`
      : `${D.num(S.records.length)} shots`;
  }

  function fail(message) {
    document.documentElement.dataset.state = "error";
    document.getElementById("main").replaceChildren(h("p", { class: "error" }, message));
  }

  // ---- start -----------------------------------------------------------------------------

  /** Load meta.js, then the record chunks all at once (async=false scripts still run in
      order, so records keep their order). The first chunk is drawn as soon as it has run,
      the others join it like live records: the first cards do not wait for 10,000. */
  async function start() {
    try {
      await D.loadScript("data/meta.js");
    } catch {
      return fail(
        "data/meta.js did not load: open index.html inside its report folder (with its data/ folder beside it).",
      );
    }
    S.meta = window.DISTSHOT_META || {};
    S.kind = S.meta.kind === "diff" ? "diff" : "report";
    document.documentElement.dataset.kind = S.kind;
    buildHeader();
    document.getElementById("detail").addEventListener("close", () => {
      // Closed by Esc or its button: drop "open" from the state (back if a link opened it).
      if (S.ui.open == null) return;
      if (openedByLink) history.back();
      else setUi({ open: null });
    });
    window.DISTSHOT_RECORDS = [];
    const chunks = Math.max(0, Number(S.meta.chunks) || 0);
    const names = Array.from(
      { length: chunks },
      (_, k) => `data/records-${String(k).padStart(4, "0")}.js`,
    );
    const missing = [];
    S.loading = chunks > 0;
    let drawn = false;
    const receive = () => {
      const list = window.DISTSHOT_RECORDS.splice(0); // indexed below; the chunk's array goes
      if (drawn) return grow(list);
      drawn = true;
      D.addRecords(list);
      apply(D.fromHash(location.hash));
    };
    if (!chunks) receive();
    await Promise.all(
      names.map((name) => D.loadScript(name).then(receive, () => missing.push(name))),
    );
    if (!drawn) receive(); // every chunk failed: draw the empty page
    if (S.meta.groups && S.kind === "report") {
      await D.loadScript("data/groups.js").catch(() => missing.push("data/groups.js"));
      D.indexGroups(window.DISTSHOT_GROUPS);
    }
    S.loading = false;
    // Everything is here: draw again what needed all of it (groups, a shared #open=42).
    drawHeader();
    if (S.ui.view === "groups") {
      viewKey = ""; // made before the groups were known
      apply(S.ui);
    } else if (S.ui.open != null && !document.getElementById("detail").open) apply(S.ui);
    if (missing.length) {
      document
        .querySelector("header.top")
        .append(h("p", { class: "error" }, `Missing data files: ${missing.join(", ")}`));
    }
    document.documentElement.dataset.state = "ready";
    performance.mark("distshot:ready");
    if (S.meta.live && S.meta.live.manifest_url) startLive();
  }

  function startLive() {
    const status = document.getElementById("live-status");
    status.hidden = false;
    D.live = D.startLive(S.meta.live, {
      onRecords: (list) => grow(list, true),
      onStatus: (text) => {
        status.textContent = text;
        status.dataset.status = text;
      },
    });
  }

  start();
})((window.Distshot = window.Distshot || {}));
