/* distshot report: the live gallery. When meta.live is set the page is served over http by
   `distshot serve`, and polls meta.live.manifest_url for the batch's records as they come
   (FORMAT.md, "Live gallery", is the server's side of this):

   - GET manifest_url?offset=N, N = how many complete lines of the manifest it has read.
     The body is NDJSON: manifest records, with the report's "_" fields when the server
     has them. A server may answer from line N (and say so in X-Distshot-Offset: N) or
     send every line so far (no header): the page keeps records whose _i (or id) it has
     not seen, so both work. A last line without its newline is read again next time.
   - X-Distshot-Batch-Status: done | cancelled ends the polling (after this response).
   - Errors (network, non-2xx) do not stop it: it retries, slower each time, up to 30 s. */
(function (D) {
  "use strict";

  const MAX_DELAY_MS = 30000;
  const FINAL = new Set(["done", "cancelled"]);

  function withOffset(url, offset) {
    return `${url}${url.includes("?") ? "&" : "?"}offset=${offset}`;
  }

  /** Complete lines of an NDJSON body, parsed; a bad line is skipped (and logged). */
  function parseLines(text) {
    const end = text.lastIndexOf("\n");
    const complete = end < 0 ? [] : text.slice(0, end).split("\n");
    const records = [];
    for (const line of complete) {
      if (!line.trim()) continue;
      try {
        records.push(JSON.parse(line));
      } catch (error) {
        console.warn("distshot live: a manifest line is not JSON", error);
      }
    }
    return { records, lines: complete.length };
  }

  /** Poll until the batch is over. onRecords(list) gets each response's records (seen or
      not: the caller keeps the new ones); onStatus(text) says what the poller is doing. */
  D.startLive = function startLive(live, { onRecords, onStatus }) {
    const every = Math.max(50, Number(live.poll_ms) || 1000);
    let offset = 0;
    let failures = 0;
    const poller = {
      stopped: false,
      polls: 0,
      stop: () => {
        poller.stopped = true;
        clearTimeout(timer);
      },
    };
    let timer = 0;

    async function poll() {
      if (poller.stopped) return;
      poller.polls += 1;
      let status = "";
      try {
        const response = await fetch(withOffset(live.manifest_url, offset), {
          cache: "no-store",
          headers: { Accept: "application/x-ndjson" },
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        status = (response.headers.get("X-Distshot-Batch-Status") || "").trim().toLowerCase();
        const start = parseInt(response.headers.get("X-Distshot-Offset") || "0", 10) || 0;
        const { records, lines } = parseLines(await response.text());
        offset = start + lines;
        failures = 0;
        onRecords(records);
      } catch (error) {
        failures += 1;
        onStatus(`connection lost (${error.message}), retrying`);
      }
      if (FINAL.has(status)) {
        poller.stop();
        onStatus(status);
        return;
      }
      if (!failures) onStatus(status ? `live (${status})` : "live");
      if (!poller.stopped) timer = setTimeout(poll, Math.min(MAX_DELAY_MS, every * 2 ** failures));
    }

    poll();
    return poller;
  };
})((window.Distshot = window.Distshot || {}));
