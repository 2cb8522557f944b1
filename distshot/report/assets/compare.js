/* distshot report: the detail of a diff pair. Old and new under a draggable divider (or
   one at a time), the diff image, the figures (changed pixels, pHash distance, size and
   bytes), and old | new for every manifest field, the fields that differ marked. */
(function (D) {
  "use strict";

  const h = D.h;

  /** old | new, one row per field of either; rows that differ are marked. */
  function compareTable(record) {
    const old = new Map(D.flatten(record.old));
    const now = new Map(D.flatten(record.new));
    const names = [...new Set([...old.keys(), ...now.keys()])];
    const top = D.flatten(record).filter(([name]) => !/^(old|new)\./.test(name));
    return [
      h(
        "table",
        { class: "fields" },
        h("caption", {}, "Change"),
        h(
          "tbody",
          {},
          top.map(([name, value]) =>
            h("tr", { "data-field": name }, h("th", { scope: "row" }, name), D.cell(name, value)),
          ),
        ),
      ),
      h(
        "table",
        { class: "fields compare-fields" },
        h("caption", {}, "Manifest records"),
        h("thead", {}, h("tr", {}, h("th", {}, "field"), h("th", {}, "old"), h("th", {}, "new"))),
        h(
          "tbody",
          {},
          names.map((name) => {
            const differs = JSON.stringify(old.get(name)) !== JSON.stringify(now.get(name));
            return h(
              "tr",
              { "data-field": name, class: differs ? "differs" : null },
              h("th", { scope: "row" }, name),
              D.cell(name, old.get(name)),
              D.cell(name, now.get(name)),
            );
          }),
        ),
      ),
    ];
  }

  /** Old and new in one frame: new underneath, old on top clipped at the divider. */
  function compare(oldSrc, newSrc, url) {
    const frame = h(
      "div",
      { class: "compare", "data-mode": "slider", style: "--pos: 50%" },
      h("img", { class: "new", src: newSrc, alt: `new: ${url}` }),
      h("img", { class: "old", src: oldSrc, alt: `old: ${url}` }),
      h("div", { class: "divider", "aria-hidden": "true" }),
      h("span", { class: "side left", "aria-hidden": "true" }, "old"),
      h("span", { class: "side right", "aria-hidden": "true" }, "new"),
    );
    const range = h("input", {
      type: "range",
      class: "divider-range",
      min: "0",
      max: "100",
      value: "50",
      step: "1",
      "aria-label": "Divider: old on the left, new on the right",
    });
    const setPos = (pct) => {
      const value = Math.max(0, Math.min(100, pct));
      frame.style.setProperty("--pos", `${value}%`);
      range.value = String(Math.round(value));
    };
    range.addEventListener("input", () => setPos(Number(range.value)));
    // Dragging anywhere on the picture moves the divider too.
    const drag = (event) => {
      const box = frame.getBoundingClientRect();
      setPos(((event.clientX - box.left) / box.width) * 100);
    };
    frame.addEventListener("pointerdown", (event) => {
      if (frame.dataset.mode !== "slider") return;
      frame.setPointerCapture(event.pointerId);
      drag(event);
      frame.addEventListener("pointermove", drag);
    });
    frame.addEventListener("pointerup", () => frame.removeEventListener("pointermove", drag));
    const modes = ["slider", "old", "new"].map((mode) =>
      h(
        "button",
        {
          type: "button",
          class: "mode",
          "data-mode": mode,
          "aria-pressed": String(mode === "slider"),
          onclick: () => setMode(mode),
        },
        mode === "slider" ? "Slider" : mode === "old" ? "Old" : "New",
      ),
    );
    function setMode(mode) {
      frame.dataset.mode = mode;
      range.hidden = mode !== "slider";
      for (const button of modes)
        button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
    }
    return h(
      "div",
      { class: "comparer" },
      h("div", { class: "modes", role: "group", "aria-label": "Compare old and new" }, modes),
      frame,
      range,
    );
  }

  function sizeOf(record) {
    return record && record.width ? `${record.width}×${record.height}` : "—";
  }

  /** "19.5 KiB → 29.3 KiB (+9.8 KiB)" */
  function bytesChange(oldRec, newRec) {
    const text = `${D.bytes(oldRec.bytes)} → ${D.bytes(newRec.bytes)}`;
    if (typeof oldRec.bytes !== "number" || typeof newRec.bytes !== "number") return text;
    const delta = newRec.bytes - oldRec.bytes;
    return `${text} (${delta >= 0 ? "+" : ""}${D.bytes(delta)})`;
  }

  /** The figures of a pair: its change, pixels changed, pHash distance, size and bytes. */
  function facts(record) {
    const oldRec = record.old || {};
    const newRec = record.new || {};
    const size = record.size_changed
      ? `${sizeOf(oldRec)} → ${sizeOf(newRec)} (changed)`
      : sizeOf(record.new || record.old);
    const distance = record.phash_distance != null ? String(record.phash_distance) : "—";
    const rows = [
      ["change", "", h("span", { class: `badge ch-${record.change}` }, record.change)],
      ["pixels changed", "ratio", D.percent(record.changed_ratio)],
      ["pHash distance", "phash", distance],
      ["size", "size", size],
      ["bytes", "bytes", bytesChange(oldRec, newRec)],
    ];
    return h(
      "dl",
      { class: "facts" },
      rows.map(([term, name, value]) => [h("dt", {}, term), h("dd", { class: name }, value)]),
    );
  }

  /** Links to both originals. */
  function opens(oldSrc, newSrc) {
    const link = (src, text) => h("a", { href: src, target: "_blank", rel: "noopener" }, text);
    return h(
      "p",
      { class: "opens" },
      link(oldSrc, "Open the old original"),
      " · ",
      link(newSrc, "Open the new original"),
    );
  }

  D.diffBody = function diffBody(record) {
    const url = record.url || (record.new || record.old || {}).url;
    const oldSrc = D.safeUrl(record._old_image);
    const newSrc = D.safeUrl(record._new_image);
    const diffSrc = D.safeUrl(record._diff_image);
    const pictures =
      oldSrc && newSrc
        ? [compare(oldSrc, newSrc, url), opens(oldSrc, newSrc)]
        : D.fullImage(
            newSrc || oldSrc,
            url,
            (record.new || record.old || {}).format,
            newSrc ? "Open the new original" : "Open the old original",
          );
    return [
      h(
        "div",
        { class: "dimage" },
        facts(record),
        D.errorLine(record.error),
        pictures,
        diffSrc &&
          h(
            "figure",
            { class: "diffimg" },
            h("img", { src: diffSrc, alt: `differences: ${url}` }),
            h("figcaption", {}, "Differences (the pixels that changed)"),
          ),
      ),
      h("div", { class: "dfields" }, compareTable(record)),
    ];
  };
})((window.Distshot = window.Distshot || {}));
