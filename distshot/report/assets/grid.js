/* distshot report: a windowed grid. Only the rows near the viewport are in the DOM (a few
   dozen cards), whatever the number of items: 10,000 shots never make 10,000 <img>.

   Every card of a grid has the same height (the CSS fixes it), so the grid is a tall box
   of rows x rowHeight and its visible window is arithmetic. The row height is measured on
   the first rendered card, and again when the width (so the number of columns) changes. */
(function (D) {
  "use strict";

  const BUFFER_ROWS = 2; // rows kept above and below the viewport
  const MAX_CARDS = 240; // a ceiling whatever the screen: tiny cards on a huge display

  class VirtualGrid {
    /** host: an empty element; render(item, position) -> card element;
        keyOf(item) -> a stable key (a card whose key stays is kept, not rebuilt). */
    constructor(host, { minWidth, render, keyOf, onRender }) {
      this.host = host;
      this.minWidth = minWidth;
      this.render = render;
      this.keyOf = keyOf;
      this.onRender = onRender || (() => {});
      this.items = [];
      this.nodes = new Map(); // key -> card element, the cards now in the DOM
      this.cols = 1;
      this.rowHeight = 0;
      this.gap = 12;
      this.range = [0, 0];
      host.classList.add("vgrid");
      this.inner = D.h("div", { class: "vgrid-rows" });
      host.append(this.inner);
      this.frame = 0;
      this.onScroll = () => this.schedule();
      window.addEventListener("scroll", this.onScroll, { passive: true });
      // A new width may mean other columns and card heights (its height is ours: ignored).
      this.width = 0;
      this.resizer = new ResizeObserver(() => {
        if (this.host.clientWidth !== this.width) this.layout();
      });
      this.resizer.observe(host);
      host.addEventListener("keydown", (event) => this.onKey(event));
    }

    /** Show these items. fresh: a different list (filters changed), so cards are rebuilt;
        otherwise (live records appended) the cards already shown stay as they are. */
    setItems(items, { fresh = true } = {}) {
      this.items = items;
      if (fresh) {
        for (const el of this.nodes.values()) el.remove();
        this.nodes.clear();
      }
      // Same width, same cards' height: no need to measure again.
      if (this.rowHeight && this.host.clientWidth === this.width) this.update(true);
      else this.layout();
    }

    destroy() {
      window.removeEventListener("scroll", this.onScroll);
      this.resizer.disconnect();
      cancelAnimationFrame(this.frame);
    }

    schedule() {
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.update();
      });
    }

    /** Columns from the width; then the window; then the row height from a real card. */
    layout() {
      this.width = this.host.clientWidth;
      const width = this.width || window.innerWidth;
      this.gap = parseFloat(getComputedStyle(this.inner).columnGap) || 12;
      this.cols = Math.max(1, Math.floor((width + this.gap) / (this.minWidth + this.gap)));
      this.inner.style.gridTemplateColumns = `repeat(${this.cols}, minmax(0, 1fr))`;
      this.rowHeight = 0; // measure again: the card width, so its height, may have changed
      this.update(true);
    }

    update(force = false) {
      const rows = Math.ceil(this.items.length / this.cols);
      const rowHeight = this.rowHeight || 300; // a guess until a card is measured
      const box = this.host.getBoundingClientRect();
      const top = Math.max(0, -box.top);
      const bottom = Math.max(top, Math.min(rows * rowHeight, window.innerHeight - box.top));
      let first = Math.max(0, Math.floor(top / rowHeight) - BUFFER_ROWS);
      let last = Math.min(rows, Math.ceil(bottom / rowHeight) + BUFFER_ROWS);
      last = Math.min(last, first + Math.max(1, Math.floor(MAX_CARDS / this.cols)));
      if (first >= last && rows > 0) first = Math.max(0, last - 1);
      const start = first * this.cols;
      const end = Math.min(this.items.length, last * this.cols);
      if (!force && start === this.range[0] && end === this.range[1]) return;
      this.range = [start, end];
      this.place(start, end);
      this.inner.style.transform = `translateY(${first * rowHeight}px)`;
      this.host.style.height = `${rows * rowHeight}px`;
      if (!this.rowHeight && this.inner.firstElementChild) {
        // Measure once a card exists; lay out again with the true height.
        this.rowHeight = this.inner.firstElementChild.getBoundingClientRect().height + this.gap;
        if (this.rowHeight > this.gap) return this.update(true);
        this.rowHeight = 0;
      }
      this.onRender(end - start);
    }

    /** Put the cards [start, end) in the DOM, keeping those already there (in order). */
    place(start, end) {
      const wanted = new Map();
      for (let pos = start; pos < end; pos++) wanted.set(this.keyOf(this.items[pos]), pos);
      for (const [key, el] of this.nodes) if (!wanted.has(key)) el.remove();
      const nodes = new Map();
      let cursor = this.inner.firstElementChild;
      for (const [key, pos] of wanted) {
        let el = this.nodes.get(key);
        if (el) {
          if (el !== cursor) this.inner.insertBefore(el, cursor);
          cursor = el.nextElementSibling;
        } else {
          el = this.render(this.items[pos], pos);
          this.inner.insertBefore(el, cursor);
        }
        el.dataset.pos = String(pos);
        nodes.set(key, el);
      }
      this.nodes = nodes;
    }

    /** Arrow keys move between cards (and scroll the grid so the next one exists). */
    onKey(event) {
      const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: this.cols, ArrowUp: -this.cols };
      const card = event.target.closest && event.target.closest("[data-pos]");
      if (!(event.key in moves) || !card || event.altKey || event.ctrlKey || event.metaKey) {
        return;
      }
      const target = Number(card.dataset.pos) + moves[event.key];
      if (target < 0 || target >= this.items.length) return;
      event.preventDefault();
      this.focusPosition(target);
    }

    focusPosition(pos) {
      const find = () => this.inner.querySelector(`[data-pos="${pos}"]`);
      let el = find();
      if (!el) {
        // Out of the window: scroll its row into view, render, then focus.
        const row = Math.floor(pos / this.cols);
        const hostTop = this.host.getBoundingClientRect().top + window.scrollY;
        window.scrollTo({ top: hostTop + row * (this.rowHeight || 300) - 120 });
        this.update(true);
        el = find();
      }
      if (el) {
        el.focus();
        el.scrollIntoView({ block: "nearest" });
      }
    }
  }

  D.VirtualGrid = VirtualGrid;
})((window.Distshot = window.Distshot || {}));
