/* distshot report: the cards of the grids. A card is a link to a state of the page (its
   href is a #hash: open this shot, open this group), so Enter, a click, a new tab and the
   back button all work without extra code; gallery.js follows the hash. */
(function (D) {
  "use strict";

  const h = D.h;

  /** When an image does not load (moved, unreadable), say so instead of a broken icon. */
  function brokenImage(event) {
    const img = event.currentTarget;
    img.replaceWith(h("div", { class: "nothumb" }, h("span", {}, "image did not load")));
  }

  /** A lazy thumbnail, or a placeholder with a reason. */
  function thumbnail(src, alt, reason) {
    if (src) {
      return h("img", {
        src,
        alt: alt || "",
        loading: "lazy",
        decoding: "async",
        onerror: brokenImage,
      });
    }
    return h("div", { class: "nothumb" }, reason);
  }

  function httpTag(status) {
    if (typeof status !== "number") return null;
    return h("span", { class: `http h${D.httpClass(status)}`, title: "HTTP status" }, status);
  }

  function errorText(error) {
    if (!error) return "";
    return [error.type, error.message].filter(Boolean).join(": ");
  }

  /** Why a record has no picture: its error, or its status. */
  function noImageReason(record) {
    if (record.error) {
      return [h("strong", {}, record.error.type || "error"), h("span", {}, record.error.message)];
    }
    if (record.status === "ok")
      return h("span", {}, record.format === "pdf" ? "PDF" : "no preview");
    return h("span", {}, record.status || "no image");
  }

  /** A shot of a report: thumbnail with its status, URL, title, HTTP status and engine. */
  D.recordCard = function recordCard(pos) {
    const record = D.state.records[pos];
    const status = record.status || "unknown";
    const group = record._group != null ? D.state.groupById.get(record._group) : null;
    const size = record.width && record.height ? `${record.width}×${record.height}` : null;
    return h(
      "a",
      { class: `card st-${status}`, href: D.hrefFor({ open: pos }), title: record.url },
      h(
        "div",
        { class: "thumb" },
        thumbnail(D.thumbOf(record), record.url, noImageReason(record)),
        h("span", { class: `badge st-${status}` }, status),
      ),
      h(
        "div",
        { class: "body" },
        h("div", { class: "url" }, D.shortUrl(record.url) || "(no URL)"),
        h("div", { class: "title" }, record.title || errorText(record.error) || "—"),
        h(
          "div",
          { class: "meta" },
          httpTag(record.http_status),
          record.engine && h("span", { class: "engine" }, record.engine),
          size && h("span", {}, size),
          group && h("span", { class: "grp", title: "look-alike group" }, `≈${group.size}`),
        ),
      ),
    );
  };

  /** One side of a diff card: old, new or the diff image, with a caption. */
  function slot(src, caption, alt, missing) {
    return h(
      "figure",
      { class: "slot" },
      thumbnail(src, alt, h("span", {}, missing)),
      h("figcaption", {}, caption),
    );
  }

  const MISSING = {
    old: { new: "not in old", failed: "failed" },
    new: { gone: "not in new", failed: "failed" },
    diff: { unchanged: "no difference", new: "—", gone: "—", failed: "—" },
  };

  /** A URL of a diff: old, new and the diff image side by side, its change and figures. */
  D.diffCard = function diffCard(pos) {
    const record = D.state.records[pos];
    const change = record.change || "unknown";
    const side = record.new || record.old || {};
    const url = record.url || side.url;
    const figures = [];
    if (typeof record.changed_ratio === "number" && change !== "unchanged") {
      figures.push(
        h("span", { title: "share of pixels that differ" }, D.percent(record.changed_ratio)),
      );
    }
    if (typeof record.phash_distance === "number") {
      figures.push(h("span", { title: "pHash distance (bits)" }, `Δ${record.phash_distance}`));
    }
    if (record.size_changed) figures.push(h("span", { class: "warn" }, "size changed"));
    const oldHttp = record.old && record.old.http_status;
    const newHttp = record.new && record.new.http_status;
    return h(
      "a",
      { class: `card diff ch-${change}`, href: D.hrefFor({ open: pos }), title: url },
      h(
        "div",
        { class: "trio" },
        slot(D.thumbOf(record, "old_"), "old", `old: ${url}`, MISSING.old[change] || "no image"),
        slot(D.thumbOf(record, "new_"), "new", `new: ${url}`, MISSING.new[change] || "no image"),
        slot(
          D.safeUrl(record._diff_thumb || record._diff_image),
          "diff",
          `differences: ${url}`,
          MISSING.diff[change] || "no diff image",
        ),
      ),
      h(
        "div",
        { class: "body" },
        h("div", { class: "url" }, D.shortUrl(url) || "(no URL)"),
        h("div", { class: "title" }, side.title || errorText(record.error) || "—"),
        h(
          "div",
          { class: "meta" },
          h("span", { class: `badge ch-${change}` }, change),
          figures,
          oldHttp !== newHttp && oldHttp != null && newHttp != null
            ? h("span", { class: "http" }, `${oldHttp}→${newHttp}`)
            : httpTag(newHttp != null ? newHttp : oldHttp),
        ),
      ),
    );
  };

  /** A look-alike group as a stack: its representative (first member) and its size. */
  D.stackCard = function stackCard(group) {
    const record = D.state.records[group.members[0]] || {};
    return h(
      "a",
      {
        class: "card stack",
        href: D.hrefFor({ view: "groups", group: group.id, open: null }),
        title: `${group.size} look-alikes of ${record.url}`,
      },
      h(
        "div",
        { class: "thumb" },
        thumbnail(D.thumbOf(record), record.url, noImageReason(record)),
        h("span", { class: "count", "aria-label": `${group.size} shots` }, `×${group.size}`),
      ),
      h(
        "div",
        { class: "body" },
        h("div", { class: "url" }, D.shortUrl(record.url)),
        h("div", { class: "title" }, record.title || "—"),
        h(
          "div",
          { class: "meta" },
          h("span", {}, `group ${group.id}`),
          h("span", { class: "mono", title: "pHash of the representative" }, group.phash || ""),
        ),
      ),
    );
  };

  D.errorText = errorText;
  D.thumbnail = thumbnail;
})((window.Distshot = window.Distshot || {}));
