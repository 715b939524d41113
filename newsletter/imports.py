"""Importing subscribers from a CSV file whose consent was collected elsewhere.

Every row is validated before anything is written; the author sees each rejected
line with its number and reason, and the valid rows go in in one transaction, or
nothing does. An import never brings back anyone who left: a suppressed address
(even one the reader could lift by subscribing again: only their own double
opt-in does that), a subscriber who unsubscribed, bounced or complained, or an
address a reader moved away from (their consent went with them) is skipped, with
the reason.

The desk's export (admin/readers.py) is a file the import takes as it is: its
first columns are the import's, and of the three it adds, the status decides
(only a subscribed reader comes in: one who left, or never confirmed, is skipped)
and a reader who had paused their emails comes in paused. Its last columns are
what the reader chose: the topics they follow at each frequency, and when their
digests arrive. A new reader comes in with them; a reader on the list already
keeps their own (their choice, made here, is newer than any file). A topic this
site does not have is left out, and said so; a reader who followed only such
topics is refused: followed nothing, they would be sent everything.

Columns are found by their header, under the names other lists' exports give
them too (KNOWN_COLUMNS); any other column is not read.
"""

import codecs
import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time

from django.core.exceptions import ValidationError
from django.core.validators import slug_re
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from posts.models import Area, Category, Organisation, Rating, Region
from posts.validators import (
    EARLIEST_YEAR,
    clean_email,
    reject_control_characters,
    reject_invisible,
)

from .models import (
    DEFAULT_TIME_ZONE,
    DIGEST_TIME_ZONES,
    Consent,
    PreviousAddress,
    Subscriber,
    SubscriberTopic,
    Suppression,
    Weekday,
)

COLUMNS = ["email", "name", "consent_source", "consent_date"]
# What the desk's export adds after COLUMNS.
EXPORT_COLUMNS = ["status", "paused_at", "confirmed_at"]
# And after those, what the reader chose (preferences_cells): the topics they
# follow at each frequency ("topics_weekly": "region:london; category:youth"),
# and their digests' hour, day and time zone (empty: the site's usual).
TOPIC_COLUMNS = [f"topics_{frequency}" for frequency in SubscriberTopic.Frequency]
DIGEST_COLUMNS = ["digest_hour", "digest_weekday", "digest_time_zone"]
PREFERENCE_COLUMNS = [*TOPIC_COLUMNS, *DIGEST_COLUMNS]
# Every name the import knows a column by: its own, and those other lists'
# exports give it (Mailchimp's audience export: "Email Address", "First Name",
# "Last Name", "OPTIN_TIME", "CONFIRM_TIME"), compared without case, spaces,
# hyphens or underscores ("E-mail", "Consent Date").
KNOWN_COLUMNS = {
    "email": ["email", "emailaddress"],
    "name": ["name", "fullname"],
    "first_name": ["firstname", "givenname", "fname"],
    "last_name": ["lastname", "surname", "familyname", "lname"],
    "consent_source": ["consentsource", "source"],
    # When they asked to subscribe. Mailchimp leaves its OPTIN_TIME empty for a
    # contact added there by hand or by import: its CONFIRM_TIME stands for it.
    "consent_date": ["consentdate", "optintime"],
    "status": ["status"],
    "paused_at": ["pausedat"],
    "confirmed_at": ["confirmedat", "confirmtime"],
    # Mailchimp's export of those who unsubscribed there, or whose address it
    # cleaned as undeliverable: they left that list, and are not brought back.
    "left_at": ["unsubtime", "cleantime"],
    # Not "time zone": Mailchimp's TIMEZONE is where it guessed the contact is,
    # in any of the world's zones, not when they asked for their digests.
    **{column: [column.replace("_", "")] for column in PREFERENCE_COLUMNS},
}
# Mailchimp writes its times with no zone, in GMT: the member export its Export
# API documents ("very similar to exporting via the web interface") takes GMT
# timestamps in that same "YYYY-MM-DD HH:mm:ss" form
# (https://apidocs.mailchimp.com/export/1.0/list.func.php). Read as London's,
# they were an hour early all summer. Other files' times are the site's.
IN_UTC = {"optintime", "confirmtime"}
# A list this size validates in a few seconds and fits comfortably in memory.
MAX_ROWS = 50_000
# Rows per IN (...) query when looking up existing subscribers and suppressions.
LOOKUP_CHUNK = 1000
CONSENT_VERSION = "import"
# Tries at writing one import: each undone by an address another request added
# meanwhile finds that reader existing on the next.
WRITE_ATTEMPTS = 3
# What a spreadsheet reads as the start of a formula. The desk's CSV export
# (admin/spreadsheets.py) quotes such a cell with an apostrophe, which an import
# of that file takes off again: else "-reader@example.org" would come back as
# another, undeliverable, address ("'-reader@example.org").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ImportFileError(Exception):
    """The file as a whole cannot be read (encoding, header, size)."""


@dataclass
class Row:
    line: int
    email: str
    name: str
    source: str
    consented_at: datetime
    # From the desk's export: when the reader paused their emails, and confirmed.
    paused_at: datetime | None = None
    confirmed_at: datetime | None = None
    # What a new reader follows, as (kind, value, frequency); none is everything,
    # as it is published. And when their digests arrive (None: the site's usual).
    topics: list[tuple[str, str, str]] = field(default_factory=list)
    digest_hour: int | None = None
    digest_weekday: int | None = None
    time_zone: str = DEFAULT_TIME_ZONE


@dataclass
class ImportReport:
    rows: list[Row] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    # (line, line it was merged into)
    merged: list[tuple[int, int]] = field(default_factory=list)
    # (line, why it is skipped)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    # Subscribed already, on the consent the row records: the same file again.
    unchanged: int = 0
    imported: bool = False
    # (line, the topics left out of it: this site does not have them)
    topics_dropped: list[tuple[int, str]] = field(default_factory=list)
    # The file names readers' topics or digest times: given to new readers only.
    reads_preferences: bool = False
    # The file's columns the import does not read, as the file names them.
    ignored_columns: list[str] = field(default_factory=list)
    # "cp1252" or "mac_roman" when the file was not UTF-8, so the author can
    # check its accents.
    encoding: str = "utf-8"


NOT_TEXT = (
    "The file is not a CSV text file (a spreadsheet workbook?): save it from the "
    "spreadsheet as “CSV UTF-8”."
)


# A character beyond ASCII, read as UTF-8 with errors="surrogateescape", which
# gives each byte that is not UTF-8 as U+DC80 to U+DCFF.
UTF_8_CHARACTER = re.compile(r"[^\x00-\x7f\udc80-\udcff]")


def is_utf_16(data: bytes) -> bool:
    """Whether the file (or its first two bytes) is UTF-16: Excel's "Unicode
    text" (its cells separated by tabs) and some lists' exports, whose byte-order
    mark says so, and its byte order."""
    return data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))


def _decoded(data: bytes) -> tuple[str, str]:
    """The file's text and the encoding it was read in."""
    if is_utf_16(data):
        try:
            text = data.decode("utf-16")  # which takes the mark off
        except UnicodeDecodeError as exc:
            raise ImportFileError(NOT_TEXT) from exc
        # UTF-32's mark begins as UTF-16's; read as UTF-16 it holds NULs.
        if "\x00" in text[:2048]:
            raise ImportFileError(NOT_TEXT)
        return text, "utf-16"
    # No text file holds a NUL byte; a workbook (.xlsx, .xls, .ods) or any other
    # binary file does, and read as text it only failed on its "header".
    if b"\x00" in data[:4096] or data.startswith(b"PK\x03\x04"):
        raise ImportFileError(NOT_TEXT)
    try:
        # The mark of UTF-8, if the file has one, is not part of its header.
        return data.decode("utf-8").removeprefix("\ufeff"), "utf-8"
    except UnicodeDecodeError as exc:
        not_utf_8 = exc
    # A file that holds UTF-8's multi-byte characters (or its mark) and bytes
    # that are not UTF-8 is a UTF-8 one with a line pasted in from another
    # encoding: read whole as Windows-1252, its every UTF-8 accent was stored
    # garbled ("Zoë" as "ZoÃ«"), and nothing said so. An 8-bit encoding is read
    # only where no such character is found: a real Windows-1252 (or Mac Roman)
    # file makes one only by chance, a letter and a symbol side by side ("É»";
    # in Mac Roman, a curly apostrophe before "é"), and is then refused saying
    # where, not garbled.
    if UTF_8_CHARACTER.search(data.decode("utf-8", "surrogateescape")):
        line = len(re.findall(rb"\r\n?|\n", data[: not_utf_8.start])) + 1
        raise ImportFileError(
            f"Line {line} holds a character that is not UTF-8, though the rest "
            "of the file is UTF-8 (pasted in from another file?): type that "
            "line's accented letters again and save the file as “CSV UTF-8”."
        ) from not_utf_8
    # Excel for Mac's "Comma Separated Values": Mac Roman, told by its lines,
    # ended by a carriage return alone, which nothing on Windows writes (a cell
    # of several lines holds line feeds, so its header's end tells). Read as
    # Windows-1252, its "Zoë" was stored with a curly quote for its "ë".
    first_break = re.search(rb"\r\n?|\n", data)
    if first_break and first_break[0] == b"\r":
        return data.decode("mac_roman"), "mac_roman"
    # What Excel's "CSV (Comma delimited)" writes on a Windows machine set to
    # English: refused, a list with one "Zoë" in it could not be imported at all.
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            "The file is neither UTF-8 nor Windows-1252 text: save it from the "
            "spreadsheet as “CSV UTF-8”."
        ) from exc


def _column_key(name: str) -> str:
    return re.sub(r"[\s_-]", "", name.lower())


KNOWN_COLUMN_BY_KEY = {
    key: column for column, keys in KNOWN_COLUMNS.items() for key in keys
}


def _columns_read(header: list[str], *, source: str) -> dict[str, int]:
    """Where each column the import reads is in the file."""
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        column = KNOWN_COLUMN_BY_KEY.get(_column_key(name))
        if column is None:
            continue
        if column in columns:
            raise ImportFileError(
                f"Two columns are the {column.replace('_', ' ')}: "
                f"“{header[columns[column]]}” and “{name}”. Delete one."
            )
        columns[column] = index
    if "email" not in columns:
        raise ImportFileError(
            f"The first line must be the header, naming {','.join(COLUMNS)} "
            "(or other lists' names for them: Email Address, E-mail, First Name, "
            f"Last Name, OPTIN_TIME, …); found {','.join(header) or 'an empty line'}."
        )
    if "consent_date" not in columns and "confirmed_at" not in columns:
        raise ImportFileError(
            "No column is the consent date: name it consent_date (Mailchimp's "
            "OPTIN_TIME or CONFIRM_TIME are read as it)."
        )
    if "consent_source" not in columns and not source:
        raise ImportFileError(
            "No column is the consent source: say where these readers consented "
            "in “Consent source” below, or add a consent_source column."
        )
    return columns


# Excel's "sep=;" line, naming the character that separates the cells: any one
# but the quote, which the csv module cannot take as both.
SEPARATOR_LINE = re.compile(r'sep=([^"\r\n])', re.IGNORECASE)


def read_csv(data: bytes, *, source: str = "") -> ImportReport:
    """Validate every row of the file; write nothing. `source` is the consent
    source of the rows that name none."""
    text, encoding = _decoded(data)
    # What old DOS programs end a text file with (Ctrl-Z): not a line of it.
    text = text.removesuffix("\x1a")
    # Excel separates cells with ';' where the decimal mark is a comma, and with
    # tabs in its "Unicode text": told by the header, whose names hold none of
    # them. A comma in it makes it a comma file. (Excel for Mac's "Comma
    # Separated Values" ends its lines in a carriage return alone.) Or the file
    # says which, as Excel reads it, on a line of its own above the header.
    first_line = re.split(r"\r\n?|\n", text, maxsplit=1)[0]
    separator_line = SEPARATOR_LINE.fullmatch(first_line)
    if separator_line:
        delimiter = separator_line[1]
    else:
        delimiter = next((mark for mark in ",\t;" if mark in first_line), ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        if separator_line:
            next(reader)  # its line is counted: the header is the file's line 2
        header = next(reader)
    except StopIteration as exc:
        raise ImportFileError("The file is empty.") from exc
    except csv.Error as exc:
        raise ImportFileError(f"The file is not valid CSV: {exc}") from exc
    header = [column.strip() for column in header]
    # A spreadsheet column whose cells were cleared, not deleted, stays in its CSV
    # as an empty cell at the end of every line: nothing in it to refuse.
    while header and not header[-1]:
        header.pop()
    columns = _columns_read(header, source=source)
    in_utc = {
        column
        for column, index in columns.items()
        if _column_key(header[index]) in IN_UTC
    }
    report = ImportReport(encoding=encoding)
    report.ignored_columns = [
        name
        for index, name in enumerate(header)
        if name and index not in columns.values()
    ]
    report.reads_preferences = any(column in columns for column in PREFERENCE_COLUMNS)
    first_line_of: dict[str, int] = {}
    # The file's lines as the reader counts them, read if a row of several
    # lines is rejected.
    file_lines: list[str] | None = None
    ended = reader.line_num  # the header's last line
    try:
        for values in reader:
            # A quoted cell may hold line breaks: a row is named by its first line.
            line, ended = ended + 1, reader.line_num
            if not any(value.strip() for value in values):
                continue
            if len(report.rows) + len(report.rejected) >= MAX_ROWS:
                raise ImportFileError(f"The file has more than {MAX_ROWS} rows.")
            try:
                row = _parse_row(
                    line,
                    values,
                    columns=columns,
                    in_utc=in_utc,
                    width=len(header),
                    source=source,
                )
            except ValidationError as error:
                reason = error.messages[0]
                if ended > line:
                    # A quote left open reads the lines after it into this row:
                    # said, or their readers went missing unmentioned. Asked
                    # only if the row's quotes are not good CSV: a cell quoted
                    # as it should be may hold a line break.
                    if file_lines is None:
                        file_lines = io.StringIO(text, newline="").readlines()
                    row_lines = file_lines[line - 1 : ended]
                    reason += f" (lines {line} to {ended} were read as this one row"
                    if _quote_left_open(row_lines, delimiter=delimiter):
                        reason += ": a quote left open?"
                    reason += ")"
                report.rejected.append((line, reason))
                continue
            except LeftTheList as left:
                report.skipped.append((line, str(left)))
                continue
            if row.email in first_line_of:
                report.merged.append((line, first_line_of[row.email]))
                continue
            first_line_of[row.email] = line
            report.rows.append(row)
    except csv.Error as exc:
        # Most likely a cell past csv's limit (128 KB): what a quote left open
        # makes of the lines after it. Named, as any row, by its first line: the
        # line it failed on may be thousands below the quote.
        line, ended = ended + 1, reader.line_num
        reason = f"Line {line} is not valid CSV: {exc}"
        if ended > line:
            reason += (
                f" (lines {line} to {ended} were read as one cell: a quote left open?)"
            )
        raise ImportFileError(reason) from exc
    _skip_those_who_left(report)
    _drop_topics_not_on_the_site(report)
    return report


def _quote_left_open(lines: list[str], *, delimiter: str) -> bool:
    """Whether these lines, read as one row, are not one row of good CSV: a
    quote never closed, or closed before the cell ends."""
    try:
        return len(list(csv.reader(lines, delimiter=delimiter, strict=True))) != 1
    except csv.Error:
        return True


class LeftTheList(Exception):
    """An exported row of a reader who is not subscribed: the reason they are
    skipped."""


def _parse_row(
    line: int,
    values: list[str],
    *,
    columns: dict[str, int],
    in_utc: set[str],
    width: int,
    source: str,
) -> Row:
    while len(values) > width and not values[-1].strip():
        values = values[:-1]  # a cleared column's empty cell (see read_csv)
    if len(values) != width:
        raise ValidationError(f"expected {width} columns, found {len(values)}")
    values = [_unquoted(value).strip() for value in values]
    cells = dict.fromkeys(KNOWN_COLUMNS, "") | {
        column: values[index] for column, index in columns.items()
    }
    if cells["left_at"]:
        raise LeftTheList("the file says they left that list")
    email = cells["email"]
    name = cells["name"] or " ".join(
        filter(None, [cells["first_name"], cells["last_name"]])
    )
    source = cells["consent_source"] or source
    confirmed = cells["confirmed_at"]
    date_column = "consent_date" if cells["consent_date"] else "confirmed_at"
    date = cells[date_column]
    paused_at = None
    if "status" in columns:
        status, paused = cells["status"], cells["paused_at"]
        if status not in Subscriber.Status.values:
            raise ValidationError(
                f"the status “{status[:40]}” is not one of "
                + ", ".join(Subscriber.Status.values)
            )
        if status == Subscriber.Status.PENDING:
            raise LeftTheList(
                "exported as pending: only their own confirmation subscribes them"
            )
        if status != Subscriber.Status.ACTIVE:
            raise LeftTheList(f"exported as {Subscriber.Status(status).label.lower()}")
        paused_at = _parse_moment(paused, "paused_at") if paused else None
    confirmed_at = (
        _parse_moment(confirmed, "confirmed_at", in_utc="confirmed_at" in in_utc)
        if confirmed
        else None
    )
    if not email:
        raise ValidationError("the email address is missing")
    # The subscribe form's own rules, so that an address is stored in one form
    # (its IDNA domain) whichever way it came in.
    try:
        email = clean_email(email)
    except ValidationError as exc:
        raise ValidationError(f"“{email[:80]}”: {exc.messages[0]}") from exc
    if len(name) > 100:
        raise ValidationError("the name is longer than 100 characters")
    try:
        reject_control_characters(name + source)
        reject_invisible(name)
    except ValidationError as exc:
        raise ValidationError(f"the name or source: {exc.messages[0]}") from exc
    if not source:
        raise ValidationError("the consent source is missing")
    if len(source) > 200:
        raise ValidationError("the consent source is longer than 200 characters")
    consented_at = _parse_moment(date, "consent date", in_utc=date_column in in_utc)
    return Row(
        line,
        email,
        name,
        source,
        consented_at,
        paused_at,
        confirmed_at,
        topics=_topics_read(cells),
        **_digest_time_read(cells),
    )


def preferences_cells(
    *,
    topics: Iterable[tuple[str, str, str]],
    digest_hour: int | None,
    digest_weekday: int | None,
    time_zone: str,
) -> list[str]:
    """The PREFERENCE_COLUMNS' cells of a reader's export: the (kind, value,
    frequency) of their topic rows, and their digest time. As the import reads
    them (_topics_read, _digest_time_read)."""
    keys: dict[str, list[str]] = {
        frequency: [] for frequency in SubscriberTopic.Frequency
    }
    for kind, value, frequency in sorted(topics):
        keys[frequency].append(f"{kind}:{value}" if value else kind)
    return [
        *("; ".join(keys[frequency]) for frequency in SubscriberTopic.Frequency),
        "" if digest_hour is None else str(digest_hour),
        "" if digest_weekday is None else Weekday(digest_weekday).label,
        time_zone,
    ]


# Read once, not for each of 50,000 rows (Django builds a choices' list anew).
FREQUENCY_COLUMNS = list(zip(SubscriberTopic.Frequency, TOPIC_COLUMNS, strict=True))
TOPIC_KINDS = frozenset(SubscriberTopic.Kind.values)


def _topics_read(cells: dict[str, str]) -> list[tuple[str, str, str]]:
    """The topics a row's TOPIC_COLUMNS name, as (kind, value, frequency)."""
    frequency_of: dict[tuple[str, str], str] = {}
    for frequency, column in FREQUENCY_COLUMNS:
        # Separated as the export writes them ("; "), or as a hand may type them.
        for key in re.split(r"[;,\s]+", cells[column]):
            if not key:
                continue
            kind, _, value = key.partition(":")
            everything = kind == SubscriberTopic.Kind.EVERYTHING
            # A value no slug can be is on no site: not looked for (a NUL in it
            # failed the query on PostgreSQL).
            if (
                kind not in TOPIC_KINDS
                or everything == bool(value)
                or (value and not slug_re.match(value))
            ):
                raise ValidationError(
                    f"the topic “{key[:60]}” is not “everything” or a kind and "
                    "a slug (“region:london”)"
                )
            # One frequency a topic: the reader follows it once (topic_once).
            if frequency_of.setdefault((kind, value), frequency) != frequency:
                raise ValidationError(
                    f"the topic “{key[:60]}” is under two frequencies: "
                    f"{frequency_of[kind, value]} and {frequency}"
                )
    return [
        (kind, value, frequency) for (kind, value), frequency in frequency_of.items()
    ]


WEEKDAY_BY_NAME = {label.lower(): day for day, label in Weekday.choices}
TIME_ZONES = dict(DIGEST_TIME_ZONES)


def _digest_time_read(cells: dict[str, str]) -> dict:
    """A row's DIGEST_COLUMNS as the Row's fields; an empty cell is the usual."""
    hour, day, zone = (cells[column] for column in DIGEST_COLUMNS)
    if hour and not (re.fullmatch(r"[0-9]{1,2}", hour) and int(hour) <= 23):
        raise ValidationError(
            f"the digest hour “{hour[:20]}” is not a whole hour from 0 to 23"
        )
    if day and day.lower() not in WEEKDAY_BY_NAME:
        raise ValidationError(
            f"the digest weekday “{day[:20]}” is not a day of the week (Monday, …)"
        )
    if zone and zone not in TIME_ZONES:
        raise ValidationError(
            f"the digest time zone “{zone[:40]}” is not one a reader may choose "
            "(Europe/London, America/New_York, …)"
        )
    return {
        "digest_hour": int(hour) if hour else None,
        "digest_weekday": WEEKDAY_BY_NAME[day.lower()] if day else None,
        "time_zone": zone or DEFAULT_TIME_ZONE,
    }


def quoted_as_text(value: str) -> bool:
    """Whether the cell starts as the desk's export quotes a formula: with an
    apostrophe, before what starts one or before a cell quoted so itself (the
    export of "'-x", which the import took back as "-x")."""
    return value[:1] == "'" and value.lstrip("'")[:1] in FORMULA_STARTS


def _unquoted(value: str) -> str:
    """The cell as it was before the desk's export quoted it as text."""
    return value[1:] if quoted_as_text(value) else value


def _parse_moment(value: str, what: str, *, in_utc: bool = False) -> datetime:
    """The moment a cell names; one without an offset is in the site's time zone,
    or in UTC if `in_utc`."""
    try:
        moment = parse_datetime(value)
        if moment is None and (day := parse_date(value)) is not None:
            moment = datetime.combine(day, time())
    except ValueError:  # well formed but impossible, e.g. 2026-02-30
        moment = None
    if moment is None:
        raise ValidationError(
            f"the {what} “{value[:40]}” is not a date (use YYYY-MM-DD)"
        )
    if moment.year < EARLIEST_YEAR:
        raise ValidationError(
            f"the {what} is before {EARLIEST_YEAR}: a typo in the year?"
        )
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC if in_utc else None)
    if moment > timezone.now():
        raise ValidationError(f"the {what} is in the future")
    # In UTC: PostgreSQL holds no offset beyond 15:59, Python's go to 23:59.
    return moment.astimezone(UTC)


def _chunks(items: list, size: int = LOOKUP_CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _skip_those_who_left(report: ImportReport) -> None:
    """Move the rows whose address is on the suppression list, for any reason, or
    one a reader moved away from, to the skipped ones."""
    by_email = {row.email: row for row in report.rows}
    hashes = {Suppression.hash_address(email): email for email in by_email}
    left: dict[int, str] = {}
    for chunk in _chunks(list(hashes)):
        for address_hash, reason in Suppression.objects.filter(
            address_hash__in=chunk
        ).values_list("address_hash", "reason"):
            label = Suppression.Reason(reason).label.lower()
            left[by_email[hashes[address_hash]].line] = (
                f"the address is suppressed ({label})"
            )
    for chunk in _chunks(list(by_email)):
        # The list's consent was given by the reader who held the address then,
        # and went with them to their new one. One who came back to it is
        # subscribed there again, or not, as their status says.
        moved_away = PreviousAddress.objects.filter(email__in=chunk).exclude(
            subscriber__email=F("email")
        )
        for email in moved_away.values_list("email", flat=True):
            left.setdefault(
                by_email[email].line,
                "a reader moved from this address to another: their consent "
                "went with them",
            )
    report.skipped = sorted([*report.skipped, *left.items()])
    report.rows = [row for row in report.rows if row.line not in left]


# What a topic's value names, by its kind: the slug of one of these.
TOPIC_MODELS = {
    SubscriberTopic.Kind.REGION: Region,
    SubscriberTopic.Kind.AREA: Area,
    SubscriberTopic.Kind.ORGANISATION: Organisation,
    SubscriberTopic.Kind.CATEGORY: Category,
}


def _topics_on_the_site(keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Those of the (kind, value) keys this site has: a query per kind and
    thousand slugs, however many readers follow them."""
    on_the_site = {(SubscriberTopic.Kind.EVERYTHING, "")} | {
        (SubscriberTopic.Kind.RATING, code) for code in Rating.values
    }
    for kind, model in TOPIC_MODELS.items():
        for chunk in _chunks(sorted({value for of, value in keys if of == kind})):
            on_the_site.update(
                (kind, slug)
                for slug in model.objects.filter(slug__in=chunk).values_list(
                    "slug", flat=True
                )
            )
    return keys & on_the_site


def _drop_topics_not_on_the_site(report: ImportReport) -> None:
    """Leave out of new readers' rows the topics this site does not have (a
    category the old site had and this one not yet): kept, one would match no
    post, and the reader would not know why. Said, line by line. A new reader
    who followed only such topics is refused: left following none, they would
    be sent every post (the author adds the topics, or empties the row's topic
    cells to have them follow everything)."""
    keys = {(kind, value) for row in report.rows for kind, value, _ in row.topics}
    on_the_site = _topics_on_the_site(keys)
    if on_the_site == keys:
        return
    touched = [
        row
        for row in report.rows
        if any((kind, value) not in on_the_site for kind, value, _ in row.topics)
    ]
    # A reader on the list already keeps their own topics: the file's are not read.
    existing = set()
    for chunk in _chunks([row.email for row in touched]):
        existing.update(
            Subscriber.objects.filter(email__in=chunk).values_list("email", flat=True)
        )
    refused = set()
    for row in touched:
        if row.email in existing:
            continue
        gone = ", ".join(
            f"{kind}:{value}"[:80]
            for kind, value, _ in row.topics
            if (kind, value) not in on_the_site
        )
        row.topics = [
            topic for topic in row.topics if (topic[0], topic[1]) in on_the_site
        ]
        if row.topics:
            report.topics_dropped.append((row.line, gone))
        else:
            refused.add(row.line)
            report.rejected.append(
                (
                    row.line,
                    f"follows only topics this site does not have ({gone}): "
                    "add them to the site, or empty the row's topics to have the "
                    "reader follow everything",
                )
            )
    report.rejected.sort()
    report.topics_dropped.sort()
    report.rows = [row for row in report.rows if row.line not in refused]


def _consents_recorded(subscribers: list[Subscriber]) -> set[tuple[int, str, datetime]]:
    """(subscriber id, source, when given) of these subscribers' confirmed consents."""
    recorded = set()
    for chunk in _chunks([subscriber.pk for subscriber in subscribers]):
        recorded.update(
            Consent.objects.filter(
                subscriber_id__in=chunk, confirmed_at__isnull=False
            ).values_list("subscriber_id", "source", "created_at")
        )
    return recorded


def import_rows(*, report: ImportReport) -> ImportReport:
    """Write the report's valid rows, all in one transaction."""
    for _ in range(WRITE_ATTEMPTS - 1):
        try:
            return _rows_write(report)
        except IntegrityError:
            # Another request added one of the file's new addresses and committed
            # while this one waited to add it (the same file clicked twice, a
            # reader subscribing): written again, they are found as existing.
            continue
    return _rows_write(report)


def _rows_write(report: ImportReport) -> ImportReport:
    with transaction.atomic():
        # Again, as the list may have changed since the file was read.
        _skip_those_who_left(report)
        existing = {}
        for chunk in _chunks([row.email for row in report.rows]):
            existing.update(
                (subscriber.email, subscriber)
                for subscriber in Subscriber.objects.select_for_update().filter(
                    email__in=chunk
                )
            )
        recorded = _consents_recorded(list(existing.values()))
        new, consents, skipped = [], [], []
        chosen: list[tuple[Subscriber, Row]] = []  # the new readers' topics
        updated = unchanged = 0
        for row in report.rows:
            subscriber = existing.get(row.email)
            if (
                subscriber is not None
                and subscriber.status == Subscriber.Status.ACTIVE
                and (subscriber.pk, row.source, row.consented_at) in recorded
            ):
                # Imported before: a second consent record of the same consent
                # would be a second subscription in the reader's history.
                unchanged += 1
                continue
            if subscriber is None:
                subscriber = Subscriber(
                    email=row.email,
                    name=row.name,
                    status=Subscriber.Status.ACTIVE,
                    confirmed_at=row.confirmed_at or row.consented_at,
                    paused_at=row.paused_at,
                    digest_hour=row.digest_hour,
                    digest_weekday=row.digest_weekday,
                    time_zone=row.time_zone,
                )
                new.append(subscriber)
                if row.topics:
                    chosen.append((subscriber, row))
            elif subscriber.status in (
                Subscriber.Status.ACTIVE,
                Subscriber.Status.PENDING,
            ):
                # The consent given elsewhere stands in for the pending confirmation.
                Subscriber.objects.filter(pk=subscriber.pk).update(
                    status=Subscriber.Status.ACTIVE,
                    name=subscriber.name or row.name,
                    confirmed_at=(
                        subscriber.confirmed_at or row.confirmed_at or row.consented_at
                    ),
                )
                updated += 1
            else:
                skipped.append((row.line, f"the subscriber is {subscriber.status}"))
                continue
            consents.append((subscriber, row))
        Subscriber.objects.bulk_create(new, batch_size=LOOKUP_CHUNK)
        Consent.objects.bulk_create(
            (
                Consent(
                    subscriber_id=subscriber.pk,
                    created_at=row.consented_at,
                    # When it was confirmed there (the desk's own export says),
                    # as the reader's confirmed_at: the desk tells by it which
                    # consent brought them (desk._sources).
                    confirmed_at=row.confirmed_at or row.consented_at,
                    wording=f"Consent given elsewhere ({row.source}), imported "
                    "by the author.",
                    wording_version=CONSENT_VERSION,
                    source=row.source,
                )
                for subscriber, row in consents
            ),
            batch_size=LOOKUP_CHUNK,
        )
        # A thousand readers' topics at a time: a list of 50,000 following
        # several each is too many rows to hold at once.
        for chunk in _chunks(chosen):
            SubscriberTopic.objects.bulk_create(
                SubscriberTopic(
                    subscriber_id=subscriber.pk,
                    kind=kind,
                    value=value,
                    frequency=frequency,
                )
                for subscriber, row in chunk
                for kind, value, frequency in row.topics
            )
    # Counted once written: an attempt undone above counts for nothing.
    report.created, report.updated, report.unchanged = len(new), updated, unchanged
    report.skipped = sorted([*report.skipped, *skipped])
    report.imported = True
    return report
