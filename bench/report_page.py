"""Benchmark: the report page (distshot/report/assets) with 10,000 records, in Chromium.

A synthetic report (tests/reportkit.py's ``synthetic_report``: 10,000 records in 10 chunks,
the same four thumbnails repeated, look-alike groups of 50) opened from file:// in headless
Chromium, each run in a fresh page of one browser. Per run:

  first cards   navigation start -> the ``distshot:first-cards`` mark (the first cards are in
                the DOM, drawn from the first chunk), then the next frame
  all loaded    navigation start -> ``distshot:ready`` (every chunk indexed)
  search        a query typed into the search box (one input event) -> the cards redrawn
                and the next frame; it includes the page's 100 ms debounce, and "search
                work" is the same minus the time the debounce timer was due
  filter        a click on a status chip (no debounce) -> the cards redrawn and the next frame

The median over the runs (searches and filters: over every query of every run), with the
number of <img> and cards in the DOM after loading. No network: the page opens from disk.

    .venv/bin/python bench/report_page.py                   # 10,000 records, 5 runs
    .venv/bin/python bench/report_page.py --records 50000 --runs 3
    .venv/bin/python bench/report_page.py --json out.json   # the figures as JSON too (- : stdout)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from machine import describe, load

from distshot.engines.chromium import chromium_flags

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ["item 04321", "site-09", "item 0", "example"]
DEBOUNCE_MS = 100

# In the page: time from one input event (or click) to the next "distshot:render" mark, and
# to the frame after it.
MEASURE = """async ({query, chip}) => {
  const rendered = new Promise((resolve) => {
    const observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        if (entry.name === "distshot:render") { observer.disconnect(); resolve(entry.startTime); }
      }
    });
    observer.observe({ type: "mark" });
  });
  const t0 = performance.now();
  if (chip) document.querySelector(chip).click();
  else {
    const input = document.getElementById("q");
    input.value = query;
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }
  const at = await rendered;
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  return { render: at - t0, frame: performance.now() - t0,
           cards: document.querySelectorAll(".card").length };
}"""

LOADED = """async () => {
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  const at = (name) => performance.getEntriesByName(name)[0].startTime;
  return { first: at("distshot:first-cards"), ready: at("distshot:ready"),
           images: document.querySelectorAll("img").length,
           cards: document.querySelectorAll(".card").length };
}"""


def synthetic(out: Path, records: int) -> Path:
    # The tests' report writer (written from the folder contract), so the benchmark and the
    # scale test open the same kind of report.
    sys.path.insert(0, str(ROOT / "tests"))
    from reportkit import synthetic_report

    return synthetic_report(out, records)


def run(index: Path, runs: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    samples: dict[str, list[float]] = {
        k: [] for k in ("first", "ready", "search", "search_work", "filter")
    }
    dom: dict[str, int] = {}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path="/usr/bin/chromium", args=chromium_flags(("--no-sandbox",))
        )
        for _ in range(runs):
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(index.as_uri())
            page.wait_for_selector("html[data-state=ready]")
            loaded = page.evaluate(LOADED)
            samples["first"].append(loaded["first"])
            samples["ready"].append(loaded["ready"])
            dom = {"images": loaded["images"], "cards": loaded["cards"]}
            for query in QUERIES:
                found = page.evaluate(MEASURE, {"query": query, "chip": None})
                samples["search"].append(found["frame"])
                samples["search_work"].append(found["frame"] - DEBOUNCE_MS)
                page.evaluate(MEASURE, {"query": "", "chip": None})  # back to everything
            for _ in range(2):  # failed on, then off again
                chip = '.chip[data-facet="status"][data-value="failed"]'
                samples["filter"].append(
                    page.evaluate(MEASURE, {"query": "", "chip": chip})["frame"]
                )
            page.close()
        browser.close()
    return {
        "median_ms": {k: round(statistics.median(v), 1) for k, v in samples.items()},
        "max_ms": {k: round(max(v), 1) for k, v in samples.items()},
        "samples": {k: len(v) for k, v in samples.items()},
        "dom_after_load": dom,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="write the figures as JSON to this file (- : stdout)")
    args = parser.parse_args()
    print("\n".join(describe()))
    with tempfile.TemporaryDirectory(prefix="report-page-") as tmp:
        index = synthetic(Path(tmp), args.records)
        result = run(index, args.runs)
    result |= {"records": args.records, "runs": args.runs, "load_after": load()}
    labels = {
        "first": "navigation -> first cards",
        "ready": "navigation -> every chunk indexed",
        "search": f"search: input -> cards (incl. {DEBOUNCE_MS} ms debounce)",
        "search_work": "search work (the same, minus the debounce)",
        "filter": "filter chip: click -> cards",
    }
    print(f"\n{args.records:,} records, {args.runs} runs (Chromium headless, file://)\n")
    print("| measure | median ms | max ms | samples |\n|---|---:|---:|---:|")
    for key, label in labels.items():
        print(
            f"| {label} | {result['median_ms'][key]} | {result['max_ms'][key]} "
            f"| {result['samples'][key]} |"
        )
    dom = result["dom_after_load"]
    print(f"\nDOM after load: {dom['cards']} cards, {dom['images']} <img>")
    print(f"load average after: {result['load_after']}")
    if args.json:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
