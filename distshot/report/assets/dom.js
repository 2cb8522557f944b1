/* distshot report: DOM and formatting helpers shared by the page's other scripts.

   Every script of the page is a classic script (Chromium does not run ES modules from
   file://), wrapped in a function that adds its part to one namespace, window.Distshot. */
(function (D) {
  "use strict";

  /** Build an element: h("a", {href: "#x", class: "card"}, "text", childNode, [more]).
      Children and the "text" attribute are always set as text, never parsed as HTML: URLs,
      titles and error messages come from the pages that were shot. "on*" attributes are
      listeners; null, undefined and false attributes are left out. */
  D.h = function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key === "style") el.style.cssText = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child == null || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  };

  /** A URL that is safe to put in src/href: relative paths (the report's own files) and
      http(s)/file URLs. Anything else (javascript:, data:, ...) gives null. */
  D.safeUrl = function safeUrl(value) {
    if (typeof value !== "string" || value === "") return null;
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(value);
    if (!scheme) return value;
    return ["http", "https", "file"].includes(scheme[1].toLowerCase()) ? value : null;
  };

  /** "2xx".."5xx" for an HTTP status, "none" when there is none (failed, rejected). */
  D.httpClass = function httpClass(status) {
    return typeof status === "number" && status >= 200 && status < 600
      ? `${Math.floor(status / 100)}xx`
      : "none";
  };

  const numberFormat = new Intl.NumberFormat("en-US");
  D.num = (n) => (typeof n === "number" ? numberFormat.format(n) : "—");

  D.bytes = function bytes(n) {
    if (typeof n !== "number") return "—";
    const units = ["B", "KiB", "MiB", "GiB"];
    let value = Math.abs(n);
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    const sign = n < 0 ? "-" : "";
    return `${sign}${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
  };

  /** A share (0..1) as a percentage with two decimals; a tiny non-zero share is "<0.01 %". */
  D.percent = function percent(ratio) {
    if (typeof ratio !== "number") return "—";
    if (ratio > 0 && ratio < 0.0001) return "<0.01 %";
    return `${(ratio * 100).toFixed(2)} %`;
  };

  /** A URL without its scheme, for card captions (the full URL is the title and alt). */
  D.shortUrl = (url) => (typeof url === "string" ? url.replace(/^https?:\/\//i, "") : "");

  D.debounce = function debounce(fn, ms) {
    let timer = 0;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  };

  /** Load a classic script (the report's data files); resolves when it has run. */
  D.loadScript = function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.async = false; // several at once still run in the order they were added
      script.onload = () => resolve();
      script.onerror = () => reject(new Error(`${src} did not load`));
      document.head.append(script);
    });
  };

  /** The image to show small for a record: its thumbnail, or (live gallery only, where the
      service may not have made thumbnails yet) the full image scaled down. */
  D.thumbOf = function thumbOf(record, prefix = "") {
    const thumb = D.safeUrl(record[`_${prefix}thumb`]);
    if (thumb) return thumb;
    return D.state && D.state.meta && D.state.meta.live
      ? D.safeUrl(record[`_${prefix}image`])
      : null;
  };
})((window.Distshot = window.Distshot || {}));
