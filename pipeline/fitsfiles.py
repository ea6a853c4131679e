"""Reading raw FITS files safely, and how products are written (pure: astropy only)."""
from __future__ import annotations

from pathlib import Path

from astropy.io import fits

FITS_SUFFIXES = (".fits", ".fits.fz", ".fit", ".fts")
BLOCK = 2880  # FITS files are whole 2880-byte blocks
# Products are written unverified: their cards are made here or copied from a header astropy read (and
# checked) already, and verifying them again cost ~20 ms a file, a fifth of a wavelength calibration.
PRODUCT_VERIFY = "ignore"


def is_fits_name(path: str | Path) -> bool:
    return str(path).lower().endswith(FITS_SUFFIXES)


def completeness_problem(path: Path) -> str | None:
    """Why the file is not (yet) a complete FITS file, or None when it is."""
    size = path.stat().st_size
    if size == 0:
        return "empty file"
    if size % BLOCK:
        return f"truncated or still being written: {size} bytes is not a whole number of FITS blocks"
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=False) as hdus:
            last = hdus[-1].fileinfo()
            expected = last["datLoc"] + last["datSpan"]
    except Exception as error:  # astropy raises many kinds for non-FITS input
        return f"not a readable FITS file: {error}"
    if size < expected:
        return f"truncated: expected {expected} bytes, found {size}"
    return None


def science_header(path: Path) -> fits.Header:
    """The header that describes the frame: the first image HDU with data (.fits.fz
    keeps it in an extension), plus the primary keywords that HDU does not repeat."""
    with fits.open(path, memmap=False) as hdus:
        primary = hdus[0]
        image = next((hdu for hdu in hdus if hdu.is_image and hdu.header.get("NAXIS", 0) > 0), primary)
        header = image.header.copy()
        if image is not primary:
            for card in primary.header.cards:
                if card.keyword not in header and card.keyword not in ("SIMPLE", "EXTEND", ""):
                    header.append(card)
    return header


INVALID_CARD = "not valid FITS; shown as written in the file"


def written_value(card: fits.Card) -> str:
    """What the file says after ``KEYWORD =``. astropy's public ``card.image`` would first 'fix' an
    unparsable card (``NaN`` becomes the string ``'NaN'``), so the text as written comes from ``_image``."""
    image = (card._image or "").rstrip()  # noqa: SLF001 - see the docstring
    keyword, equals, value = image.partition("=")
    return value.strip() if equals and keyword.strip() == card.keyword else image


def header_cards(header: fits.Header) -> list[dict]:
    """Every card in order as ``{"keyword", "value", "comment"}`` (COMMENT and HISTORY included), the value
    a str, int, float, bool or None (undefined). A card astropy cannot parse (``EXPTIME = NaN``, an unquoted
    string) is shown as written, with ``"invalid"`` saying so, instead of making the whole header unreadable."""
    cards = []
    for card in header.cards:
        try:
            value = card.value
        except fits.VerifyError:
            cards.append({"keyword": card.keyword, "value": written_value(card), "comment": "",
                          "invalid": INVALID_CARD})
            continue
        if isinstance(value, fits.card.Undefined):
            value = None
        elif not isinstance(value, (str, int, float, bool)):
            value = str(value)  # a complex number
        cards.append({"keyword": card.keyword, "value": value, "comment": card.comment or ""})
    return cards


def readable_header(header: fits.Header) -> fits.Header:
    """A copy of ``header`` without the cards astropy cannot parse: what the science and the figures read,
    to whom such a card is as if absent (header_cards shows it, flagged)."""
    readable = header.copy()
    for index in reversed(range(len(readable))):
        try:
            readable.cards[index].value  # noqa: B018 - parsing is the test
        except fits.VerifyError:
            del readable[index]
    return readable
