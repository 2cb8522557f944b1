#!/usr/bin/env python3
# Copyright The distshot Authors
# SPDX-License-Identifier: Apache-2.0
"""Generate the PNG images of the distshot demo site.

Standard library only (zlib + struct); the output is deterministic, so running
it again yields byte-identical files. Usage, from anywhere:

    python3 examples/site/tools/make_images.py

The SVG images in ../images/ are hand-written and are not touched.
"""

import itertools
import math
import os
import struct
import zlib

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "images")


def _chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def _filter_rows(rows, bpp):
    """Per row, pick None/Sub/Up, whichever has the smallest sum of |bytes|."""
    out = bytearray()
    prev = bytes(len(rows[0]))
    for row in rows:
        sub = bytes((row[i] - (row[i - bpp] if i >= bpp else 0)) & 0xFF for i in range(len(row)))
        up = bytes((row[i] - prev[i]) & 0xFF for i in range(len(row)))

        def cost(b):
            return sum(v if v < 128 else 256 - v for v in b)

        best = min(((0, row), (1, sub), (2, up)), key=lambda c: cost(c[1]))
        out.append(best[0])
        out += best[1]
        prev = row
    return bytes(out)


def write_png(name, width, height, pixel):
    """pixel(x, y) -> (r, g, b) with 0..255 ints. Writes 8-bit RGB."""
    rows = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            r, g, b = pixel(x, y)
            row += bytes(
                (max(0, min(255, int(r))), max(0, min(255, int(g))), max(0, min(255, int(b))))
            )
        rows.append(bytes(row))
    data = zlib.compress(_filter_rows(rows, 3), 9)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(png)
    print(f"{name:24} {width}x{height}  {len(png):>7} bytes")


def lerp(a, b, t):
    return tuple(a[i] + (b[i] - a[i]) * t for i in range(3))


def ramp(stops, t):
    """Piecewise-linear colour ramp; stops = [(pos, (r,g,b)), ...]."""
    t = max(0.0, min(1.0, t))
    for (p0, c0), (p1, c1) in itertools.pairwise(stops):
        if t <= p1:
            return lerp(c0, c1, (t - p0) / (p1 - p0) if p1 > p0 else 0)
    return stops[-1][1]


def hero(x, y, w=1200, h=420):
    # Diagonal indigo -> violet -> coral gradient with soft "sun" and rolling hills.
    t = (x / w) * 0.7 + (y / h) * 0.3
    c = ramp([(0, (49, 46, 129)), (0.55, (124, 58, 237)), (1, (251, 113, 133))], t)
    d = math.hypot(x - 0.78 * w, y - 0.38 * h)
    if d < 70:
        c = lerp(c, (254, 240, 138), 0.95)
    elif d < 140:
        c = lerp(c, (254, 240, 138), 0.35 * (1 - (d - 70) / 70))
    hill1 = h * 0.72 + 28 * math.sin(x / 130.0) + 14 * math.sin(x / 47.0 + 1)
    hill2 = h * 0.84 + 22 * math.sin(x / 90.0 + 2)
    if y > hill2:
        c = (30, 27, 75)
    elif y > hill1:
        c = lerp(c, (55, 48, 163), 0.8)
    return c


def sunset(x, y, w=480, h=320):
    sky = [(0, (15, 23, 42)), (0.45, (190, 24, 93)), (0.75, (251, 146, 60)), (1, (253, 224, 71))]
    horizon = h * 0.7
    if y <= horizon:  # sky with a setting sun sitting on the horizon
        c = ramp(sky, y / h)
        if math.hypot(x - w / 2, y - horizon) < 56:
            c = (254, 215, 102)
        return c
    # water: mirrored sky, darker, with horizontal sun glints that get sparser with depth
    ry = 2 * horizon - y + 3 * math.sin(x / 9.0 + y / 3.0)
    c = lerp(ramp(sky, ry / h), (15, 23, 42), 0.45)
    depth = (y - horizon) / (h - horizon)
    if abs(x - w / 2) < 60 * (1 - depth) + 10 and int(y) % 6 < 2:
        c = lerp(c, (254, 215, 102), 0.7 * (1 - depth))
    return c


def checker(x, y, w=480, h=320):
    s = 40
    dark = ((x // s) + (y // s)) % 2
    base = (30, 41, 59) if dark else (241, 245, 249)
    accent = ramp([(0, (56, 189, 248)), (1, (167, 139, 250))], x / w)
    return lerp(base, accent, 0.25)


def stripes(x, y, w=480, h=320):
    band = int((x + y) / 32) % 5
    palette = [(239, 68, 68), (245, 158, 11), (16, 185, 129), (59, 130, 246), (139, 92, 246)]
    return lerp(palette[band], (255, 255, 255), 0.15 * (y / h))


def rings(x, y, w=480, h=320):
    d = math.hypot(x - w / 2, y - h / 2)
    ring = int(d / 18) % 2
    c = ramp([(0, (20, 184, 166)), (1, (14, 116, 144))], d / (w / 2))
    return lerp(c, (240, 253, 250), 0.8) if ring else c


def plasma(x, y, w=480, h=320):
    # Quantised so deflate stays small while still looking "organic".
    v = (
        math.sin(x / 23.0)
        + math.sin(y / 17.0)
        + math.sin((x + y) / 31.0)
        + math.sin(math.hypot(x - 240, y - 160) / 19.0)
    )
    t = round((v + 4) / 8 * 12) / 12
    return ramp([(0, (12, 74, 110)), (0.5, (236, 72, 153)), (1, (250, 204, 21))], t)


def thumb(x, y, w=64, h=64):
    # Tiny pixel-art camera, scaled 4x, used as an inline icon on the fonts page.
    art = [
        "................",
        "................",
        "......####......",
        ".....#....#.....",
        ".##############.",
        ".#............#.",
        ".#....####....#.",
        ".#...#oooo#...#.",
        ".#..#oo..oo#..#.",
        ".#..#o....o#..#.",
        ".#..#oo..oo#..#.",
        ".#...#oooo#...#.",
        ".#....####....#.",
        ".##############.",
        "................",
        "................",
    ]
    ch = art[y // 4][x // 4]
    return {"#": (49, 46, 129), "o": (124, 58, 237), ".": (237, 233, 254)}[ch]


def main():
    os.makedirs(OUT, exist_ok=True)
    write_png("hero.png", 1200, 420, hero)
    write_png("sunset.png", 480, 320, sunset)
    write_png("checkerboard.png", 480, 320, checker)
    write_png("stripes.png", 480, 320, stripes)
    write_png("rings.png", 480, 320, rings)
    write_png("plasma.png", 480, 320, plasma)
    write_png("pixel-camera.png", 64, 64, thumb)


if __name__ == "__main__":
    main()
