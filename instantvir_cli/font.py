"""A 5x7 bitmap font for the labels of `vir compare`: printable ASCII, drawn into uint8 RGB arrays.

    width = text_width("PSNR 35.06 dB", scale=2)
    draw_text(img, x, y, "PSNR 35.06 dB", scale=2, colour=(255, 255, 255))

Each glyph is 7 rows of 5 pixels above the baseline (an 8th below it for g, j, p, q, y), a row
written as a number whose bit 4 is the leftmost pixel; a character cell is 6 x 9 (one column and
one row of spacing), times `scale`. Characters outside
printable ASCII are drawn as '?'. Own glyphs rather than a font library: labels look the same
everywhere, and the sheet needs no dependency beyond numpy.
"""

from __future__ import annotations

import numpy as np

CELL_W, CELL_H = 6, 9          # a character's cell, in font pixels
GLYPH_W, GLYPH_H = 5, 8         # 7 rows above the baseline, one below

_ROWS = {
    " ": "00 00 00 00 00 00 00", "!": "04 04 04 04 04 00 04", '"': "0A 0A 0A 00 00 00 00",
    "#": "0A 0A 1F 0A 1F 0A 0A", "$": "04 0F 14 0E 05 1E 04", "%": "18 19 02 04 08 13 03",
    "&": "0C 12 14 08 15 12 0D", "'": "0C 04 08 00 00 00 00", "(": "02 04 08 08 08 04 02",
    ")": "08 04 02 02 02 04 08", "*": "00 04 15 0E 15 04 00", "+": "00 04 04 1F 04 04 00",
    ",": "00 00 00 00 0C 04 08", "-": "00 00 00 1F 00 00 00", ".": "00 00 00 00 00 0C 0C",
    "/": "00 01 02 04 08 10 00", "0": "0E 11 13 15 19 11 0E", "1": "04 0C 04 04 04 04 0E",
    "2": "0E 11 01 02 04 08 1F", "3": "1F 02 04 02 01 11 0E", "4": "02 06 0A 12 1F 02 02",
    "5": "1F 10 1E 01 01 11 0E", "6": "06 08 10 1E 11 11 0E", "7": "1F 01 02 04 08 08 08",
    "8": "0E 11 11 0E 11 11 0E", "9": "0E 11 11 0F 01 02 0C", ":": "00 0C 0C 00 0C 0C 00",
    ";": "00 0C 0C 00 0C 04 08", "<": "02 04 08 10 08 04 02", "=": "00 00 1F 00 1F 00 00",
    ">": "08 04 02 01 02 04 08", "?": "0E 11 01 02 04 00 04", "@": "0E 11 01 0D 15 15 0E",
    "A": "0E 11 11 11 1F 11 11", "B": "1E 11 11 1E 11 11 1E", "C": "0E 11 10 10 10 11 0E",
    "D": "1C 12 11 11 11 12 1C", "E": "1F 10 10 1E 10 10 1F", "F": "1F 10 10 1E 10 10 10",
    "G": "0E 11 10 17 11 11 0F", "H": "11 11 11 1F 11 11 11", "I": "0E 04 04 04 04 04 0E",
    "J": "07 02 02 02 02 12 0C", "K": "11 12 14 18 14 12 11", "L": "10 10 10 10 10 10 1F",
    "M": "11 1B 15 15 11 11 11", "N": "11 11 19 15 13 11 11", "O": "0E 11 11 11 11 11 0E",
    "P": "1E 11 11 1E 10 10 10", "Q": "0E 11 11 11 15 12 0D", "R": "1E 11 11 1E 14 12 11",
    "S": "0F 10 10 0E 01 01 1E", "T": "1F 04 04 04 04 04 04", "U": "11 11 11 11 11 11 0E",
    "V": "11 11 11 11 11 0A 04", "W": "11 11 11 15 15 15 0A", "X": "11 11 0A 04 0A 11 11",
    "Y": "11 11 11 0A 04 04 04", "Z": "1F 01 02 04 08 10 1F", "[": "0E 08 08 08 08 08 0E",
    "\\": "00 10 08 04 02 01 00", "]": "0E 02 02 02 02 02 0E", "^": "04 0A 11 00 00 00 00",
    "_": "00 00 00 00 00 00 1F", "`": "08 04 02 00 00 00 00", "a": "00 00 0E 01 0F 11 0F",
    "b": "10 10 16 19 11 11 1E", "c": "00 00 0E 10 10 11 0E", "d": "01 01 0D 13 11 11 0F",
    "e": "00 00 0E 11 1F 10 0E", "f": "06 09 08 1C 08 08 08", "g": "00 00 0F 11 11 0F 01 0E",
    "h": "10 10 16 19 11 11 11", "i": "04 00 0C 04 04 04 0E", "j": "02 00 06 02 02 02 12 0C",
    "k": "10 10 12 14 18 14 12", "l": "0C 04 04 04 04 04 0E", "m": "00 00 1A 15 15 11 11",
    "n": "00 00 16 19 11 11 11", "o": "00 00 0E 11 11 11 0E", "p": "00 00 1E 11 11 1E 10 10",
    "q": "00 00 0D 13 13 0F 01 01", "r": "00 00 16 19 10 10 10", "s": "00 00 0E 10 0E 01 1E",
    "t": "08 08 1C 08 08 09 06", "u": "00 00 11 11 11 13 0D", "v": "00 00 11 11 11 0A 04",
    "w": "00 00 11 11 15 15 0A", "x": "00 00 11 0A 04 0A 11", "y": "00 00 11 11 11 0F 01 0E",
    "z": "00 00 1F 02 04 08 1F", "{": "02 04 04 08 04 04 02", "|": "04 04 04 04 04 04 04",
    "}": "08 04 04 02 04 04 08", "~": "00 00 08 15 02 00 00",
}


def _bitmap(rows: str) -> np.ndarray:
    values = [int(r, 16) for r in rows.split()]
    values += [0] * (GLYPH_H - len(values))          # no descender
    return np.array([[(v >> (GLYPH_W - 1 - i)) & 1 for i in range(GLYPH_W)] for v in values], dtype=bool)


GLYPHS: dict[str, np.ndarray] = {ch: _bitmap(rows) for ch, rows in _ROWS.items()}   # (8, 5) bool each


def glyph(ch: str) -> np.ndarray:
    """The (8, 5) bool bitmap of `ch` ('?' for characters the font lacks)."""
    return GLYPHS.get(ch, GLYPHS["?"])


def text_width(text: str, scale: int = 1) -> int:
    """Pixels `text` takes across (the last character's spacing column not counted)."""
    return max(0, len(text) * CELL_W - 1) * scale


def text_height(scale: int = 1) -> int:
    return GLYPH_H * scale


def fit_text(text: str, width: int, scale: int = 1) -> str:
    """`text`, cut with '..' at the end when it is wider than `width` pixels."""
    if text_width(text, scale) <= width:
        return text
    n = max(0, (width // scale + 1) // CELL_W - 2)
    return text[:n] + ".." if n else ""


def draw_text(img: np.ndarray, x: int, y: int, text: str, scale: int = 1,
              colour: tuple[int, int, int] = (255, 255, 255)) -> int:
    """Draw `text` into `img` (H, W, 3) uint8 with its top-left corner at (x, y), clipped to the
    image; returns the x just past the text."""
    H, W = img.shape[:2]
    for i, ch in enumerate(text):
        bits = np.kron(glyph(ch), np.ones((scale, scale), dtype=bool))
        x0, y0 = x + i * CELL_W * scale, y
        x1, y1 = min(W, x0 + bits.shape[1]), min(H, y0 + bits.shape[0])
        cx, cy = max(0, x0), max(0, y0)
        if x1 <= cx or y1 <= cy:
            continue
        region = img[cy:y1, cx:x1]
        region[bits[cy - y0:y1 - y0, cx - x0:x1 - x0]] = colour
    return x + text_width(text, scale) + scale
