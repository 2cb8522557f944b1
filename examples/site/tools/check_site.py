#!/usr/bin/env python3
# Copyright The distshot Authors
# SPDX-License-Identifier: Apache-2.0
"""Check that the demo site is self-contained.

For every .html, .css and .svg file under examples/site/ this verifies that
  * each referenced file (href, src, srcset, CSS url(), @import) exists,
  * each #fragment link points to an id that exists in the target page,
  * nothing points off-site (no scheme://, no protocol-relative //, no data
    fetched from elsewhere); SVG/XML namespace declarations are allowed.
It also checks that every page listed in ../urls-demo.txt exists.
Standard library only. Exit status 0 when all is well, 1 otherwise.

    python3 examples/site/tools/check_site.py
"""

import html.parser
import os
import re
import sys
from urllib.parse import unquote, urlsplit

SITE = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
URLS = os.path.join(os.path.dirname(SITE), "urls-demo.txt")
URL_ATTRS = {"href", "src", "srcset", "poster", "data", "action", "formaction", "xlink:href"}
CSS_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)|@import\s+(['"])(.*?)\3""", re.I)
NAMESPACE_OK = re.compile(r"^http://www\.w3\.org/")


class Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs, self.ids, self.styles = [], set(), []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif name == "srcset":
                self.refs += [c.strip().split()[0] for c in value.split(",") if c.strip()]
            elif name in URL_ATTRS:
                self.refs.append(value)
            elif name == "style":
                self.styles.append(value)
        self._in_style = tag == "style"

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def css_refs(text):
    return [m.group(2) if m.group(2) is not None else m.group(4) for m in CSS_URL.finditer(text)]


def parse(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".css"):
        return css_refs(text), set(), text
    p = Refs()
    p.feed(text)
    refs = list(p.refs)
    for s in p.styles:
        refs += css_refs(s)
    return refs, p.ids, text


def main():
    problems = []
    files = []
    for root, _, names in os.walk(SITE):
        files += [os.path.join(root, n) for n in names if n.endswith((".html", ".css", ".svg"))]
    ids = {f: parse(f)[1] for f in files if f.endswith(".html")}
    checked = 0
    for path in sorted(files):
        rel = os.path.relpath(path, SITE)
        refs, _, text = parse(path)
        # Anything that looks like an absolute URL anywhere in the text (outside namespaces).
        for m in re.finditer(r"""(?:[a-z][a-z0-9+.-]*:)?//[^\s"'<>)]+""", text, re.I):
            url = m.group(0)
            if not NAMESPACE_OK.match(url):
                problems.append(f"{rel}: external URL {url!r}")
        for ref in refs:
            checked += 1
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc or ref.startswith("/"):
                if not NAMESPACE_OK.match(ref):
                    problems.append(f"{rel}: non-relative reference {ref!r}")
                continue
            target = (
                path
                if not parts.path
                else os.path.normpath(os.path.join(os.path.dirname(path), unquote(parts.path)))
            )
            if not target.startswith(SITE + os.sep):
                problems.append(f"{rel}: {ref!r} leaves the site folder")
            elif not os.path.isfile(target):
                problems.append(f"{rel}: {ref!r} -> missing file {os.path.relpath(target, SITE)}")
            elif (
                parts.fragment
                and target.endswith(".html")
                and parts.fragment not in ids.get(target, set())
            ):
                problems.append(
                    f"{rel}: {ref!r} -> no id {parts.fragment!r} in {os.path.relpath(target, SITE)}"
                )
    listed = 0
    if os.path.isfile(URLS):
        with open(URLS, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                listed += 1
                if not line.startswith("{base}/"):
                    problems.append(f"urls-demo.txt:{n}: does not start with {{base}}/: {line!r}")
                elif not os.path.isfile(os.path.join(SITE, line[len("{base}/") :])):
                    problems.append(f"urls-demo.txt:{n}: no such page {line!r}")
    else:
        problems.append("urls-demo.txt not found next to site/")
    for p in problems:
        print("FAIL", p)
    print(
        f"{len(files)} files scanned, {checked} references checked, {listed} demo URLs checked, "
        f"{len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
