"""``block_cookie_banners``: consent popups refused, or hidden where they cannot be.

DuckDuckGo's autoconsent (MPL-2.0; its JavaScript bundle and its ~1,000 declarative CMP rules
come from the ``duckduckgo-autoconsent-py`` wheel, which carries the npm package's build
unchanged) detects the consent-management platform on the page and runs its opt-out steps:
the "reject all" click a reader would make. It normally talks to a browser extension's
background script; here that side is a small relay in the page itself, so it needs nothing
from the engine but one evaluation, and every CDP engine runs it the same way.

What the page is left with: the popup gone, the page scrolling again. When the opt-out fails,
does not finish in time or finds nothing to refuse with, the popup the rules found is hidden
instead (its rule's own "prehide" selectors) and the page's scrolling restored.
"""

from __future__ import annotations

import functools
import json
import time

from .cdp_capture import Steps, evaluate

#: At most this long for the popup to be found and refused (ms).
CONSENT_BUDGET_MS = 6000
#: A page where no consent platform shows up within this long (ms) has none: what a page
#: without a popup pays. (autoconsent itself would wait on: after its first try it waits for
#: the DOM to change before looking again, and a finished page never changes.)
DETECT_MS = 1500
_DETECT_RETRIES = 20

_RELAY = """(rules, budget, retries, detectMs) => new Promise((finish) => {
  // The extension side of autoconsent: answers its messages from inside the page.
  const reply = (message) => setTimeout(() => window.autoconsentReceiveMessage(message));
  const found = [];
  let detected = false;
  const end = (outcome) => finish({outcome, found});
  window.autoconsentSendMessage = (message) => {
    if (message.type === "init") {
      reply({type: "initResp", rules: {autoconsent: rules}, config: {
        enabled: true, autoAction: "optOut", enablePrehide: true, enableCosmeticRules: true,
        detectRetries: retries, isMainWorld: true, logs: {errors: false}}});
    } else if (message.type === "eval") {
      let result = false;
      try { result = !!Function(message.code).call(window); } catch (e) {}
      reply({type: "evalResp", id: message.id, result});
    } else if (message.type === "cmpDetected") {
      detected = true;
    } else if (message.type === "popupFound") {
      found.push(message.cmp);
    } else if (message.type === "autoconsentDone") {
      end("done");
    } else if (message.type === "report") {
      const state = message.state.lifecycle;
      if (state === "nothingDetected" || state === "optOutFailed") end(state);
      if (state === "optOutSucceeded") setTimeout(() => end("done"), 300);
    }
  };
  setTimeout(() => end("timeout"), budget);
  setTimeout(() => { if (!detected) end("nothingDetected"); }, Math.min(detectMs, budget));
  BUNDLE
})"""

# After the opt-out, whatever its outcome: a popup still in the page (the opt-out failed, ran
# out of time, or had nothing to click) is hidden by its rule's selectors, and the scroll lock
# such popups put on the page is lifted. A popup the page removed itself leaves it alone.
_HIDE = """(selectors) => {
  const present = (s) => {
    try { return document.querySelector(s) !== null; } catch (e) { return false; }
  };
  if (!selectors.some(present)) return false;
  const style = document.createElement("style");
  style.textContent = selectors.map((s) => s + " { display: none !important; }").join("\\n") +
    "\\nhtml, body { overflow: auto !important; }";
  (document.head || document.documentElement).appendChild(style);
  return true;
}"""


@functools.cache
def _rules() -> list[dict[str, object]]:
    from duckduckgo_autoconsent import rules_json

    rules: list[dict[str, object]] = json.loads(rules_json())
    return rules


@functools.cache
def _call_prefix() -> str:
    """The relay with the bundle inside, called with the rules (the package's JSON text as
    it is): about a megabyte of expression, built once per process."""
    from duckduckgo_autoconsent import bundle, rules_json

    return f"({_RELAY.replace('BUNDLE', bundle())})({rules_json()}, "


def refuse_consent(deadline: float) -> Steps[str]:
    """Refuse (or hide) the page's consent popup; returns what happened: "done",
    "nothingDetected", "optOutFailed" or "timeout"."""
    budget = max(500, min(CONSENT_BUDGET_MS, int((deadline - time.monotonic()) * 1000) // 3))
    answer = yield from evaluate(f"{_call_prefix()}{budget}, {_DETECT_RETRIES}, {DETECT_MS})")
    outcome = str(answer.get("outcome", "timeout"))
    found = set(answer.get("found", []))
    if found:
        selectors = [
            str(selector)
            for rule in _rules()
            if rule.get("name") in found
            for selector in rule.get("prehideSelectors", []) or []  # type: ignore[attr-defined]
        ]
        yield from evaluate(f"({_HIDE})({json.dumps(selectors)})")
    return outcome
