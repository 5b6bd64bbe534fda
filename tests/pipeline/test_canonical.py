"""The text canonicaliser: each transform undoes its disguise, and ordinary text of any script
passes through unchanged."""

from __future__ import annotations

import pytest

from pipelines.analysis.behaviour import EVASIONS
from pipelines.core.data import normalise
from pipelines.runtime.canonical import canonicalise

PLAIN = "you are a stupid idiot"


@pytest.mark.parametrize("text", [
    "ｙｏｕ　ａｒｅ　ａ　ｓｔｕｐｉｄ　ｉｄｉｏｔ",  # fullwidth letters and ideographic spaces
    "𝐲𝐨𝐮 𝐚𝐫𝐞 𝐚 𝐬𝐭𝐮𝐩𝐢𝐝 𝐢𝐝𝐢𝐨𝐭",  # mathematical bold
    "𝓎ℴ𝓊 𝒶𝓇ℯ 𝒶 𝓈𝓉𝓊𝓅𝒾𝒹 𝒾𝒹𝒾ℴ𝓉",  # mathematical script, with letter-like symbols
    "ⓨⓞⓤ ⓐⓡⓔ ⓐ ⓢⓣⓤⓟⓘⓓ ⓘⓓⓘⓞⓣ",  # circled
], ids=["fullwidth", "math_bold", "math_script", "circled"])
def test_nfkc_folds_styled_letters_to_plain_ones(text):
    assert canonicalise(text) == PLAIN


@pytest.mark.parametrize("invisible", ["\u200b", "\u2060", "\ufeff", "\u00ad", "\u180e",
                                       "\u200c", "\u200d", "\U000e0041"])
def test_invisible_characters_between_letters_are_removed(invisible):
    assert canonicalise(invisible.join("stupid") + " idiot") == "stupid idiot"


def test_right_to_left_override_is_read_in_the_order_a_reader_sees():
    # Stored reversed behind U+202E, the text is displayed as "you are a stupid idiot".
    assert canonicalise("\u202e" + PLAIN[::-1] + "\u202c") == PLAIN
    # The span ends at its pop (PDF) or at the end of the line; text outside keeps its order.
    assert canonicalise("ok \u202etoidi\u202c then") == "ok idiot then"
    assert canonicalise("\u202etoidi\nnext line") == "idiot\nnext line"


def test_direction_marks_embeddings_and_isolates_are_dropped():
    assert canonicalise("\u200fstu\u200epid \u202bid\u202c\u2067iot\u2069") == "stupid idiot"


def test_right_to_left_override_keeps_right_to_left_script_in_logical_order():
    hebrew = "שלום עולם"
    assert canonicalise("\u202e" + hebrew + "\u202c") == hebrew


@pytest.mark.parametrize(("text", "expected"), [
    ("yоu аrе а ѕtuріd іdіоt", PLAIN),  # Cyrillic о а е ѕ р і mixed into Latin words
    ("ѕtuріd", "stupid"),  # a whole word of look-alikes, in a text with no Cyrillic word
    ("Ѕτυpιd ΙDΙΟΤ", "Stupid IDIOT"),  # Greek look-alikes
])
def test_cyrillic_and_greek_lookalikes_fold_to_latin(text, expected):
    assert canonicalise(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("y o u  a r e  a  s t u p i d  i d i o t", PLAIN),  # double spaces are word breaks
    ("y  o  u    a  r  e", "you are"),  # the narrowest gap separates letters, wider ones words
    ("you are s t u p i d", "you are stupid"),  # one gap width: one word from four letters
    ("i d i o t!", "idiot!"),
    ("@user i d i o t", "@user idiot"),
    ("2N D  C H A N C E", "2ND CHANCE"),  # digits may touch a spaced letter
    ("#K A G  #M A G A", "#KAG  #MAGA"),  # three letters set apart by wider gaps
])
def test_spaced_out_letters_are_joined(text, expected):
    assert canonicalise(text) == expected


@pytest.mark.parametrize("text", [
    "u r a star",  # three single letters with one gap width: chat, not spacing
    "so u r a  star",  # ... even beside a double space, when a word touches the run
    "I am a b2b seller",
    "plan A\nB\nC\nD",  # lines are never joined
    "a1 b2 c3 d4",  # letters next to digits are not spaced-out letters
])
def test_single_letter_words_that_are_not_spacing_stay(text):
    assert canonicalise(text) == text


@pytest.mark.parametrize("text", [
    "@user This is fine, thanks!! URL #blessed",
    "café naïve Zürich São Paulo Ærøskøbing œuvre",  # accented Latin (precomposed)
    "😀 ❤️ 👍🏽 👨\u200d👩\u200d👧 🇫🇷 1️⃣",  # emoji: skin tone, ZWJ family, flag, keycap
    "你好、世界。「東京」は晴れです。안녕하세요 여러분",  # CJK and Hangul
    "3.14 1,000 -42 1e6 2024-01-31 50%",  # numbers
    "Привет, как дела? Всё хорошо.",  # Russian keeps its look-alike letters (а, о, е, к)
    "сор и мусор",  # look-alike-only words in a text with other Cyrillic words stay
    "Καλημέρα κόσμε",  # Greek
    "می\u200cخواهم",  # Persian: the zero-width non-joiner between Arabic letters stays
    "مرحبا بالعالم",
])
def test_ordinary_text_of_any_script_is_unchanged(text):
    assert canonicalise(text) == text


def test_a_text_of_lookalike_words_only_is_read_as_latin():
    # Ambiguous by construction: Russian "сор" looks exactly like "cop". With no other
    # Cyrillic word to say otherwise, the disguise is the likelier reading.
    assert canonicalise("сор") == "cop"


def test_fullwidth_punctuation_folds_to_the_same_ascii_mark_in_any_script():
    # NFKC's one change to CJK text: ，！？ are the fullwidth forms of , ! ?
    assert canonicalise("你好，世界！") == "你好,世界!"


def test_every_evasion_of_the_suite_is_undone():
    for name, disguise in EVASIONS.items():
        assert disguise(PLAIN) != PLAIN, name
        assert canonicalise(disguise(PLAIN)) == PLAIN, name


def test_canonical_form_keeps_case_unlike_the_deduplication_key():
    assert canonicalise("ＳＴＵＰＩＤ Café") == "STUPID Café"
    assert normalise("ＳＴＵＰＩＤ Café") == "stupid cafe"
