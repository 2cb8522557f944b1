/* distshot report: the detail view, a modal <dialog> (Esc closes it; focus goes back to the
   card). A shot shows its full image and every manifest field (nested ones flattened:
   timings.navigate_ms, error.type); a diff pair is drawn by compare.js. ArrowLeft and
   ArrowRight step through the shots the current view lists. */
(function (D) {
  "use strict";

  const h = D.h;
  const LINK_FIELDS = new Set(["url", "final_url", "link", "location"]);

  /** [["timings.navigate_ms", 340], ["error.type", "..."], ...]: nested objects flattened. */
  function flatten(object, prefix = "") {
    const rows = [];
    for (const [key, value] of Object.entries(object || {})) {
      if (!prefix && key.startsWith("_")) continue; // the report's own fields, shown apart
      const name = prefix + key;
      if (value && typeof value === "object" && !Array.isArray(value)) {
        const inner = flatten(value, `${name}.`);
        rows.push(...(inner.length ? inner : [[name, "{}"]]));
      } else rows.push([name, value]);
    }
    return rows;
  }

  /** A value as a table cell: units for times and sizes, links for URLs, a dash for null. */
  function cell(name, value) {
    if (value == null) return h("td", { class: "muted", title: "null" }, "—");
    const leaf = name.split(".").pop();
    if (typeof value === "number" && leaf.endsWith("_ms")) return h("td", {}, `${D.num(value)} ms`);
    if (typeof value === "number" && leaf === "bytes") {
      return h("td", {}, `${value} (${D.bytes(value)})`);
    }
    if (LINK_FIELDS.has(leaf) && D.safeUrl(value)) {
      return h(
        "td",
        { class: "wrap" },
        h("a", { href: value, target: "_blank", rel: "noopener" }, value),
      );
    }
    const text = Array.isArray(value) ? JSON.stringify(value) : String(value);
    return h("td", { class: leaf === "sha256" || leaf === "phash" ? "wrap mono" : "wrap" }, text);
  }

  function fieldsTable(record) {
    return h(
      "table",
      { class: "fields" },
      h("caption", {}, "Manifest record"),
      h(
        "tbody",
        {},
        flatten(record).map(([name, value]) =>
          h("tr", { "data-field": name }, h("th", { scope: "row" }, name), cell(name, value)),
        ),
      ),
    );
  }

  /** "NavigationTimeout took over 30 s", or nothing when there is no error. */
  D.errorLine = function errorLine(error) {
    if (!error) return null;
    return h(
      "p",
      { class: "error" },
      h("strong", {}, error.type || "error"),
      " ",
      error.message || "",
    );
  };

  /** The full image of a shot, linked to the original. */
  function fullImage(src, alt, format, label) {
    if (!src) return h("p", { class: "nothumb" }, "No image");
    const open = h(
      "a",
      { href: src, target: "_blank", rel: "noopener", class: "open" },
      label || "Open the original",
    );
    if (format === "pdf") return h("p", {}, "A PDF: ", open);
    return h(
      "figure",
      { class: "full" },
      h(
        "a",
        { href: src, target: "_blank", rel: "noopener", tabindex: "-1" },
        h("img", { src, alt, class: "full" }),
      ),
      h("figcaption", {}, open),
    );
  }

  function recordBody(record) {
    const S = D.state;
    const extra = [];
    if (record._source != null && S.meta.sources)
      extra.push(["source", S.meta.sources[record._source]]);
    if (record._group != null && S.groupById.has(record._group)) {
      const group = S.groupById.get(record._group);
      extra.push([
        "look-alikes",
        h(
          "a",
          { href: D.hrefFor({ view: "groups", group: group.id, open: null }) },
          `group ${group.id}: ${group.size} shots`,
        ),
      ]);
    }
    return [
      h("div", { class: "dimage" }, fullImage(D.safeUrl(record._image), record.url, record.format)),
      h(
        "div",
        { class: "dfields" },
        D.errorLine(record.error),
        fieldsTable(record),
        extra.length > 0 &&
          h(
            "table",
            { class: "fields" },
            h("caption", {}, "In this report"),
            h(
              "tbody",
              {},
              extra.map(([k, v]) =>
                h("tr", {}, h("th", { scope: "row" }, k), h("td", { class: "wrap" }, v)),
              ),
            ),
          ),
      ),
    ];
  }

  const dialog = () => document.getElementById("detail");

  /** Show shot `pos` (a position in the records) in the dialog, opening it if needed. */
  D.showDetail = function showDetail(pos) {
    const S = D.state;
    const record = S.records[pos];
    const el = dialog();
    if (!record) return D.hideDetail();
    const list = D.currentPositions();
    const at = list.indexOf(pos);
    const step = (delta) =>
      at >= 0 && list[at + delta] != null ? D.hrefFor({ open: list[at + delta] }) : null;
    const nav = (label, text, href) =>
      h(
        "button",
        {
          type: "button",
          class: "icon",
          "aria-label": label,
          disabled: !href,
          onclick: () => href && location.replace(href),
        },
        text,
      );
    const url = record.url || (record.new || record.old || {}).url || "(no URL)";
    el.replaceChildren(
      h(
        "div",
        { class: "dhead" },
        h("h2", { id: "detail-title", class: "wrap" }, url),
        h(
          "div",
          { class: "dnav" },
          nav("Previous shot", "‹", step(-1)),
          h("span", { class: "muted" }, at >= 0 ? `${at + 1} / ${list.length}` : ""),
          nav("Next shot", "›", step(1)),
          h(
            "button",
            {
              type: "button",
              class: "icon close",
              "aria-label": "Close",
              onclick: () => el.close(),
            },
            "✕",
          ),
        ),
      ),
      h("div", { class: "dbody" }, S.kind === "diff" ? D.diffBody(record) : recordBody(record)),
    );
    el.dataset.pos = String(pos);
    el.onkeydown = (event) => {
      if (event.target.matches("input, textarea, select")) return;
      const href =
        event.key === "ArrowLeft" ? step(-1) : event.key === "ArrowRight" ? step(1) : null;
      if (href) {
        event.preventDefault();
        location.replace(href);
      }
    };
    if (!el.open) el.showModal();
    el.querySelector(".close").focus();
  };

  // for compare.js, the diff's half of the detail view
  Object.assign(D, { flatten, cell, fullImage });

  D.hideDetail = function hideDetail() {
    const el = dialog();
    if (el.open) el.close();
  };
})((window.Distshot = window.Distshot || {}));
