"""Turn the bytes of a raw frame's primary header into a usable astropy Header, and say
what had to be repaired to get it.

Why: FITS asks for printable ASCII cards in a fixed layout, but the instrument writes
what the observer typed (an OBJECT of `Señor`, in Latin-1 or UTF-8) and software on the
way writes cards astropy must fix (a lowercase keyword, a value without its quotes, a
decimal comma, text that is no card at all). A careful astronomer still reduces such a
frame and says what was read how; so does the service. Each repair is one note, for
people; the notes go onto the index item and, as HISTORY cards, into the header itself,
so every product written from it says what was repaired. A header that needs no repair
comes out card for card as it went in.

Only the cards that say how the pixels are stored (SIMPLE, BITPIX, NAXISn, BSCALE,
BZERO, PCOUNT, GCOUNT) must be readable as what they are: a guess there would misread
every pixel, so it raises UnreadableHeader. Missing optional keywords are the business
of `headerderive`. Pure: bytes in, a new Header and notes out.
"""
from __future__ import annotations

import re
import textwrap
import unicodedata
import warnings
from dataclasses import dataclass
from typing import List, Optional, Tuple

from astropy.io import fits
from astropy.io.fits.verify import VerifyError

from .headerderive import derive_missing

CARD = 80
HISTORY_PREFIX = "Goodman Live repaired the raw header: "
#: Keywords whose value says how the data unit is laid out, and the type it must have.
STRUCTURE = {"SIMPLE": (bool,), "BITPIX": (int,), "NAXIS": (int,), "BSCALE": (int, float),
             "BZERO": (int, float), "PCOUNT": (int,), "GCOUNT": (int,)}
_KINDS = {bool: "T or F", int: "an integer", float: "a number"}
_COMMENTARY = ("COMMENT", "HISTORY", "")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
#: Letters NFKD does not take apart into an ASCII letter and accents.
_LETTERS = {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "ł": "l", "Ł": "L",
            "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th", "\t": " "}
_KEYWORD = re.compile(r"[A-Za-z0-9_-]+ *")
_LOOSE = re.compile(r"^\s*([A-Za-z0-9_-]{1,8})\s*(=)?\s*(.*?)\s*$")
_VALUE_LIKE = re.compile(r"\s*('.*'|[TF]|[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?)\s*(/.*)?$")
_DECIMAL_COMMA = re.compile(r"\s*([+-]?\d+),(\d+)\s*")
_WORD = re.compile(r"[^\s'/=]*[^\x20-\x7e][^\s'/=]*")  # a word with a character to repair
_ASTROPY_SAID = re.compile(r"Card '.*' is not FITS standard \((.*)\)\.\s*Fixed .*")


class UnreadableHeader(ValueError):
    """The header cannot be read as a FITS header; the message says why, for people."""


@dataclass(frozen=True)
class RepairedHeader:
    header: fits.Header
    repairs: Tuple[str, ...]  # one note per repair, for people; empty when none was needed


def repair_header(raw: bytes) -> RepairedHeader:
    """The header in `raw` (its cards up to and including END; what follows END is
    ignored), repaired, with HISTORY cards saying what was repaired."""
    notes: List[str] = []
    cards: List[fits.Card] = []
    for number, text in _card_texts(raw, notes):
        card, note = _repair_card(text, number)
        if note:
            notes.append(note)
        if card is not None:
            cards.append(card)
    header = fits.Header(cards)
    _check_structure(header)
    notes.extend(derive_missing(header))
    for note in notes:
        for line in textwrap.wrap(HISTORY_PREFIX + history_text(note), 72):
            header.add_history(line)
    return RepairedHeader(header, tuple(notes))


def history_text(note: str) -> str:
    """A note as printable ASCII (a FITS card can hold nothing else): 'Señor' -> 'Se\\xf1or'."""
    return note.encode("ascii", "backslashreplace").decode("ascii")


def transliterate(text: str) -> str:
    """Printable ASCII for `text`: accents dropped ('Señor' -> 'Senor'), a few letters
    spelled out ('ß' -> 'ss'), anything else '?'."""
    out = []
    for ch in text:
        if " " <= ch <= "~":
            out.append(ch)
            continue
        ch = _LETTERS.get(ch, ch)
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        out.append(base if base and not _NOT_PRINTABLE.search(base) else "?")
    return "".join(out)


# ---- bytes to ASCII card texts ----------------------------------------------------------
def _card_texts(raw: bytes, notes: List[str]) -> List[Tuple[int, str]]:
    """(card number, text) for each card before END, as printable ASCII, with a card
    and its CONTINUE cards joined (astropy reads a long string from them together)."""
    texts: List[Tuple[int, str]] = []
    for number, offset in enumerate(range(0, len(raw) - CARD + 1, CARD), start=1):
        chunk = raw[offset:offset + CARD]
        if chunk[:8] == b"END     ":
            return texts
        text, note = _ascii_card(chunk)
        if note:
            notes.append(note)
        if text.startswith("CONTINUE") and texts:
            texts[-1] = (texts[-1][0], texts[-1][1] + text)
        else:
            texts.append((number, text))
    raise UnreadableHeader("no END card")


def _ascii_card(chunk: bytes) -> Tuple[str, Optional[str]]:
    """The card as 80 printable ASCII characters, and a note if it was not."""
    try:
        text, encoding = chunk.decode("ascii"), None
    except UnicodeDecodeError:
        try:
            text, encoding = chunk.decode("utf-8"), "UTF-8"
        except UnicodeDecodeError:
            text, encoding = chunk.decode("latin-1"), "Latin-1"
    if not _NOT_PRINTABLE.search(text):
        return text, None
    fixed = transliterate(text)
    note_end = ""
    if len(fixed) > CARD:
        fixed = fixed.rstrip()
        if len(fixed) > CARD:
            fixed, note_end = fixed[:CARD], f", cut to {CARD} columns"
    fixed = fixed.ljust(CARD)
    words = _WORD.findall(text)
    what = "non-ASCII text" if encoding else "characters that are not printable"
    how = f" (read as {encoding})" if encoding else ""
    name = fixed[:8].strip() or "a card without keyword"
    return fixed, (f"{name}: {what} {', '.join(repr(w) for w in words)}{how} written as "
                   f"{', '.join(repr(transliterate(w)) for w in words)}{note_end}")


# ---- one card -------------------------------------------------------------------------
def _repair_card(text: str, number: int) -> Tuple[Optional[fits.Card], Optional[str]]:
    """The card read from `text`, repaired if it must be, and a note saying how."""
    field = text[:8]
    plain = field.rstrip().upper() in _COMMENTARY or text.startswith("HIERARCH") or (
        _KEYWORD.fullmatch(field) and not text[8:].strip())  # commentary, or a keyword without a value
    if plain:
        card = _parsed(fits.Card.fromstring(text))
        return (card, None) if card is not None else _as_comment(text, number, "cannot be read")
    if not _KEYWORD.fullmatch(field) or text[8:10] != "= ":
        return _realign(text, number)
    keyword = field.rstrip().upper()
    card = fits.Card.fromstring(text)
    if _parsed(card) is None:
        fixed = _decimal_comma(keyword, text) or _unclosed_quote(keyword, text)
        if fixed is not None:
            return fixed
    return _astropy_fix(card, keyword, text, number)


def _parsed(card: fits.Card) -> Optional[fits.Card]:
    """The card if astropy reads its value as it is, else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            card.value  # noqa: B018 (astropy parses on first access)
        return card
    except (VerifyError, ValueError):
        return None


def _decimal_comma(keyword: str, text: str) -> Optional[Tuple[fits.Card, str]]:
    value, _, comment = text[10:].partition("/")
    match = _DECIMAL_COMMA.fullmatch(value)
    if not match:
        return None
    number = float(f"{match.group(1)}.{match.group(2)}")
    return (fits.Card(keyword, number, comment.strip()),
            f"{keyword}: number {value.strip()!r} written with a decimal comma, read as {number!r}")


def _unclosed_quote(keyword: str, text: str) -> Optional[Tuple[fits.Card, str]]:
    rest = text[10:].strip()
    if not rest.startswith("'") or rest.count("'") != 1:
        return None
    value, _, comment = rest[1:].partition(" /")
    value = value.rstrip()
    return (fits.Card(keyword, value, comment.strip()),
            f"{keyword}: string {rest!r} has no closing quote, read as {value!r}")


def _realign(text: str, number: int) -> Tuple[Optional[fits.Card], Optional[str]]:
    """A card whose keyword or '=' is out of place ('  GAIN = 2.67', 'GAIN      2.67')
    read as KEYWORD = value; anything else kept as a COMMENT, so no text is lost."""
    match = _LOOSE.match(text)
    if match:
        keyword, equals, rest = match.groups()
        if rest and (equals or _VALUE_LIKE.match(rest)):
            card = _parsed(fits.Card.fromstring(f"{keyword.upper():8}= {rest}"))
            if card is not None and card.keyword == keyword.upper():
                return card, (f"{card.keyword}: card {text.rstrip()!r} has its keyword or '=' out of place, "
                              f"read as {card.keyword} = {card.value!r}")
    return _as_comment(text, number, "is not a keyword = value card")


def _astropy_fix(card: fits.Card, keyword: str, text: str, number: int):
    """astropy's own fix (verify('fix')): keyword case, a value it can only keep as a
    string; its message is the note. A card it cannot fix is kept as a COMMENT."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            card.verify("fix")
            value = card.value
            card.image  # noqa: B018 (astropy may refuse to write what it read)
        except (VerifyError, ValueError) as exc:
            return _as_comment(text, number, f"cannot be fixed ({_one_line(str(exc))})")
    said = [_reason(_one_line(str(w.message))) for w in caught]
    said = [s for s in said if s]
    if not said:
        return card, None
    return card, f"{keyword}: {'; '.join(said)}: fixed by astropy as {keyword} = {value!r}"


def _as_comment(text: str, number: int, why: str) -> Tuple[fits.Card, str]:
    kept = text.rstrip()
    return (fits.Card("COMMENT", f"unreadable card: {kept}"),
            f"card {number} {kept!r} {why}: kept as a COMMENT")


def _reason(message: str) -> Optional[str]:
    """What was wrong, from astropy's message about a card it fixed; None if it is no such message."""
    if not message.startswith("Card"):
        return None
    match = _ASTROPY_SAID.fullmatch(message)
    if match:
        return match.group(1)
    return re.sub(r"\s*Fixed '.*' card to meet the FITS standard\.$", "", message[len("Card "):]).rstrip(".")


def _one_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and not line.startswith(("Verification reported", "Note: astropy"))]
    return " ".join(" ".join(lines).split())


# ---- structure ------------------------------------------------------------------------
def _check_structure(header: fits.Header) -> None:
    """Raise unless BITPIX and NAXISn are there and every structural card holds a value
    of its type (a repair that turned one into text cannot describe pixels)."""
    for keyword in ("SIMPLE", "BITPIX", "NAXIS"):
        if keyword not in header:
            raise UnreadableHeader(f"{keyword} missing: the pixels cannot be read without it")
    for keyword, value in header.items():
        types = STRUCTURE.get(keyword) or ((int,) if re.fullmatch(r"NAXIS\d+", keyword) else None)
        if types and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise UnreadableHeader(f"{keyword} = {value!r} cannot be read as {_KINDS[types[-1]]}: "
                                   f"the pixels cannot be read without it")
    for axis in range(1, header["NAXIS"] + 1):
        if f"NAXIS{axis}" not in header:
            raise UnreadableHeader(f"NAXIS{axis} missing: the pixels cannot be read without it")
