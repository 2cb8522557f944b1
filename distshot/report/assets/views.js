/* distshot report: the views inside <main>. Each is made by a function of the element it
   fills and returns {update(fresh), destroy()}: update runs after every change of data or
   filters (fresh: the filters changed, so start from the top; else live records arrived). */
(function (D) {
  "use strict";

  const h = D.h;
  const PAGE_ROWS = 200; // failures table: rows added per "show more"
  const views = (D.views = {});

  function emptyNote(text) {
    return h("p", { class: "empty" }, text);
  }

  /** A windowed grid of cards over a list the view computes; an empty note when none. */
  function gridView(main, { heading, items, render, keyOf, minWidth, empty, ofShots = true }) {
    const note = emptyNote(empty);
    const host = h("div", { class: "cards" });
    main.replaceChildren(...[heading, note, host].filter(Boolean));
    const grid = new D.VirtualGrid(host, { minWidth, render, keyOf, onRender: D.onCardsRendered });
    let list = [];
    return {
      // The shots this view lists, in order: the detail view steps through them.
      positions: () => (ofShots ? list : D.state.filtered),
      update(fresh) {
        list = items();
        note.hidden = list.length > 0;
        note.textContent = D.state.records.length ? empty : "No records (yet).";
        if (fresh) scrollToTop(main);
        grid.setItems(list, { fresh });
      },
      destroy: () => grid.destroy(),
    };
  }

  /** After the filters change, show the top of the new list (not the middle of nowhere). */
  function scrollToTop(main) {
    const top = main.getBoundingClientRect().top + window.scrollY;
    if (window.scrollY > top) window.scrollTo({ top });
  }

  views.gallery = (main) =>
    gridView(main, {
      items: () => D.state.filtered,
      render: D.state.kind === "diff" ? D.diffCard : D.recordCard,
      keyOf: (pos) => pos,
      minWidth: D.state.kind === "diff" ? 420 : 240,
      empty: "No shot matches these filters.",
    });

  /** Look-alike groups, largest first, each a stack; a group shows if a member passes. */
  views.groups = function groups(main) {
    const S = D.state;
    const alone = S.records.filter((r) => r._group == null && r.status === "ok").length;
    const threshold = S.meta.threshold != null ? ` within ${S.meta.threshold} bits` : "";
    const heading = h(
      "div",
      { class: "viewhead" },
      h("h2", {}, "Look-alike groups"),
      h(
        "p",
        { class: "muted" },
        `Shots whose perceptual hashes (pHash) are${threshold}, largest group first; ${D.num(alone)} shots look like no other. Open a stack to see its members.`,
      ),
    );
    return gridView(main, {
      heading,
      items: () => S.groups.filter((g) => g.members.some((pos) => S.pass[pos])),
      render: D.stackCard,
      keyOf: (group) => `g${group.id}`,
      ofShots: false,
      minWidth: 240,
      empty: "No look-alike group matches these filters.",
    });
  };

  /** The members of one group, as cards (then the detail view from there). */
  views.group = function group(main) {
    const S = D.state;
    const found = S.groupById.get(S.ui.group);
    const heading = h(
      "div",
      { class: "viewhead" },
      h(
        "a",
        {
          "data-patch": JSON.stringify({ group: null, open: null }),
          href: D.hrefFor({ group: null, open: null }),
          class: "back",
        },
        "← All groups",
      ),
      h(
        "h2",
        {},
        found ? `Group ${found.id}: ${found.size} look-alike shots` : `No group ${S.ui.group}`,
      ),
    );
    return gridView(main, {
      heading,
      items: () => (found ? found.members.filter((pos) => S.pass[pos]) : []),
      render: D.recordCard,
      keyOf: (pos) => pos,
      minWidth: 240,
      empty: found
        ? "No member of this group matches these filters."
        : "This group is not in the report.",
    });
  };

  /** Whether a record is a failure: failed or rejected (report), failed (diff). */
  D.isFailure = function isFailure(record) {
    return D.state.kind === "diff"
      ? record.change === "failed"
      : record.status === "failed" || record.status === "rejected";
  };

  function failureSide(record) {
    if (D.state.kind !== "diff") return record.status;
    const oldBad = record.old && record.old.status !== "ok";
    const newBad = record.new && record.new.status !== "ok";
    return oldBad && newBad ? "both" : oldBad ? "old" : newBad ? "new" : "—";
  }

  /** A row of the failures table; a diff's row reads line and attempts from its sides. */
  function failureRow(pos) {
    const r = D.state.records[pos];
    const side = r.new || r.old || {};
    const pick = (field) => r[field] ?? side[field] ?? "";
    const error = r.error || {};
    return h(
      "tr",
      { tabindex: "0", "data-pos": pos, class: `st-${r.status || r.change}` },
      h("td", { class: "num" }, pick("line")),
      h("td", { class: "wrap" }, h("a", { href: D.hrefFor({ open: pos }) }, pick("url"))),
      h("td", {}, failureSide(r)),
      h("td", { class: "etype" }, error.type || "—"),
      h("td", { class: "wrap emsg" }, error.message || "—"),
      h("td", { class: "num" }, pick("attempts")),
    );
  }

  /** Failed and rejected shots as a table, with a count per error type; rows open the detail. */
  views.failures = function failures(main) {
    const S = D.state;
    let limit = PAGE_ROWS;
    const summary = h("ul", { class: "errsum" });
    const body = h("tbody");
    const more = h("button", {
      type: "button",
      class: "more",
      onclick: () => {
        limit += PAGE_ROWS;
        fill();
      },
    });
    const note = emptyNote("No failure matches these filters.");
    const table = h(
      "table",
      { class: "failures" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          [
            "line",
            "URL",
            S.kind === "diff" ? "side" : "status",
            "error type",
            "message",
            "attempts",
          ].map((t) => h("th", { scope: "col" }, t)),
        ),
      ),
      body,
    );
    main.replaceChildren(
      h("div", { class: "viewhead" }, h("h2", {}, "Failures"), summary),
      note,
      h("div", { class: "tablewrap" }, table),
      more,
    );
    // A row opens the detail view, like a card (click or Enter).
    body.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-pos]");
      if (row && !event.target.closest("a"))
        location.hash = D.hrefFor({ open: Number(row.dataset.pos) });
    });
    body.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && event.target.matches("tr[data-pos]")) event.target.click();
    });
    let rows = [];
    function fill() {
      const from = body.children.length;
      for (const pos of rows.slice(from, limit)) body.append(failureRow(pos));
      const left = rows.length - body.children.length;
      more.hidden = left <= 0;
      more.textContent = `Show ${Math.min(left, PAGE_ROWS)} more (${D.num(left)} left)`;
    }
    return {
      positions: () => rows,
      update(fresh) {
        rows = S.filtered.filter((pos) => D.isFailure(S.records[pos]));
        if (fresh) limit = PAGE_ROWS;
        body.replaceChildren();
        note.hidden = rows.length > 0;
        const types = new Map();
        for (const pos of rows) {
          const type = (S.records[pos].error || {}).type || "(no error type)";
          types.set(type, (types.get(type) || 0) + 1);
        }
        summary.replaceChildren(
          ...[...types]
            .sort((a, b) => b[1] - a[1])
            .map(([type, n]) => h("li", {}, h("strong", {}, type), ` ${D.num(n)}`)),
        );
        fill();
        D.onCardsRendered(body.children.length);
      },
      destroy() {},
    };
  };
})((window.Distshot = window.Distshot || {}));
