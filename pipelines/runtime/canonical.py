"""The canonical form of a text: what a reader sees, with the tricks that hide it from a model
undone. Training, evaluation and serving all score `canonicalise(text)` (the classifiers in
`classifier.py` apply it), so an insult typed in fullwidth, mathematical bold or circled letters,
spaced out, with Cyrillic look-alikes, behind a right-to-left override or split by zero-width
characters reaches the model as the plain insult.

Not the de-duplication key: `data.normalise` folds to lower-case ASCII to find near-duplicates;
this keeps case, accents and every script.

The transforms, in order (docs/robustness.md gives the rules and what they leave alone):
1. NFKC: fullwidth, mathematical alphanumerics, circled and squared letters, ligatures.
2. Invisible characters removed; bidirectional overrides resolved into reading order.
3. Cyrillic and Greek look-alikes folded to Latin in words that are not Cyrillic or Greek.
4. Spaced-out letters joined into words.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Zero-width and invisible characters with no meaning in any script: soft hyphen, combining
# grapheme joiner, Mongolian vowel separator, zero-width space, word joiner, invisible operators,
# zero-width no-break space (BOM), Hangul fillers, and the tag characters (U+E0000 block).
_INVISIBLE = re.compile("[\u00ad\u034f\u180e\u200b\u2060-\u2064\ufeff\u115f\u1160\u3164\uffa0"
                        "\U000e0000-\U000e007f]")
# ZWJ and ZWNJ shape Arabic and Indic script and join emoji sequences (a family emoji is
# three emoji and two ZWJs): they go only where they touch a Latin letter, and do nothing.
_LATIN_LETTER = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"
_LATIN_WORD_LETTER = re.compile(f"[{_LATIN_LETTER}]")
_LATIN_JOINERS = re.compile(f"(?<=[{_LATIN_LETTER}])[\u200c\u200d]+|[\u200c\u200d]+"
                            f"(?=[{_LATIN_LETTER}])")
_MARKS = "\u200e\u200f\u061c"  # LRM, RLM, ALM: direction marks
_EMBED_LTR, _EMBED_RTL, _POP = "\u202a", "\u202b", "\u202c"
_OVERRIDE_LTR, _OVERRIDE_RTL = "\u202d", "\u202e"
_ISOLATES, _POP_ISOLATE = "\u2066\u2067\u2068", "\u2069"
_BIDI = set(_MARKS + _EMBED_LTR + _EMBED_RTL + _POP + _OVERRIDE_LTR + _OVERRIDE_RTL
            + _ISOLATES + _POP_ISOLATE)
_HAS_BIDI = re.compile(f"[{''.join(sorted(_BIDI))}]")

# Cyrillic and Greek letters drawn like a Latin letter in common fonts. Unicode's confusables
# skeleton is not used: it also folds Latin letters into each other ("l" to "I", "rn" to "m"),
# which would change ordinary English.
LOOKALIKES = {
    # Cyrillic
    "а": "a", "е": "e", "ѐ": "è", "ё": "ë", "і": "i", "ї": "ï", "ј": "j", "к": "k", "о": "o",
    "р": "p", "с": "c", "у": "y", "х": "x", "ѕ": "s", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "ӏ": "l", "ү": "y",
    "А": "A", "В": "B", "Е": "E", "Ѐ": "È", "Ё": "Ë", "І": "I", "Ї": "Ï", "Ј": "J", "К": "K",
    "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S",
    "Һ": "H", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I", "Ү": "Y",
    # Greek
    "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "ϲ": "c", "ϳ": "j",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C", "Ϳ": "J",
}
_LOOKALIKE_TABLE = str.maketrans(LOOKALIKES)
# Greek (with its extended block) and Cyrillic (with its supplement and extensions).
_GREEK_CYRILLIC = ("\u0370-\u03ff\u1f00-\u1fff"
                   "\u0400-\u052f\u1c80-\u1c8f\u2de0-\u2dff\ua640-\ua69f")
_HAS_GREEK_CYRILLIC = re.compile(f"[{_GREEK_CYRILLIC}]")


def _foreign_letters() -> str:
    """A character class of the Greek and Cyrillic letters with no Latin look-alike."""
    bounds = [(ord(a), ord(b)) for a, b in re.findall(r"(.)-(.)", _GREEK_CYRILLIC)]
    codes = [c for lo, hi in bounds for c in range(lo, hi + 1)
             if chr(c).isalpha() and chr(c) not in LOOKALIKES]
    ranges, start = [], codes[0]
    for prev, code in zip(codes, [*codes[1:], None], strict=True):
        if code != prev + 1:
            ranges.append(f"{chr(start)}-{chr(prev)}" if prev > start else chr(start))
            start = code
    return "[" + "".join(ranges) + "]"


# A Greek or Cyrillic letter with no Latin look-alike: the text is written in that script.
_FOREIGN_LETTER = re.compile(_foreign_letters())
_WORD = re.compile(r"[^\W\d_]+")

# A spaced-out letter: one Latin letter with no letter either side (a digit may touch it:
# "2 N D" is spaced out as "2N D" by who spaces letters only).
_SPACED = f"(?<![^\\W\\d_])[{_LATIN_LETTER}](?![^\\W\\d_])"
_SPACED_RUN = re.compile(f"{_SPACED}(?: +{_SPACED})+")
# Every run joined has three letters or more, so the second and third look like this: a cheap
# test that spares the full pattern's lookarounds on almost every text.
_MAYBE_SPACED = re.compile(f" [{_LATIN_LETTER}] +[{_LATIN_LETTER}](?![^\\W\\d_])")
_GAP = re.compile(" +")
MIN_SPACED_LETTERS = 4  # a run with one gap width, in single-spaced text, joins from this many


def _resolve_bidi(text: str) -> str:
    """Drop the direction controls; a right-to-left override span (up to its pop, the next
    control or the line's end) of left-to-right letters is displayed reversed, so it is
    reversed into the order a reader sees it."""
    out: list[str] = []
    span: list[str] | None = None

    def close() -> None:
        nonlocal span
        if span is not None:
            rtl = any(unicodedata.bidirectional(c) in ("R", "AL") for c in span)
            out.extend(span if rtl else reversed(span))
            span = None

    for char in text:
        if char in _BIDI or char in "\n\r":
            close()
            if char == _OVERRIDE_RTL:
                span = []
            elif char in "\n\r":
                out.append(char)
        elif span is not None:
            span.append(char)
        else:
            out.append(char)
    close()
    return "".join(out)


def _fold_lookalikes(text: str) -> str:
    """Fold look-alikes inside words that mix scripts; fold whole look-alike words too when the
    text has no Greek or Cyrillic letter without a Latin look-alike (a Russian or Greek text
    keeps its letters)."""
    if not _FOREIGN_LETTER.search(text):
        return text.translate(_LOOKALIKE_TABLE)  # look-alikes are letters, so inside words
    if not _LATIN_WORD_LETTER.search(text):
        return text  # no word can mix scripts

    def fold(match: re.Match[str]) -> str:
        word = match.group()
        mixed = _HAS_GREEK_CYRILLIC.search(word) and _LATIN_WORD_LETTER.search(word)
        return word.translate(_LOOKALIKE_TABLE) if mixed else word

    return _WORD.sub(fold, text)


def _gaps_around(text: str, start: int, end: int) -> list[int]:
    """The runs of spaces between this span (with any punctuation touching it) and the words
    before and after it; none at the text's edges."""
    while start and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    before = len(text[:start]) - len(text[:start].rstrip(" "))
    after = len(text[end:]) - len(text[end:].lstrip(" "))
    return ([before] if before < start else []) + ([after] if end + after < len(text) else [])


def _join_spaced(match: re.Match[str]) -> str:
    """A run of single letters: the narrowest gap separates letters, wider gaps words
    ("y o u  a r e" -> "you are"). With one gap width throughout it is one word from three
    letters when wider gaps set it apart from its neighbours ("#K A G  #MAGA"), else only
    from MIN_SPACED_LETTERS letters on, so that chat like "u r a star" keeps its words."""
    run = match.group()
    gaps = [len(g) for g in _GAP.findall(run)]
    letter_gap = min(gaps)
    if max(gaps) == letter_gap and len(gaps) + 1 < MIN_SPACED_LETTERS:
        around = _gaps_around(match.string, match.start(), match.end())
        if len(gaps) < 2 or not around or min(around) <= letter_gap:
            return run
    words, word = [], run[0]
    for gap, letter in zip(gaps, run.replace(" ", "")[1:], strict=True):
        if gap > letter_gap:
            words.append(word)
            word = ""
        word += letter
    return " ".join([*words, word])


def canonicalise(text: str) -> str:
    """The text as the model should see it (see the module docstring)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        text = _INVISIBLE.sub("", text)
        if "\u200c" in text or "\u200d" in text:
            text = _LATIN_JOINERS.sub("", text)
        if _HAS_BIDI.search(text):
            text = _resolve_bidi(text)
        if _HAS_GREEK_CYRILLIC.search(text):
            text = _fold_lookalikes(text)
    return _SPACED_RUN.sub(_join_spaced, text) if _MAYBE_SPACED.search(text) else text


def canonical_texts(texts: Iterable[str]) -> list[str]:
    """canonicalise over a batch."""
    return [canonicalise(t) for t in texts]
