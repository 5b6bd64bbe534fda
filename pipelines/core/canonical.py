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
_LATIN_JOINERS = re.compile(f"(?<=[{_LATIN_LETTER}])[\u200c\u200d]+|[\u200c\u200d]+"
                            f"(?=[{_LATIN_LETTER}])")
_MARKS = "\u200e\u200f\u061c"  # LRM, RLM, ALM: direction marks
_EMBED_LTR, _EMBED_RTL, _POP = "\u202a", "\u202b", "\u202c"
_OVERRIDE_LTR, _OVERRIDE_RTL = "\u202d", "\u202e"
_ISOLATES, _POP_ISOLATE = "\u2066\u2067\u2068", "\u2069"
_BIDI = set(_MARKS + _EMBED_LTR + _EMBED_RTL + _POP + _OVERRIDE_LTR + _OVERRIDE_RTL
            + _ISOLATES + _POP_ISOLATE)

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
_WORD = re.compile(r"[^\W\d_]+")

# A spaced-out letter: one Latin letter with no letter or digit either side.
_SPACED = f"(?<![^\\W_])[{_LATIN_LETTER}](?![^\\W_])"
_SPACED_RUN = re.compile(f"{_SPACED}(?: +{_SPACED})+")
_GAP = re.compile(" +")
MIN_SPACED_LETTERS = 4  # a run with one gap width joins from this many letters


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    for script in ("LATIN", "CYRILLIC", "GREEK"):
        if name.startswith(script):
            return script
    return "OTHER"


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
    text has no Cyrillic or Greek word that folding could not turn into Latin (a Russian or
    Greek text keeps its letters)."""
    words = _WORD.findall(text)
    scripts = [{_script(c) for c in word} for word in words]
    if not any(s & {"CYRILLIC", "GREEK"} for s in scripts):
        return text
    foreign = any(
        s & {"CYRILLIC", "GREEK"} and not all(c in LOOKALIKES or _script(c) == "LATIN"
                                              for c in word)
        for word, s in zip(words, scripts, strict=True))

    def fold(match: re.Match[str]) -> str:
        word = match.group()
        mixed = "LATIN" in {_script(c) for c in word}
        return word.translate(_LOOKALIKE_TABLE) if mixed or not foreign else word

    return _WORD.sub(fold, text)


def _join_spaced(match: re.Match[str]) -> str:
    """A run of single letters: the narrowest gap separates letters, wider gaps words
    ("y o u  a r e" -> "you are"). With one gap width throughout it is one word only from
    MIN_SPACED_LETTERS letters on, so that chat like "u r a star" keeps its words."""
    run = match.group()
    gaps = [len(g) for g in _GAP.findall(run)]
    letter_gap = min(gaps)
    if max(gaps) == letter_gap and len(gaps) + 1 < MIN_SPACED_LETTERS:
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
        text = _LATIN_JOINERS.sub("", _INVISIBLE.sub("", text))
        if not _BIDI.isdisjoint(text):
            text = _resolve_bidi(text)
        text = _fold_lookalikes(text)
    return _SPACED_RUN.sub(_join_spaced, text)


def canonical_texts(texts: Iterable[str]) -> list[str]:
    """canonicalise over a batch."""
    return [canonicalise(t) for t in texts]
