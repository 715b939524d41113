"""What the site accepts from a visitor: one home for control characters, text that
shows nothing and email addresses, used by the subscribe and preference forms, the
CSV import, comments, data export and erasure alike; and for the row ids read from
outside."""

import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

import idna
from django.core.exceptions import ValidationError
from django.db.models import Q
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import LOCAL_PART_MAX_LENGTH

# Bidirectional overrides and isolates make text display in another order than it
# is stored: in a name they can disguise what a subject line or greeting says.
_BIDI_CONTROLS = frozenset(
    chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)


def _is_control_character(char: str) -> bool:
    """A line break or other control character: header injection needs CR or LF;
    U+0085, U+2028 and U+2029 break lines too in some mail clients, and the rest
    of Unicode's control category has no business in a name."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS


def reject_control_characters(value: str, *, allowed: str = "") -> None:
    """No line breaks or other control characters, unless `allowed` (a comment's
    body keeps its newlines and tabs)."""
    for char in value:
        if char not in allowed and _is_control_character(char):
            raise ValidationError(
                "This contains invisible control characters (U+%(code)04X): please "
                "use letters, spaces and punctuation only.",
                code="control",
                params={"code": ord(char)},
            )


def without_control_characters(value: str, *, allowed: str = "") -> str:
    """What reject_control_characters refuses, taken out: for a refused value shown
    back on its page, where HTML forbids most of them (U+000B, Word's line break)."""
    return "".join(
        char for char in value if char in allowed or not _is_control_character(char)
    )


# Letters that show as a blank: the Hangul fillers and the blank braille pattern,
# besides Unicode's format characters (zero-width space and joiners, soft hyphen).
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def reject_invisible(value: str) -> None:
    """Text given must show something: a name or a comment of nothing but
    spaces, zero-width characters and blank letters is a blank byline, greeting
    or comment wherever it appears. A zero-width joiner between letters (an
    emoji's, Persian's) is fine."""
    if value and all(
        char.isspace() or char in _BLANK_LETTERS or unicodedata.category(char) == "Cf"
        for char in value
    ):
        raise ValidationError(
            "This shows nothing but blank or invisible characters: please use "
            "letters, spaces and punctuation.",
            code="invisible",
        )


def reject_control_characters_in_text(value: str) -> None:
    """Text of several lines (a post's body, an inspection's key findings) keeps
    its line breaks, as a browser's textarea sends them (CR LF), and its tabs."""
    reject_control_characters(value, allowed="\r\n\t")


# Every table's key is a BigAutoField (PostgreSQL's bigint, SQLite's INTEGER),
# counted from 1.
ROW_IDS = range(1, 2**63)
# At most 19 digits, so that int() never reads a long string.
_ROW_ID_TEXT = re.compile(r"[0-9]{1,19}")


def is_row_id(value: object) -> bool:
    """Whether a value decoded from a signed link (JSON, base 62) can be a row's
    id. Only the site signs its links, but one of another shape than expected must
    name nothing, as a forged link does, rather than reach the database: it raises
    for a string or a list, overflows beyond a bigint, and reads a float or a
    bool as the id of another row."""
    return type(value) is int and value in ROW_IDS


def row_id_in(text: str) -> int | None:
    """The row id a text names, written as str(id) writes it (a signed link's
    detail, an admin action's selection, the post the desk's related-post button
    names, our metadata in a provider's event), or None (int() would also read
    spaces, underscores and other scripts' digits)."""
    value = int(text) if _ROW_ID_TEXT.fullmatch(text) else None
    return value if is_row_id(value) else None


def normalise_email(email: str) -> str:
    """The one stored form of an address: trimmed, lower case, and the domain in
    its ASCII (IDNA) form, so reader@bücher.example and reader@xn--bcher-kva.example
    are one mailbox. For lookups and keys; it never refuses (see clean_email)."""
    email = email.strip().lower()
    local, at, domain = email.rpartition("@")
    if not at:
        return email
    try:
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:  # not a valid domain: it matches nothing stored
        return email
    return f"{local}@{domain}"


def readable_email(email: str) -> str:
    """A stored address as its reader writes it, to show them: the domain in
    Unicode (sam@bücher.example), where it is stored and emailed in its ASCII
    form (sam@xn--bcher-kva.example), which a reader may take for a mistake.
    Never for a header or a lookup; a domain that is no valid IDNA (imported,
    or stored before addresses were checked) is shown as stored."""
    local, at, domain = email.rpartition("@")
    if not at:
        return email
    try:
        return f"{local}@{idna.decode(domain)}"
    except UnicodeError:  # idna's IDNAError is one
        return email


def inbox_of(email: str) -> str:
    """The inbox a stored address delivers to: without its "+tag" (RFC 5233
    subaddressing: Gmail, Outlook, iCloud and Fastmail deliver reader+anything@
    to reader@). For the limits that keep an inbox from being flooded, which
    counted each tag as an address of its own; never stored or emailed."""
    local, at, domain = email.rpartition("@")
    if not at:
        return email
    return f"{local.partition('+')[0]}@{domain}"


# An address in angle brackets, as an email's From line gives it after the
# sender's name ("Sam <sam@example.org>").
_BRACKETED_ADDRESS = re.compile(r"<([^<>\s]+@[^<>\s]+)>")


def addresses_as_stored(search_term: str) -> str:
    """A search of the desk's with each address in it in its stored form: a
    person asking by email for their data, or its erasure, writes their address
    their own way (Sam@Bücher.example), or is named by their email's From line,
    pasted as it is: then its addresses alone are searched for, the name before
    them being whatever the sender's mail program calls them."""
    bracketed = _BRACKETED_ADDRESS.findall(search_term)
    return " ".join(
        normalise_email(bit) if "@" in bit else bit
        for bit in (bracketed or search_term.split())
    )


def clean_email(value: str) -> str:
    """A deliverable address in its stored form, or a ValidationError saying what
    is wrong.

    Internationalised domains are accepted and stored in their ASCII (IDNA) form,
    which every provider can deliver to. Non-ASCII local parts need SMTPUTF8 end to
    end, which not every provider offers, so they are refused with a clear message,
    as are local parts longer than the 64 characters mail servers take (RFC 5321;
    email-validator checks it only when strict): the provider would refuse every
    email to such an address.
    """
    reject_control_characters(value)
    local_part = value.strip().rpartition("@")[0]
    try:
        checked = validate_email(
            value.strip(), allow_smtputf8=False, check_deliverability=False
        )
    except EmailNotValidError as error:
        if any(ord(char) > 127 for char in local_part):
            raise ValidationError(
                "Addresses with accented or non-Latin letters before the @ are not "
                "supported. Please use another address.",
                code="smtputf8",
            ) from error
        raise ValidationError("Enter a valid email address.", code="invalid") from error
    if len(checked.local_part) > LOCAL_PART_MAX_LENGTH:
        raise ValidationError(
            "The part before the @ is longer than email allows "
            f"({LOCAL_PART_MAX_LENGTH} characters). Please check the address.",
            code="too_long",
        )
    address = normalise_email(checked.ascii_email)
    if len(address) > 254:
        raise ValidationError("Enter a valid email address.", code="invalid")
    return address


# No date the site is given, a post's or a mailing list's, is from before email
# newsletters: an earlier year is a typo (0201, 0001), and one near year 1 cannot
# even be stored in UTC (the database would hold a date before year 1 that no
# page can read back).
EARLIEST_YEAR = 1990


class AddressPeriod(NamedTuple):
    """An address over the time it was one person's: after `after` and up to
    `until` (None: from the start; still theirs). What was written under the
    address in that time is that person's to export and erase."""

    email: str
    after: datetime | None = None
    until: datetime | None = None


def written_under(
    periods: Iterable[AddressPeriod], *, address_field: str, time_field: str
) -> Q:
    """A filter for the rows written under any of these addresses in its period:
    `address_field` holds the stored address, `time_field` when it was written."""
    matches = Q(pk__in=[])  # no periods match nothing, never everything
    for period in periods:
        match = Q(**{address_field: normalise_email(period.email)})
        if period.after is not None:
            match &= Q(**{f"{time_field}__gt": period.after})
        if period.until is not None:
            match &= Q(**{f"{time_field}__lte": period.until})
        matches |= match
    return matches
