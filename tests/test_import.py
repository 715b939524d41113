"""The author's subscriber desk: CSV import and export, counts, bulk actions."""

import codecs
import csv
import io
import re
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client, RequestFactory
from django.utils import timezone

from newsletter import imports
from newsletter.desk import desk_for
from newsletter.models import (
    Batch,
    Consent,
    Delivery,
    Event,
    Mailing,
    Subscriber,
    SubscriberTopic,
    Suppression,
    Weekday,
)
from newsletter.subscriptions import (
    address_suppress,
    email_change_confirm,
    subscriber_confirm,
    subscriber_delete,
    subscriber_export,
    subscriber_unsubscribe,
    subscription_request,
)

from .factories import (
    CategoryFactory,
    RegionFactory,
    SubscriberFactory,
    UserFactory,
    admin_subscriber_form,
    desk_action,
    reader_added_at_the_desk,
)
from .locks import as_it_commits

pytestmark = pytest.mark.django_db

IMPORT_URL = "/admin/newsletter/subscriber/import/"
LIST_URL = "/admin/newsletter/subscriber/"
HEADER = "email,name,consent_source,consent_date\n"


@pytest.fixture
def author(client):
    client.force_login(UserFactory())
    return client


def upload(client, text: str, *, anyway: bool = False, name="list.csv"):
    data = {"file": SimpleUploadedFile(name, text.encode(), "text/csv")}
    if anyway:
        data["import_despite_rejections"] = "on"
    return client.post(IMPORT_URL, data)


def rejected_lines(response) -> list[tuple[int, str]]:
    return response.context["report"].rejected


GOOD = (
    "a@example.org,Alex,Conference sign-up sheet,2026-10-01\n"
    "b@example.org,,Old Mailchimp list,2025-03-15T09:30:00Z\n"
)
BAD = (
    "not-an-address,Bad,Form,2026-10-01\n"
    "c@example.org,Casey,,2026-10-01\n"
    "d@example.org,Dee,Form,next tuesday\n"
    "e@example.org,Eve,Form\n"
    "f@example.org,Fay,Form,2999-01-01\n"
    "g@example.org,Gus,Form,2026-02-30\n"
    "h@example.org,Hal,Form,0001-01-01T00:00:00+01:00\n"
)


def test_the_import_page_needs_a_staff_login(client):
    response = client.get(IMPORT_URL)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_clean_file_is_imported_with_its_consent_records(author):
    response = upload(author, HEADER + GOOD)
    assert response.status_code == 200
    report = response.context["report"]
    assert (report.imported, report.created, report.updated) == (True, 2, 0)
    a = Subscriber.objects.get(email="a@example.org")
    assert (a.name, a.status) == ("Alex", Subscriber.Status.ACTIVE)
    consent = Consent.objects.get(subscriber=a)
    assert consent.source == "Conference sign-up sheet"
    assert timezone.localdate(consent.created_at).isoformat() == "2026-10-01"
    assert consent.confirmed_at == consent.created_at
    b = Subscriber.objects.get(email="b@example.org")
    assert b.consents.get().created_at.isoformat() == "2025-03-15T09:30:00+00:00"
    assert Subscriber.objects.confirmed().count() == 2


def test_a_file_with_bad_rows_reports_each_line_and_imports_nothing(author):
    response = upload(author, HEADER + GOOD + BAD)
    assert response.status_code == 200
    assert rejected_lines(response) == [
        (4, "“not-an-address”: Enter a valid email address."),
        (5, "the consent source is missing"),
        (6, "the consent date “next tuesday” is not a date (use YYYY-MM-DD)"),
        (7, "expected 4 columns, found 3"),
        (8, "the consent date is in the future"),
        (9, "the consent date “2026-02-30” is not a date (use YYYY-MM-DD)"),
        (10, "the consent date is before 1990: a typo in the year?"),
    ]
    page = response.content.decode()
    assert "Nothing was imported: 7 lines rejected" in page
    assert "next tuesday" in page
    assert not Subscriber.objects.exists()


def test_a_row_whose_quoted_cell_holds_a_line_break_is_named_by_its_first_line(
    author,
):
    # It was named by its last line, and the author looked for it a line too low.
    response = upload(
        author,
        HEADER
        + 'a@example.org,"Alex\nSmith",Form,2026-10-01\n'
        + "not-an-address,Bad,Form,2026-10-01\n",
    )
    assert [line for line, _ in rejected_lines(response)] == [2, 4]


def test_a_quote_left_open_says_which_lines_it_read_as_one_row(author):
    # A stray quote reads the lines after it into one cell: the page told of one
    # rejected line, the author imported "the valid rows", and the readers on the
    # lines after it were left out, unmentioned.
    response = upload(
        author,
        HEADER
        + GOOD
        + 'c@example.org,"Casey,Form,2026-10-01\n'
        + "d@example.org,Dee,Form,2026-10-01\n"
        + "e@example.org,Eve,Form,2026-10-01\n",
        anyway=True,
    )
    [(line, reason)] = rejected_lines(response)
    assert line == 4
    assert "lines 4 to 6 were read as this one row" in reason
    assert "lines 4 to 6 were read as this one row" in response.content.decode()
    assert response.context["report"].created == 2


def test_a_quoted_cell_holding_a_line_break_is_rejected_without_blaming_a_quote(
    author,
):
    """The cell is quoted as it should be: the page asked "a quote left open?"
    of a file whose every quote was closed."""
    response = upload(author, HEADER + 'a@example.org,"Alex\nSmith",Form,2026-10-01\n')
    [(line, reason)] = rejected_lines(response)
    assert line == 2
    assert "control characters (U+000A)" in reason
    assert "lines 2 to 3 were read as this one row" in reason
    assert "quote" not in reason


def test_a_quote_left_open_in_a_long_file_is_named_by_the_line_it_opened_on(author):
    # Past csv's limit on one cell (128 KB), the file was refused naming the line
    # where the cell grew too long, thousands of lines below the stray quote.
    readers = "".join(
        f"reader{number}@example.org,Reader {number},Form,2026-10-01\n"
        for number in range(3000)
    )
    response = upload(
        author, HEADER + 'c@example.org,"Casey,Form,2026-10-01\n' + readers
    )
    assert response.status_code == 400
    assert re.search(
        r"Line 2 is not valid CSV: .*\(lines 2 to \d+ were read as one cell: "
        r"a quote left open\?\)",
        response.context["form"].errors["file"][0],
    )
    assert not Subscriber.objects.exists()


def test_a_file_of_only_bad_rows_offers_no_import_of_its_valid_ones(author):
    # The page offered to "import the 0 valid rows without them".
    page = upload(author, HEADER + BAD).content.decode()
    assert "No line of the file is valid" in page
    assert "import the valid rows" not in page
    assert "to import the 2 valid rows" in upload(author, HEADER + GOOD + BAD).text


def test_a_name_that_shows_nothing_is_rejected_as_the_subscribe_form_rejects_it(
    author,
):
    response = upload(author, HEADER + "a@example.org,\u200b\u3164,Form,2026-10-01\n")
    assert rejected_lines(response) == [
        (
            2,
            "the name or source: This shows nothing but blank or invisible "
            "characters: please use letters, spaces and punctuation.",
        )
    ]
    assert not Subscriber.objects.exists()


def test_the_valid_rows_can_be_imported_without_the_rejected_ones(author):
    response = upload(author, HEADER + GOOD + BAD, anyway=True)
    assert len(rejected_lines(response)) == 7
    assert response.context["report"].created == 2
    assert set(Subscriber.objects.values_list("email", flat=True)) == {
        "a@example.org",
        "b@example.org",
    }
    # Every date kept reads back: the list, a reader's page and the export work.
    assert author.get(LIST_URL).status_code == 200
    export = author.post(
        LIST_URL,
        {
            "action": "export_csv",
            "_selected_action": Subscriber.objects.values_list("pk", flat=True),
        },
    )
    assert export.status_code == 200
    assert b"a@example.org" in b"".join(export.streaming_content)


def test_duplicates_are_merged_within_the_file_and_with_existing_subscribers(
    author,
):
    existing = SubscriberFactory(email="known@example.org", name="")
    pending = SubscriberFactory(
        email="pending@example.org", status=Subscriber.Status.PENDING
    )
    response = upload(
        author,
        HEADER
        + "A@Example.org,Alex,Sheet,2026-10-01\n"
        + "a@example.org ,Alexander,Sheet,2026-10-02\n"
        + "known@example.org,Kim,Sheet,2026-10-01\n"
        + "pending@example.org,,Sheet,2026-10-01\n",
    )
    report = response.context["report"]
    assert report.merged == [(3, 2)]
    assert (report.created, report.updated) == (1, 2)
    assert Subscriber.objects.get(email="a@example.org").name == "Alex"
    existing.refresh_from_db()
    assert existing.name == "Kim"
    assert existing.consents.get().source == "Sheet"
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.ACTIVE
    assert Subscriber.objects.count() == 3


def test_suppressed_addresses_are_skipped_and_stay_out(author):
    unsubscribed = SubscriberFactory(email="gone@example.org")
    address_suppress(email=unsubscribed.email, reason=Suppression.Reason.UNSUBSCRIBED)
    address_suppress(email="deleted@example.org", reason=Suppression.Reason.DELETED)
    address_suppress(email="spam@example.org", reason=Suppression.Reason.COMPLAINT)
    response = upload(
        author,
        HEADER
        + "gone@example.org,,Sheet,2026-10-01\n"
        + "deleted@example.org,,Sheet,2026-10-01\n"
        + "spam@example.org,,Sheet,2026-10-01\n"
        + "new@example.org,,Sheet,2026-10-01\n",
    )
    report = response.context["report"]
    assert report.skipped == [
        (2, "the address is suppressed (unsubscribed)"),
        (3, "the address is suppressed (deleted their data)"),
        (4, "the address is suppressed (spam complaint)"),
    ]
    assert report.created == 1
    assert list(Subscriber.objects.confirmed().values_list("email", flat=True)) == [
        "new@example.org"
    ]
    unsubscribed.refresh_from_db()
    assert unsubscribed.status == Subscriber.Status.UNSUBSCRIBED


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The submitted file is empty."),
        ("\ufeff".encode(), "The file is empty."),
        (codecs.BOM_UTF16_LE, "The file is empty."),
        # A UTF-16 mark, then what UTF-16 cannot be (half a surrogate pair).
        (codecs.BOM_UTF16_LE + b"\x00\xd8", "The file is not a CSV text file"),
        (b"email\x81\x8d,name\n", "The file is neither UTF-8 nor Windows-1252"),
        (b"mail,who\nx@example.org,X\n", "The first line must be the header"),
        (b"\r\n" + HEADER.encode(), "found an empty line"),
    ],
    ids=[
        "empty",
        "only a byte-order mark",
        "only a utf-16 byte-order mark",
        "binary after a utf-16 byte-order mark",
        "not text",
        "wrong header",
        "a blank line before the header",
    ],
)
def test_an_unreadable_file_gets_a_clear_error_and_nothing_changes(
    author, content, message
):
    response = author.post(
        IMPORT_URL, {"file": SimpleUploadedFile("list.csv", content, "text/csv")}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Subscriber.objects.exists()


def test_the_list_shows_counts_per_status_and_filters(author):
    SubscriberFactory.create_batch(3)
    SubscriberFactory(paused_at=timezone.now())
    SubscriberFactory(status=Subscriber.Status.PENDING)
    response = author.get(LIST_URL)
    assert response.status_code == 200
    assert ("Subscribed", 4) in response.context["status_counts"]
    assert ("Pending confirmation", 1) in response.context["status_counts"]
    assert response.context["paused_count"] == 1
    assert "Import from CSV" in response.content.decode()
    paused = author.get(LIST_URL, {"paused": "yes"})
    assert paused.context["cl"].result_count == 1
    pending = author.get(LIST_URL, {"status__exact": "pending"})
    assert pending.context["cl"].result_count == 1
    found = author.get(LIST_URL, {"q": "reader"})
    assert found.context["cl"].result_count == 5


def confirmed_consent(reader, source: str, when):
    Consent.objects.create(
        subscriber=reader,
        wording="w",
        wording_version="v",
        source=source,
        created_at=when,
        confirmed_at=when,
    )


def test_the_export_leads_with_the_imports_columns_and_holds_no_live_formula(author):
    reader = SubscriberFactory(email="reader@example.org", name="=cmd|' /C calc'!A0")
    given = timezone.now() - timedelta(days=3)
    confirmed_consent(reader, "Sheet", given)
    # Neither a request to subscribe again that nobody confirmed, nor agreeing to
    # per-reader engagement, is the consent the subscription stands on.
    for source, confirmed_at, engagement in (
        ("subscribe form", None, False),
        ("preference centre", timezone.now(), True),
    ):
        Consent.objects.create(
            subscriber=reader,
            wording="w",
            wording_version="v",
            source=source,
            confirmed_at=confirmed_at,
            engagement=engagement,
        )
    response = desk_action(author, "export_csv", reader)
    assert response.status_code == 200
    rows = list(
        csv.reader(
            io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))
        )
    )
    assert rows[0][:4] == ["email", "name", "consent_source", "consent_date"]
    assert rows[1][0] == "reader@example.org"
    assert rows[1][1] == "'=cmd|' /C calc'!A0"  # never a live formula
    assert rows[1][2:4] == ["Sheet", str(given)]
    assert rows[1][4] == "active"


def test_the_export_tells_a_spreadsheet_it_is_utf_8_and_imports_back(author):
    """Excel reads a CSV without a byte-order mark in the machine's code page:
    "Zoë" showed as "ZoÃ«"."""
    reader = SubscriberFactory(email="zoe@example.org", name="Zoë")
    confirmed_consent(reader, "Café", timezone.now() - timedelta(days=1))

    response = desk_action(author, "export_csv", reader)

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    exported = b"".join(response.streaming_content)
    assert exported.startswith("\ufeffemail,".encode())
    assert "zoe@example.org,Zoë,Café," in exported.decode("utf-8-sig")
    report = upload(author, exported.decode()).context["report"]
    assert (report.rejected, report.unchanged) == ([], 1)


def test_the_exports_file_is_named_for_the_authors_own_clock(author):
    # 23:30 UTC on 1 July is 00:30 on 2 July in London (BST): the author exporting
    # just after midnight got a file dated the day before, an hour behind.
    reader = SubscriberFactory()
    with mock.patch(
        "newsletter.admin.readers.timezone.now",
        return_value=datetime(2026, 7, 1, 23, 30, tzinfo=UTC),
    ):
        response = desk_action(author, "export_csv", reader)
    assert response["Content-Disposition"] == (
        'attachment; filename="subscribers-20260702-0030.csv"'
    )


def test_an_exported_address_that_starts_like_a_formula_imports_as_itself(author):
    reader = SubscriberFactory(email="-reader@example.org", name="=Sam")
    Consent.objects.create(
        subscriber=reader,
        wording="w",
        wording_version="v",
        source="+44 sign-up sheet",
        confirmed_at=timezone.now(),
    )
    exported = b"".join(desk_action(author, "export_csv", reader).streaming_content)
    rows = list(csv.reader(io.StringIO(exported.decode("utf-8-sig"))))
    assert rows[1][:3] == ["'-reader@example.org", "'=Sam", "'+44 sign-up sheet"]
    # The author keeps the columns the import takes, and imports the file.
    kept = io.StringIO()
    csv.writer(kept).writerows(row[:4] for row in rows)
    report = upload(author, kept.getvalue()).context["report"]
    # The reader, found under their own address, on the consent already recorded.
    assert (report.created, report.unchanged, report.rejected) == (0, 1, [])
    assert list(Subscriber.objects.values_list("email", flat=True)) == [
        "-reader@example.org"
    ]
    assert Consent.objects.latest("pk").source == "+44 sign-up sheet"


@pytest.mark.parametrize("name", ["'-x", "'=1+1", "''@home"])
def test_a_name_stored_with_an_apostrophe_before_a_formula_comes_back_as_stored(
    author, name
):
    """The import takes off the apostrophe the export quotes a formula with: a
    name that began with one of its own came back without it."""
    reader = SubscriberFactory(email="reader@example.org", name=name)
    confirmed_consent(reader, "Sheet", timezone.now() - timedelta(days=1))
    exported = b"".join(desk_action(author, "export_csv", reader).streaming_content)
    Subscriber.objects.all().delete()  # the list moved to a new site

    report = upload(author, exported.decode()).context["report"]

    assert (report.created, report.rejected) == (1, [])
    assert Subscriber.objects.get().name == name


def test_the_desks_export_imports_as_it_is_and_brings_back_only_subscribed_readers(
    author,
):
    """Moving the list to a new site: the export goes back in unchanged. A reader
    who left or never confirmed stays out (their consent is still in the file), a
    paused reader stays paused, and when each confirmed is kept."""
    when = timezone.now() - timedelta(days=40)
    paused_at = timezone.now() - timedelta(days=2)
    readers = {
        "active": SubscriberFactory(email="active@example.org", name="Ali"),
        "paused": SubscriberFactory(email="paused@example.org", paused_at=paused_at),
        "unsubscribed": SubscriberFactory(
            email="left@example.org", status=Subscriber.Status.UNSUBSCRIBED
        ),
        "bounced": SubscriberFactory(
            email="bounced@example.org", status=Subscriber.Status.BOUNCED
        ),
        "pending": SubscriberFactory(
            email="pending@example.org",
            status=Subscriber.Status.PENDING,
            confirmed_at=None,
        ),
    }
    for reader in readers.values():
        if reader.status != Subscriber.Status.PENDING:
            confirmed_consent(reader, "Conference sheet", when)
    Subscriber.objects.filter(pk=readers["active"].pk).update(confirmed_at=when)
    exported = b"".join(
        desk_action(author, "export_csv", *readers.values()).streaming_content
    )
    Subscriber.objects.all().delete()  # the new site's empty list

    report = upload(author, exported.decode()).context["report"]

    assert (report.imported, report.created, report.rejected) == (True, 2, [])
    assert [reason for _, reason in report.skipped] == [
        "exported as unsubscribed",
        "exported as bounced",
        "exported as pending: only their own confirmation subscribes them",
    ]
    assert set(Subscriber.objects.values_list("email", "status", "paused_at")) == {
        ("active@example.org", Subscriber.Status.ACTIVE, None),
        ("paused@example.org", Subscriber.Status.ACTIVE, paused_at),
    }
    active = Subscriber.objects.get(email="active@example.org")
    assert (active.name, active.confirmed_at) == ("Ali", when)
    assert active.consents.get().source == "Conference sheet"


def follows(reader: Subscriber, frequency: str, *keys: str) -> None:
    for key in keys:
        kind, _, value = key.partition(":")
        SubscriberTopic.objects.create(
            subscriber=reader, kind=kind, value=value, frequency=frequency
        )


def topic_rows() -> set[tuple[str, str, str, str]]:
    return set(
        SubscriberTopic.objects.values_list(
            "subscriber__email", "kind", "value", "frequency"
        )
    )


def digest_times() -> set[tuple[str, int | None, int | None, str]]:
    return set(
        Subscriber.objects.values_list(
            "email", "digest_hour", "digest_weekday", "time_zone"
        )
    )


def test_a_readers_topics_frequency_and_digest_time_come_back_with_the_export(
    author,
):
    """Moving the list to a new site: a weekly-digest reader came back with no
    topic rows, which is everything as it is published, and was emailed every
    post at once."""
    region = RegionFactory(slug="london")
    CategoryFactory(slug="youth")
    when = timezone.now() - timedelta(days=40)
    weekly = SubscriberFactory(
        email="weekly@example.org", digest_weekday=Weekday.FRIDAY, digest_hour=18
    )
    follows(weekly, SubscriberTopic.Frequency.WEEKLY, "everything:")
    daily = SubscriberFactory(email="daily@example.org", time_zone="America/New_York")
    follows(daily, SubscriberTopic.Frequency.DAILY, "region:london", "category:youth")
    # The desk may set each topic's frequency on its own.
    mixed = SubscriberFactory(email="mixed@example.org")
    follows(mixed, SubscriberTopic.Frequency.INSTANT, "rating:inadequate")
    follows(mixed, SubscriberTopic.Frequency.WEEKLY, f"region:{region.slug}")
    never_chose = SubscriberFactory(email="never@example.org")
    readers = [weekly, daily, mixed, never_chose]
    for reader in readers:
        confirmed_consent(reader, "Conference sheet", when)
    topics, times = topic_rows(), digest_times()
    exported = b"".join(desk_action(author, "export_csv", *readers).streaming_content)
    Subscriber.objects.all().delete()  # the new site's empty list

    response = upload(author, exported.decode())

    report = response.context["report"]
    assert (report.created, report.rejected, report.skipped) == (4, [], [])
    assert topic_rows() == topics
    assert digest_times() == times
    # Readable in a spreadsheet, and no cell of it a formula.
    rows = list(csv.DictReader(io.StringIO(exported.decode("utf-8-sig"))))
    assert [row["topics_weekly"] for row in rows] == [
        "everything",
        "",
        "region:london",
        "",
    ]
    assert rows[1]["topics_daily"] == "category:youth; region:london"
    assert rows[2]["topics_instant"] == "rating:inadequate"
    assert [rows[0][c] for c in ("digest_hour", "digest_weekday")] == ["18", "Friday"]
    assert rows[1]["digest_time_zone"] == "America/New_York"
    assert "a reader already on the list keeps what they chose" in response.text


def preferences_file(*rows: str) -> str:
    header = [*imports.COLUMNS, *imports.EXPORT_COLUMNS, *imports.PREFERENCE_COLUMNS]
    return ",".join(header) + "\n" + "".join(row + "\n" for row in rows)


def test_a_topic_this_site_does_not_have_is_left_out_saying_so(author):
    CategoryFactory(slug="youth")
    response = upload(
        author,
        preferences_file(
            "a@example.org,,Sheet,2026-01-05,active,,,,,category:youth; region:gone,,,",
        ),
    )

    report = response.context["report"]
    assert (report.created, report.rejected) == (1, [])
    assert topic_rows() == {("a@example.org", "category", "youth", "weekly")}
    assert report.topics_dropped == [(2, "region:gone")]
    assert "Topics left out" in response.text
    assert "region:gone" in response.text


def test_a_new_reader_following_only_topics_this_site_lacks_is_refused(author):
    """Left following none of them, they would follow everything, as published."""
    response = upload(
        author,
        preferences_file(
            "a@example.org,,Sheet,2026-01-05,active,,,,category:gone,,,,",
            "b@example.org,,Sheet,2026-01-05,active,,,,,everything,,,",
        ),
    )

    assert rejected_lines(response) == [
        (
            2,
            "follows only topics this site does not have (category:gone): add "
            "them to the site, or empty the row's topics to have the reader "
            "follow everything",
        )
    ]
    assert not Subscriber.objects.exists()
    upload(
        author,
        preferences_file(
            "a@example.org,,Sheet,2026-01-05,active,,,,category:gone,,,,",
            "b@example.org,,Sheet,2026-01-05,active,,,,,everything,,,",
        ),
        anyway=True,
    )
    assert topic_rows() == {("b@example.org", "everything", "", "weekly")}


def test_a_reader_already_on_the_list_keeps_the_topics_and_times_they_chose(author):
    reader = SubscriberFactory(email="a@example.org", digest_hour=7)
    follows(reader, SubscriberTopic.Frequency.DAILY, "rating:good")
    SubscriberFactory(email="b@example.org", status=Subscriber.Status.PENDING)

    response = upload(
        author,
        preferences_file(
            "a@example.org,,Sheet,2026-01-05,active,,,everything,,,18,Friday,UTC",
            # Their topics are not read: none is refused for them.
            "b@example.org,,Sheet,2026-01-05,active,,,,,category:gone,,,",
        ),
    )

    report = response.context["report"]
    assert (report.updated, report.rejected, report.topics_dropped) == (2, [], [])
    assert topic_rows() == {("a@example.org", "rating", "good", "daily")}
    assert digest_times() == {
        ("a@example.org", 7, None, "Europe/London"),
        ("b@example.org", None, None, "Europe/London"),
    }
    assert "keeps what they chose here (2 kept theirs)" in response.text


@pytest.mark.parametrize(
    "cells, reason",
    [
        ("region,,,,,", "the topic “region” is not “everything” or a kind and a slug"),
        ("colour:red,,,,,", "the topic “colour:red” is not “everything”"),
        ("rating:good,,rating:good,,,", "the topic “rating:good” is under two"),
        (",,,24,,", "the digest hour “24” is not a whole hour from 0 to 23"),
        (",,,7pm,,", "the digest hour “7pm” is not a whole hour"),
        (",,,,Funday,", "the digest weekday “Funday” is not a day of the week"),
        (",,,,,Mars/Olympus", "the digest time zone “Mars/Olympus” is not one a"),
    ],
)
def test_a_topic_or_digest_time_no_export_writes_is_rejected(author, cells, reason):
    response = upload(
        author, preferences_file(f"a@example.org,,Sheet,2026-01-05,active,,,{cells}")
    )

    ((line, said),) = rejected_lines(response)
    assert line == 2 and said.startswith(reason)
    assert not Subscriber.objects.exists()


def test_a_topic_that_is_no_slug_is_rejected_with_its_line_not_looked_for(author):
    # A NUL past the first few KB (where a binary file is told) went into the
    # query for the site's topics: a server error on PostgreSQL.
    readers = "".join(
        f"reader{number}@example.org,,Sheet,2026-01-05,active,,,,,,,,\n"
        for number in range(100)
    )
    response = upload(
        author,
        preferences_file(
            readers + "a@example.org,,Sheet,2026-01-05,active,,,,region:lon\x00don,,,,"
        ),
    )

    ((line, said),) = rejected_lines(response)
    assert line == 102
    assert said.startswith("the topic “region:lon\x00don” is not “everything” or")
    assert not Subscriber.objects.exists()


def test_a_digest_day_is_read_whatever_its_case_and_a_topic_however_separated(
    author,
):
    RegionFactory(slug="london")
    upload(
        author,
        preferences_file(
            'a@example.org,,Sheet,2026-01-05,active,,,,"region:london, rating:good",'
            ",06,monday,Europe/Paris"
        ),
    )

    assert topic_rows() == {
        ("a@example.org", "region", "london", "daily"),
        ("a@example.org", "rating", "good", "daily"),
    }
    assert digest_times() == {("a@example.org", 6, Weekday.MONDAY, "Europe/Paris")}


def test_an_exported_row_with_a_status_or_date_no_export_writes_is_rejected(author):
    header = ",".join([*imports.COLUMNS, *imports.EXPORT_COLUMNS]) + "\n"
    response = upload(
        author,
        header + "a@example.org,,Sheet,2026-10-01,subscribed,,\n"
        "b@example.org,,Sheet,2026-10-01,active,last week,\n"
        "c@example.org,,Sheet,2026-10-01,active,,2999-01-01\n",
    )
    (status, paused, confirmed) = rejected_lines(response)
    assert [status[0], paused[0], confirmed[0]] == [2, 3, 4]
    assert "“subscribed” is not one of pending, active" in status[1]
    assert "paused_at “last week” is not a date" in paused[1]
    assert "confirmed_at is in the future" in confirmed[1]
    assert not Subscriber.objects.exists()


def test_bulk_unsubscribe_and_suppress(author):
    first, second, kept = SubscriberFactory.create_batch(3)
    desk_action(author, "unsubscribe", first, confirmed=True)
    desk_action(author, "suppress", second, confirmed=True)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Subscriber.Status.UNSUBSCRIBED
    assert second.status == Subscriber.Status.SUPPRESSED
    assert Suppression.objects.for_email(second.email).get().reason == "manual"
    assert list(Subscriber.objects.confirmed()) == [kept]


def test_bulk_suppress_says_how_many_it_suppressed_as_a_success(author):
    """It said "1 addresses suppressed.", and as a warning, though it was done."""
    one, two, three = SubscriberFactory.create_batch(3)

    response = desk_action(author, "suppress", one, confirmed=True)
    assert [(m.level_tag, str(m)) for m in response.wsgi_request._messages] == [
        ("success", "1 address suppressed.")
    ]
    author.get(LIST_URL)  # the first message read, as the list shows it
    response = desk_action(author, "suppress", two, three, confirmed=True)
    assert [(m.level_tag, str(m)) for m in response.wsgi_request._messages] == [
        ("success", "2 addresses suppressed.")
    ]


def test_bulk_unsubscribe_says_which_readers_it_changed_and_which_had_left(author):
    receiving, pending = (
        SubscriberFactory(),
        SubscriberFactory(status=Subscriber.Status.PENDING),
    )
    bounced = SubscriberFactory(status=Subscriber.Status.BOUNCED)
    address_suppress(email=bounced.email, reason=Suppression.Reason.HARD_BOUNCE)

    response = desk_action(
        author, "unsubscribe", receiving, pending, bounced, confirmed=True
    )

    assert sorted(Subscriber.objects.values_list("status", flat=True)) == [
        "bounced",
        "unsubscribed",
        "unsubscribed",
    ]
    assert [str(m) for m in response.wsgi_request._messages] == [
        "2 subscribers unsubscribed; left as they were, out of the list already "
        "(bounced, complained or suppressed): 1."
    ]


def test_bulk_unsubscribe_counts_only_the_readers_it_unsubscribed(author):
    """A reader who had left by themselves was counted as unsubscribed by the desk."""
    receiving, left_themselves = SubscriberFactory.create_batch(2)
    subscriber_unsubscribe(subscriber=left_themselves)

    response = desk_action(
        author, "unsubscribe", receiving, left_themselves, confirmed=True
    )

    assert [str(m) for m in response.wsgi_request._messages] == [
        "1 subscriber unsubscribed; left as they were, unsubscribed already: 1."
    ]


def test_bulk_unsubscribe_asks_first_as_the_desk_cannot_undo_it(author):
    """Only a reader lifts their unsubscribe, by subscribing again: one Go on the
    wrong action, over a whole list selected, lost every reader for good."""
    readers = SubscriberFactory.create_batch(2)

    asked = desk_action(author, "unsubscribe", *readers)

    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Unsubscribe 2 readers?" in page
    assert "only they can subscribe again" in page
    assert all(reader.email in page for reader in readers)
    assert set(Subscriber.objects.values_list("status", flat=True)) == {
        Subscriber.Status.ACTIVE
    }
    assert not Suppression.objects.exists()

    desk_action(author, "unsubscribe", *readers, confirmed=True)

    assert set(Subscriber.objects.values_list("status", flat=True)) == {
        Subscriber.Status.UNSUBSCRIBED
    }


def test_bulk_suppress_asks_first_as_it_stops_every_email_until_lifted(author):
    """One Go on the wrong action, over a whole list selected, stopped every email
    to every reader at once, the links they ask for too."""
    readers = SubscriberFactory.create_batch(2)

    asked = desk_action(author, "suppress", *readers)

    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Suppress 2 readers?" in page
    assert "We send nothing to their addresses" in page
    assert "lifts the suppression from the Suppressions list" in page
    assert all(reader.email in page for reader in readers)
    assert not Suppression.objects.exists()

    desk_action(author, "suppress", *readers, confirmed=True)

    assert set(Subscriber.objects.values_list("status", flat=True)) == {
        Subscriber.Status.SUPPRESSED
    }
    assert Suppression.objects.count() == 2


@pytest.mark.parametrize("action", ["unsubscribe", "suppress"])
def test_taking_back_the_question_stops_no_readers_emails(author, action):
    """Its "No, take me back" is a link back to the list, which sends nothing: the
    readers are left as they were."""
    reader = SubscriberFactory()

    asked = desk_action(author, action, reader).content.decode()
    author.get(LIST_URL)  # as "No, take me back" goes back to it

    assert '<a href="#" class="button cancel-link">No, take me back</a>' in asked
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    ("action", "question", "then"),
    [
        ("unsubscribe", "Unsubscribe 3 readers?", Subscriber.Status.UNSUBSCRIBED),
        ("suppress", "Suppress 3 readers?", Subscriber.Status.SUPPRESSED),
    ],
)
def test_the_question_for_the_whole_list_counts_every_reader_its_filter_finds(
    author, action, question, then
):
    """Every reader the list's filter found ("Select all"), not the page's alone."""
    SubscriberFactory.create_batch(3)
    SubscriberFactory(status=Subscriber.Status.PENDING)  # filtered out
    changelist = f"{LIST_URL}?status__exact=active"
    chosen = {
        "action": action,
        "select_across": "1",
        "_selected_action": [Subscriber.objects.first().pk],
    }

    asked = author.post(changelist, chosen)

    assert question in asked.content.decode()
    author.post(changelist, {**chosen, "post": "yes"})
    assert sorted(Subscriber.objects.values_list("status", flat=True)) == sorted(
        [then, then, then, Subscriber.Status.PENDING]
    )


def test_bulk_unsubscribe_and_suppress_are_in_each_readers_history(author):
    """Who at the desk stopped a reader's emails, on the reader's history page and
    in the data they download: the list's actions recorded nothing, where lifting
    a suppression did."""
    unsubscribed, suppressed, left_themselves = SubscriberFactory.create_batch(3)
    subscriber_unsubscribe(subscriber=left_themselves)

    desk_action(author, "unsubscribe", unsubscribed, left_themselves, confirmed=True)
    # From the list of those receiving, which a suppressed reader leaves.
    author.post(
        f"{LIST_URL}?status__exact=active",
        {"action": "suppress", "_selected_action": [suppressed.pk], "post": "yes"},
    )

    def history(reader) -> str:
        return author.get(f"{LIST_URL}{reader.pk}/history/").content.decode()

    assert "Unsubscribed at the desk." in history(unsubscribed)
    assert "Suppressed at the desk: never emailed." in history(suppressed)
    assert "at the desk" not in history(left_themselves)  # they left by themselves
    exported = subscriber_export(subscriber=Subscriber.objects.get(pk=unsubscribed.pk))
    assert [entry["change"] for entry in exported["desk_history"]] == [
        "Unsubscribed at the desk."
    ]


def test_the_suppression_list_is_searchable_by_address(author):
    address_suppress(email="spam@example.org", reason=Suppression.Reason.COMPLAINT)
    address_suppress(email="other@example.org", reason=Suppression.Reason.HARD_BOUNCE)
    url = "/admin/newsletter/suppression/"
    assert author.get(url).context["cl"].result_count == 2
    found = author.get(url, {"q": " SPAM@example.org"})
    assert [s.reason for s in found.context["cl"].result_list] == ["complaint"]


def test_the_desk_lifts_a_bounce_but_not_an_erased_persons_suppression(author):
    """Lifted at the desk, an erased person's suppression would let an import add
    them again; they come back only by subscribing themselves."""
    address_suppress(email="bounced@example.org", reason=Suppression.Reason.HARD_BOUNCE)
    address_suppress(email="erased@example.org", reason=Suppression.Reason.DELETED)
    bounced, erased = (
        Suppression.objects.for_email(email).get()
        for email in ("bounced@example.org", "erased@example.org")
    )
    refused = author.post(
        "/admin/newsletter/suppression/",
        {"action": "delete_selected", "_selected_action": [bounced.pk, erased.pk]},
    )
    assert "only they lift them, by subscribing again" in refused.content.decode()
    page = author.post(
        f"/admin/newsletter/suppression/{erased.pk}/delete/", {"post": "yes"}
    )
    assert page.status_code == 403
    assert Suppression.objects.count() == 2

    lifted = author.post(
        f"/admin/newsletter/suppression/{bounced.pk}/delete/", {"post": "yes"}
    )
    assert lifted.status_code == 302
    assert list(Suppression.objects.values_list("reason", flat=True)) == ["deleted"]

    upload(author, HEADER + "erased@example.org,,Sheet,2026-10-01\n")
    assert not Subscriber.objects.filter(email="erased@example.org").exists()


def test_a_readers_page_counts_the_newsletter_emails_sent_them_and_lists_them(
    author,
):
    reader, other = SubscriberFactory.create_batch(2)
    for n, (status, to) in enumerate(
        [
            (Delivery.Status.SENT, reader),
            (Delivery.Status.SENT, reader),
            (Delivery.Status.FAILED, reader),
            (Delivery.Status.SENT, other),
        ]
    ):
        mailing = Mailing.objects.create(
            kind=Mailing.Kind.DIGEST,
            frequency="daily",
            slot=timezone.now() - timedelta(days=n),
            period=(timezone.now() - timedelta(days=n)).date(),
        )
        batch = Batch.objects.create(mailing=mailing, number=1, size=1)
        Delivery.objects.create(
            mailing=mailing, batch=batch, subscriber=to, status=status
        )

    page = author.get(f"/admin/newsletter/subscriber/{reader.pk}/change/")

    html = page.content.decode()
    assert "2 sent, 1 failed" in html
    (listing,) = re.findall(r'href="(/admin/newsletter/delivery/\?[^"]*)"', html)
    listed = author.get(listing.replace("&amp;", "&"))
    assert listed.context["cl"].result_count == 3


def test_a_readers_emails_are_found_by_their_address_as_they_write_it(author):
    reader = SubscriberFactory(email="reader@xn--bcher-kva.example")
    slot = timezone.now()
    mailing = Mailing.objects.create(
        kind=Mailing.Kind.DIGEST, frequency="daily", slot=slot, period=slot.date()
    )
    batch = Batch.objects.create(mailing=mailing, number=1, size=1)
    Delivery.objects.create(mailing=mailing, batch=batch, subscriber=reader)

    found = author.get("/admin/newsletter/delivery/", {"q": "Reader@Bücher.example"})

    assert found.context["cl"].result_count == 1


def test_the_desk_cannot_set_when_a_reader_last_asked_for_a_link(author):
    reader = SubscriberFactory()
    page = author.get(f"/admin/newsletter/subscriber/{reader.pk}/change/")
    form = page.context["adminform"].form
    assert "email_change_requested_at" not in form.fields
    assert "one_time_link_sent_at" not in form.fields


def test_a_reader_is_found_at_the_desk_by_their_address_as_they_write_it(author):
    """A reader asking by email for their data, or its erasure, writes their
    address their own way: the desk finds them however it is stored."""
    SubscriberFactory(email="reader@xn--bcher-kva.example", name="Sam")
    SubscriberFactory(email="other@example.org")
    url = "/admin/newsletter/subscriber/"
    for typed in ("Reader@Bücher.example", "@bücher.example", "Sam"):
        found = author.get(url, {"q": typed}).context["cl"].result_list
        assert [s.email for s in found] == ["reader@xn--bcher-kva.example"], typed
    Event.objects.create(
        esp="postmark",
        event_id="e-1",
        event_type="bounced",
        recipient="reader@xn--bcher-kva.example",
        raw={},
    )
    events = author.get("/admin/newsletter/event/", {"q": "Reader@Bücher.example"})
    assert events.context["cl"].result_count == 1


@pytest.mark.parametrize(
    "pasted",
    [
        "<Reader@Bücher.example>",
        "Sam <reader@bücher.example>",
        '"Jones, Samantha" <Reader@xn--bcher-kva.example>',
    ],
)
def test_a_reader_is_found_at_the_desk_by_the_address_pasted_from_their_email(
    author, pasted
):
    """A reader writing in is named by their email's From line, pasted as it is:
    the desk found nothing, the brackets and the sender's own name searched for
    too."""
    reader = SubscriberFactory(email="reader@xn--bcher-kva.example", name="Sam")
    SubscriberFactory(email="other@example.org", name="Sam")
    slot = timezone.now()
    mailing = Mailing.objects.create(
        kind=Mailing.Kind.DIGEST, frequency="daily", slot=slot, period=slot.date()
    )
    batch = Batch.objects.create(mailing=mailing, number=1, size=1)
    Delivery.objects.create(mailing=mailing, batch=batch, subscriber=reader)

    readers = author.get(LIST_URL, {"q": pasted}).context["cl"].result_list
    emails = author.get("/admin/newsletter/delivery/", {"q": pasted})

    assert [found.email for found in readers] == [reader.email]
    assert emails.context["cl"].result_count == 1


@pytest.mark.parametrize(
    "email", ["reader@☕.example", "reader@localhost", "reader@[127.0.0.1]"]
)
def test_the_import_refuses_an_address_the_subscribe_form_refuses(author, email):
    response = upload(author, HEADER + f"{email},,Sheet,2026-10-01\n", anyway=True)
    assert rejected_lines(response) == [(2, f"“{email}”: Enter a valid email address.")]
    assert not Subscriber.objects.exists()


def test_the_import_refuses_an_address_too_long_before_the_at_saying_so(author):
    email = "r" * 65 + "@example.org"
    response = upload(author, HEADER + f"{email},,Sheet,2026-10-01\n", anyway=True)
    assert rejected_lines(response) == [
        (
            2,
            f"“{email}”: The part before the @ is longer than email allows"
            " (64 characters). Please check the address.",
        )
    ]
    assert not Subscriber.objects.exists()


def test_an_imported_unicode_domain_and_the_forms_idna_form_are_one_reader(
    author, client
):
    upload(author, HEADER + "Reader@Bücher.example,Sam,Sheet,2026-10-01\n")
    client.logout()
    client.post("/subscribe/", {"email": "reader@xn--bcher-kva.example"})
    assert list(Subscriber.objects.values_list("email", "status")) == [
        ("reader@xn--bcher-kva.example", Subscriber.Status.ACTIVE)
    ]


def test_a_reader_added_at_the_desk_is_stored_as_the_form_stores_them(author):
    SubscriberFactory(email="sam@example.org")
    form = admin_subscriber_form(name="")
    twice = author.post(
        "/admin/newsletter/subscriber/add/", {**form, "email": " Sam@Example.org"}
    )
    assert twice.status_code == 200
    assert "Subscriber with this Email already exists." in twice.content.decode()
    added = author.post(
        "/admin/newsletter/subscriber/add/", {**form, "email": "Reader@Bücher.example"}
    )
    assert added.status_code == 302
    assert sorted(Subscriber.objects.values_list("email", flat=True)) == [
        "reader@xn--bcher-kva.example",
        "sam@example.org",
    ]


def test_an_address_suppressed_after_the_file_was_checked_is_still_skipped():
    report = imports.read_csv(
        (HEADER + "late@bücher.example,,Sheet,2026-10-01\n").encode()
    )
    assert [row.email for row in report.rows] == ["late@xn--bcher-kva.example"]
    address_suppress(
        email="late@xn--bcher-kva.example", reason=Suppression.Reason.UNSUBSCRIBED
    )
    imports.import_rows(report=report)
    assert report.skipped == [(2, "the address is suppressed (unsubscribed)")]
    assert not Subscriber.objects.exists()


@pytest.mark.parametrize("reason", Suppression.Reason.values)
def test_an_import_never_brings_back_a_reader_who_left(author, reason):
    reader = SubscriberFactory(email="left@example.org")
    address_suppress(email=reader.email, reason=reason)
    reader.refresh_from_db()
    status = reader.status
    response = upload(author, HEADER + "left@example.org,,Sheet,2026-10-01\n")
    label = Suppression.Reason(reason).label.lower()
    assert response.context["report"].skipped == [
        (2, f"the address is suppressed ({label})")
    ]
    reader.refresh_from_db()
    assert reader.status == status != Subscriber.Status.ACTIVE


MOVED_AWAY = "a reader moved from this address to another: their consent went with them"


@pytest.mark.parametrize(
    ("then", "why"),
    [
        ("stays", MOVED_AWAY),
        ("unsubscribes", MOVED_AWAY),
        ("erases their data", "the address is suppressed (deleted their data)"),
    ],
    ids=["stays", "unsubscribes", "erases their data"],
)
def test_an_import_never_brings_back_the_address_a_reader_moved_away_from(
    author, then, why
):
    """An old list holds a reader under the address they left: the consent it
    records went with them to their new address, and perhaps out of the list."""
    reader = SubscriberFactory(email="sam@work.example")
    assert email_change_confirm(subscriber=reader, new_email="sam@home.example")
    if then == "unsubscribes":
        subscriber_unsubscribe(subscriber=reader)
    elif then == "erases their data":
        subscriber_delete(subscriber=reader)

    response = upload(author, HEADER + "sam@work.example,Sam,Old list,2024-01-01\n")

    assert response.context["report"].skipped == [(2, why)]
    assert not Subscriber.objects.filter(email="sam@work.example").exists()


def test_a_request_nobody_confirmed_for_the_address_an_erased_reader_left_keeps_it_out(
    author,
):
    """Someone typed the address the reader had left into the subscribe form and
    never confirmed it: the erasure took that request for the address's owner and
    left the address unsuppressed, and the old list's consent, which went with
    the reader, stood in for the request's confirmation."""
    reader = SubscriberFactory(email="sam@work.example")
    assert email_change_confirm(subscriber=reader, new_email="sam@home.example")
    subscription_request(email="sam@work.example")
    subscriber_delete(subscriber=reader)

    response = upload(author, HEADER + "sam@work.example,Sam,Old list,2024-01-01\n")

    assert response.context["report"].skipped == [
        (2, "the address is suppressed (deleted their data)")
    ]
    # The request is untouched, as anyone's: its own link still confirms it.
    request = Subscriber.objects.get(email="sam@work.example")
    assert request.status == Subscriber.Status.PENDING
    subscriber_confirm(subscriber=request, consent_id=request.consents.get().pk)
    assert Subscriber.objects.confirmed().get() == request


def test_a_reader_who_moved_back_to_an_address_is_imported_there_as_anyone(author):
    reader = SubscriberFactory(email="sam@work.example", name="")
    assert email_change_confirm(subscriber=reader, new_email="sam@home.example")
    assert email_change_confirm(subscriber=reader, new_email="sam@work.example")

    response = upload(author, HEADER + "sam@work.example,Sam,Old list,2024-01-01\n")

    assert response.context["report"].updated == 1
    reader.refresh_from_db()
    assert (reader.name, reader.status) == ("Sam", Subscriber.Status.ACTIVE)


def test_readers_moved_with_the_desks_own_export_are_counted_by_its_source(rf):
    """The export's confirmed_at (when they confirmed) set the reader's, but their
    imported consent was dated by when they asked: the desk, which tells a
    reader's source by the consent their confirmation confirmed, listed them as
    "Added in the admin", with no consent recorded."""
    asked = timezone.now() - timedelta(weeks=3)
    confirmed = asked + timedelta(minutes=5)
    header = ",".join([*imports.COLUMNS, *imports.EXPORT_COLUMNS])
    line = (
        f"moved@example.org,Ali,Old site,{asked.isoformat()},active,,"
        f"{confirmed.isoformat()}"
    )
    report = imports.read_csv(f"{header}\n{line}\n".encode())
    assert report.rejected == []
    imports.import_rows(report=report)
    reader = Subscriber.objects.get(email="moved@example.org")
    assert reader.consents.get().source == "Old site"
    request = rf.get("/admin/")
    request.user = UserFactory()
    assert dict(desk_for(request).sources) == {"Import: Old site": 1}


@pytest.mark.usefixtures("celery_eager")
def test_a_reader_added_at_the_desk_is_asked_to_confirm_and_then_receives(
    client, django_capture_on_commit_callbacks
):
    """Someone who asked the author in person: added at the desk, they were left
    pending, never emailed, and deleted a week later by the purge of requests
    nobody confirmed. They are sent the form's confirmation, and receive the
    newsletter once they confirm it."""
    with django_capture_on_commit_callbacks(execute=True):
        response = reader_added_at_the_desk(
            client, email="Sam@Example.org", name="Sam", follow=True
        )
    assert response.status_code == 200
    assert "A confirmation email went to sam@example.org" in response.text
    reader = Subscriber.objects.get(email="sam@example.org")
    assert reader.status == Subscriber.Status.PENDING
    [confirmation] = mail.outbox
    assert confirmation.to == ["sam@example.org"]
    assert reader.consents.get().source == "the desk"
    link = re.search(r"http://[^/\s]+(/subscribe/confirm/\S+/)", confirmation.body)[1]
    with django_capture_on_commit_callbacks(execute=True):
        Client().post(link, {"name": "Sam"})
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    request = RequestFactory().get("/admin/")
    request.user = UserFactory()
    sources = dict(desk_for(request).sources)
    assert sources == {"Added at the desk, confirmed by the reader": 1}


def test_an_address_on_the_suppression_list_is_refused_at_the_desk(client):
    address_suppress(email="gone@example.org", reason=Suppression.Reason.COMPLAINT)
    response = reader_added_at_the_desk(client, email="gone@example.org")
    assert response.status_code == 200
    assert "is on the suppression list" in response.text
    assert not Subscriber.objects.exists()


def test_importing_the_same_file_again_changes_nothing(author):
    upload(author, HEADER + GOOD)
    before = list(Consent.objects.values_list("subscriber__email", "source"))

    again = upload(author, HEADER + GOOD)

    assert list(Consent.objects.values_list("subscriber__email", "source")) == before
    report = again.context["report"]
    assert (report.created, report.updated, report.unchanged) == (0, 0, 2)
    assert "2 already subscribed on this consent" in again.content.decode()


def test_a_file_excel_saved_in_windows_1252_imports_with_its_accents(author):
    """Excel's "CSV (Comma delimited)" on Windows writes the names in Windows-1252,
    not UTF-8."""
    text = HEADER + "zoe@example.org,Zoë Brontë,Café sign-up \u2013 2025,2025-10-01\r\n"
    response = author.post(
        IMPORT_URL,
        {"file": SimpleUploadedFile("list.csv", text.encode("cp1252"), "text/csv")},
    )
    assert response.status_code == 200
    reader = Subscriber.objects.get(email="zoe@example.org")
    assert reader.name == "Zoë Brontë"
    assert reader.consents.get().source == "Café sign-up \u2013 2025"
    assert "read as Windows-1252" in response.content.decode()


def test_a_file_excel_for_mac_saved_in_mac_roman_imports_with_its_accents(author):
    """Excel for Mac's "Comma Separated Values" writes Mac Roman, its lines ended
    by a carriage return alone (a cell's own line breaks by a line feed): read as
    Windows-1252, "Zoë" was stored with a curly quote for its "ë"."""
    text = (
        "email,name,consent_source,consent_date,notes\r"
        'zoe@example.org,Zoë Brontë,Café,2025-10-01,"met at\nthe café"\r'
        "ren@example.org,Renée,Café,2025-10-01,\r"
    )
    response = author.post(
        IMPORT_URL,
        {"file": SimpleUploadedFile("list.csv", text.encode("mac_roman"), "text/csv")},
    )
    assert response.status_code == 200
    assert response.context["report"].created == 2
    reader = Subscriber.objects.get(email="zoe@example.org")
    assert (reader.name, reader.consents.get().source) == ("Zoë Brontë", "Café")
    assert "read as Mac Roman" in response.text


def test_a_workbook_uploaded_instead_of_its_csv_is_refused_saying_so(author):
    workbook = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00[Content_Types].xml"
    response = author.post(
        IMPORT_URL, {"file": SimpleUploadedFile("list.xlsx", workbook)}
    )
    assert response.status_code == 400
    assert "not a CSV text file" in response.content.decode()
    assert not Subscriber.objects.exists()


@pytest.mark.parametrize("mark", [codecs.BOM_UTF8, b""], ids=["with-bom", "no-bom"])
def test_a_utf_8_file_holding_one_windows_1252_byte_is_refused_naming_its_line(
    author, mark
):
    """A UTF-8 file into which one line was pasted from a Windows-1252 one. With
    its byte-order mark, read as Windows-1252, its header began with the mark's
    "ï»¿" and was refused as no header; without it, it was imported with every
    UTF-8 name garbled ("ZoÃ«"), and nothing said so."""
    data = (
        mark
        + HEADER.encode()
        + "a@example.org,Zoë,Sheet,2026-10-01\r\n".encode()
        + "b@example.org,Renée,Sheet,2026-10-01\r\n".encode("cp1252")
    )
    response = author.post(
        IMPORT_URL, {"file": SimpleUploadedFile("list.csv", data, "text/csv")}
    )
    assert response.status_code == 400
    assert "Line 3 holds a character that is not UTF-8" in response.text
    assert not Subscriber.objects.exists()


@pytest.mark.parametrize("byte_order", ["le", "be"])
def test_excels_unicode_text_in_utf_16_imports_with_its_accents(author, byte_order):
    """Excel's "Unicode text" is UTF-16, its byte order told by its byte-order
    mark, with tabs between the cells."""
    text = (
        "email\tname\tconsent_source\tconsent_date\r\n"
        "zoe@example.org\tZoë Brontë\tCafé sign-up\t2025-10-01\r\n"
        "sam@example.org\t\tCafé sign-up\t2025-10-01\r\n"
    )
    data = getattr(codecs, f"BOM_UTF16_{byte_order.upper()}") + text.encode(
        f"utf-16-{byte_order}"
    )
    response = author.post(
        IMPORT_URL, {"file": SimpleUploadedFile("list.txt", data, "text/plain")}
    )
    assert response.status_code == 200
    assert response.context["report"].created == 2
    zoe = Subscriber.objects.get(email="zoe@example.org")
    assert (zoe.name, zoe.consents.get().source) == ("Zoë Brontë", "Café sign-up")


@pytest.mark.parametrize(
    ("encoding", "megabytes_of_text", "imported"),
    [("utf-8", 4, True), ("utf-16", 4, True), ("utf-8", 6, False)],
)
def test_the_size_limit_is_the_lists_whatever_its_encoding(
    author, encoding, megabytes_of_text, imported
):
    """UTF-16 writes in two bytes what UTF-8 writes in one: the same list saved as
    Excel's "Unicode text" was refused as larger than 5 MB at half the size."""
    notes = "n" * 100_000  # a column the import does not read, under csv's limit
    rows = [
        f"reader{number}@example.org,Sheet,2026-10-01,{notes}\r\n"
        for number in range(megabytes_of_text * 1024 * 1024 // len(notes))
    ]
    text = "email,consent_source,consent_date,notes\r\n" + "".join(rows)
    response = author.post(
        IMPORT_URL,
        {"file": SimpleUploadedFile("list.csv", text.encode(encoding), "text/csv")},
    )
    if imported:
        assert response.status_code == 200
        assert response.context["report"].created == len(rows)
    else:
        assert response.status_code == 400
        assert "The file is larger than 5 MB." in response.text
        assert not Subscriber.objects.exists()


def test_a_tab_separated_file_imports_as_a_comma_separated_one(author):
    response = upload(
        author,
        "Email\tName\tConsent source\tConsent date\n"
        "a@example.org\tDupont, Alex\tSalon; Lyon\t2026-10-01\n"
        "b@example.org\t\tListe\t2025-03-15\n",
    )
    assert response.context["report"].created == 2
    alex = Subscriber.objects.get(email="a@example.org")
    assert (alex.name, alex.consents.get().source) == ("Dupont, Alex", "Salon; Lyon")


def test_a_file_of_only_a_header_says_it_has_no_rows(author):
    response = upload(author, HEADER + "\n,,,\n")
    assert response.status_code == 200
    assert "The file has no rows below its header" in response.text
    assert not Subscriber.objects.exists()


def test_excels_semicolon_separated_csv_imports_as_a_comma_separated_one(author):
    """Excel writes ';' between cells where the decimal mark is a comma (a
    contributor's French or German Excel)."""
    response = upload(
        author,
        "Email;Name;Consent source;Consent date\r\n"
        'a@example.org;"Dupont, Alex";Salon; Lyon;2026-10-01\r\n'
        "b@example.org;;Liste;2025-03-15\r\n",
    )
    assert rejected_lines(response) == [(2, "expected 4 columns, found 5")]
    response = upload(
        author,
        "Email;Name;Consent source;Consent date\r\n"
        'a@example.org;"Dupont, Alex";"Salon; Lyon";2026-10-01\r\n'
        "b@example.org;;Liste;2025-03-15\r\n",
    )
    assert response.context["report"].created == 2
    alex = Subscriber.objects.get(email="a@example.org")
    assert (alex.name, alex.consents.get().source) == ("Dupont, Alex", "Salon; Lyon")


@pytest.mark.parametrize("separator", [";", "|", "\t"])
def test_excels_sep_line_is_skipped_and_the_separator_it_names_is_used(
    author, separator
):
    """Excel writes "sep=;" above the header to say what separates the cells:
    the file was refused, the line read as its header."""
    lines = [
        ["Email", "Name", "Consent source", "Consent date"],
        ["a@example.org", "Dupont, Alex", "Salon", "2026-10-01"],
        ["not-an-address", "", "Liste", "2025-03-15"],
        ["b@example.org", "", "Liste", "2025-03-15"],
    ]
    text = f"sep={separator}\r\n" + "".join(
        separator.join(cells) + "\r\n" for cells in lines
    )

    response = upload(author, text, anyway=True)

    assert response.status_code == 200
    assert [line for line, _ in rejected_lines(response)] == [4]
    assert response.context["report"].created == 2
    assert Subscriber.objects.get(email="a@example.org").name == "Dupont, Alex"


@pytest.mark.parametrize(
    "text",
    [HEADER + GOOD + "\x1a", HEADER + "a@example.org,Alex,Sheet,2026-10-01\x1a"],
    ids=["on a line of its own", "after the last cell"],
)
def test_a_ctrl_z_at_the_very_end_of_the_file_is_ignored(author, text):
    """Old DOS programs end a text file with Ctrl-Z: it was a rejected line, or
    a date that was no date."""
    response = upload(author, text)
    assert rejected_lines(response) == []
    assert response.context["report"].imported
    # Anywhere else it is a control character, as in any cell.
    response = upload(author, HEADER + "d@example.org,D\x1a,Sheet,2026-10-01\n")
    assert [line for line, _ in rejected_lines(response)] == [2]


def test_a_file_whose_lines_end_in_a_carriage_return_alone_is_read_by_its_header(
    author,
):
    """Excel for Mac's "Comma Separated Values" ends its lines in a carriage
    return alone: the separator was looked for in the whole file as its first
    line, and a comma in any cell of a semicolon-separated one refused its
    header."""
    response = upload(
        author,
        "Email;Name;Consent source;Consent date\r"
        'a@example.org;"Dupont, Alex";Salon;2026-10-01\r'
        "b@example.org;;Liste;2025-03-15\r",
    )
    assert response.status_code == 200
    assert response.context["report"].created == 2
    assert Subscriber.objects.get(email="a@example.org").name == "Dupont, Alex"


def test_empty_columns_a_spreadsheet_left_at_the_end_of_each_line_are_ignored(author):
    """A column whose cells were cleared, not deleted, stays in the spreadsheet's
    CSV as a trailing comma on every line."""
    response = upload(
        author,
        "email,name,consent_source,consent_date,,\r\n"
        "a@example.org,Alex,Sheet,2026-10-01,,\r\n"
        "b@example.org,,Sheet,2026-10-01,,\r\n"
        "c@example.org,Cy,Sheet,2026-10-01,a note,\r\n",
    )
    assert rejected_lines(response) == [(4, "expected 4 columns, found 5")]
    assert upload(author, HEADER + GOOD.replace("\n", ",\n")).status_code == 200
    assert Subscriber.objects.count() == 2


# Mailchimp's audience export: its subscribed members' file, as it writes it.
MAILCHIMP_HEADER = (
    '"Email Address","First Name","Last Name","Address","Phone Number",'
    '"Birthday","MEMBER_RATING","OPTIN_TIME","OPTIN_IP","CONFIRM_TIME",'
    '"CONFIRM_IP","LATITUDE","LONGITUDE","GMTOFF","DSTOFF","TIMEZONE","CC",'
    '"REGION","LAST_CHANGED","LEID","EUID","NOTES","TAGS"\n'
)


def mailchimp_row(email, first, last, optin_time, confirm_time, *, extra=()):
    return (
        ",".join(
            [
                f'"{email}"',
                f'"{first}"',
                f'"{last}"',
                '"1 High St  Leeds  LS1 1AA  GB"',
                '"0113 496 0000"',
                '"03/14"',
                "2",
                f'"{optin_time}"',
                '"203.0.113.5"',
                f'"{confirm_time}"',
                '"203.0.113.5"',
                '"53.8"',
                '"-1.5"',
                '"0"',
                '"1"',
                '"Europe/London"',
                '"GB"',
                '"ENG"',
                '"2024-03-02 09:00:00"',
                '"123456"',
                '"a1b2c3"',
                '""',
                '""',
                *extra,
            ]
        )
        + "\n"
    )


def upload_with_source(client, text: str, source: str):
    return client.post(
        IMPORT_URL,
        {
            "file": SimpleUploadedFile("members.csv", text.encode(), "text/csv"),
            "consent_source": source,
        },
    )


def test_a_mailchimp_audience_export_is_imported_with_its_names_and_consent_dates(
    author,
):
    response = upload_with_source(
        author,
        MAILCHIMP_HEADER
        + mailchimp_row(
            "sam@example.org",
            "Sam",
            "Jones",
            "2024-03-01 12:34:56",
            "2024-03-01 12:40:00",
        )
        # Added to Mailchimp by hand: no opt-in time, its confirmation stands.
        + mailchimp_row("alex@example.org", "Alex", "", "", "2024-05-06 07:08:09"),
        "Mailchimp: Probation news",
    )

    assert response.status_code == 200
    assert response.context["report"].created == 2
    sam = Subscriber.objects.get(email="sam@example.org")
    assert sam.name == "Sam Jones"
    assert sam.status == Subscriber.Status.ACTIVE
    consent = sam.consents.get()
    assert consent.source == "Mailchimp: Probation news"
    assert consent.created_at == datetime(2024, 3, 1, 12, 34, 56, tzinfo=UTC)
    assert consent.confirmed_at == datetime(2024, 3, 1, 12, 40, tzinfo=UTC)
    alex = Subscriber.objects.get(email="alex@example.org")
    assert alex.name == "Alex"
    # Mailchimp writes GMT, British Summer Time or not.
    assert alex.consents.get().created_at == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert "Phone Number" in response.context["report"].ignored_columns
    assert "Columns not read" in response.text
    # Its TIMEZONE is where it guessed the contact is, not a digest time.
    assert "TIMEZONE" in response.context["report"].ignored_columns
    assert not SubscriberTopic.objects.exists()
    assert "keeps what they chose" not in response.text


def test_a_date_whose_offset_the_database_cannot_hold_is_imported_as_its_moment(
    author,
):
    # A moment's own offset went to the database with it, and PostgreSQL holds
    # none beyond 15:59 (Python's go to 23:59): a server error.
    upload(author, HEADER + "a@example.org,,Sheet,2026-01-05T10:00:00+23:00\n")

    assert Consent.objects.get().created_at == datetime(2026, 1, 4, 11, tzinfo=UTC)


def test_mailchimps_times_are_the_gmt_it_writes_whatever_the_sites_time_zone(
    author, settings
):
    settings.TIME_ZONE = "Europe/London"
    upload_with_source(
        author,
        MAILCHIMP_HEADER
        + mailchimp_row(
            "sam@example.org", "Sam", "", "2024-07-01 12:00:00", "2024-07-01 12:05:00"
        )
        # The night the clocks went forward, before they did.
        + mailchimp_row(
            "kit@example.org", "Kit", "", "2024-03-31 00:30:00", "2024-03-31 01:30:00"
        ),
        "Mailchimp: Probation news",
    )
    # A file of the site's own columns, in London's summer time.
    upload(author, HEADER + "lee@example.org,Lee,Sheet,2024-07-01 12:00:00\n")

    def consent_of(email):
        return Consent.objects.values_list("created_at", "confirmed_at").get(
            subscriber__email=email
        )

    assert consent_of("sam@example.org") == (
        datetime(2024, 7, 1, 12, 0, tzinfo=UTC),
        datetime(2024, 7, 1, 12, 5, tzinfo=UTC),
    )
    assert consent_of("kit@example.org") == (
        datetime(2024, 3, 31, 0, 30, tzinfo=UTC),
        datetime(2024, 3, 31, 1, 30, tzinfo=UTC),
    )
    assert consent_of("lee@example.org")[0] == datetime(2024, 7, 1, 11, tzinfo=UTC)


def test_mailchimps_export_of_those_who_left_it_brings_none_of_them_in(author):
    header = MAILCHIMP_HEADER.replace(
        '"TAGS"\n', '"TAGS","UNSUB_TIME","UNSUB_CAMPAIGN_TITLE"\n'
    )
    response = upload_with_source(
        author,
        header
        + mailchimp_row(
            "left@example.org",
            "Lee",
            "",
            "2024-03-01 12:34:56",
            "2024-03-01 12:40:00",
            extra=['"2024-06-01 10:00:00"', '"June issue"'],
        ),
        "Mailchimp: Probation news",
    )

    assert response.context["report"].skipped == [
        (2, "the file says they left that list")
    ]
    assert not Subscriber.objects.exists()


@pytest.mark.parametrize(
    "header",
    [
        "E-mail,Name,Consent Source,Consent Date",
        "Email address,First Name,Last Name,Source,Consent date",
        " EMAIL , name ,CONSENT_SOURCE,consent-date",
        "consent_date,Notes,email,consent_source,name",
    ],
)
def test_the_columns_are_found_by_their_common_names_in_any_order(author, header):
    names = [name.strip().lower() for name in header.split(",")]
    values = {
        "e-mail": "sam@example.org",
        "email address": "sam@example.org",
        "email": "sam@example.org",
        "name": "Sam Jones",
        "first name": "Sam",
        "last name": "Jones",
        "consent source": "Sheet",
        "source": "Sheet",
        "consent_source": "Sheet",
        "consent date": "2026-10-01",
        "consent-date": "2026-10-01",
        "consent_date": "2026-10-01",
        "notes": "met at the conference",
    }
    row = ",".join(values[name] for name in names)

    response = upload(author, f"{header}\n{row}\n")

    assert response.status_code == 200
    sam = Subscriber.objects.get()
    assert (sam.email, sam.name) == ("sam@example.org", "Sam Jones")
    assert sam.consents.get().source == "Sheet"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "Name,Phone Number,consent_source,consent_date",
            "The first line must be the header, naming email,",
        ),
        ("Email,E-mail,consent_source,consent_date", "Two columns are the email"),
        ("email,name,consent_source", "No column is the consent date"),
        ("Email Address,OPTIN_TIME", "No column is the consent source"),
    ],
)
def test_a_header_the_import_cannot_use_is_refused_saying_why(author, header, message):
    response = upload(author, f"{header}\nsam@example.org,x,y,2026-10-01\n")

    assert response.status_code == 400
    assert message in response.text
    assert not Subscriber.objects.exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_an_import_clicked_twice_at_once_says_the_second_found_them_imported():
    """A double click on "Check and import": the second request met the first's
    new readers as it inserted them, and told the author nothing was imported
    and to upload the file again, though the whole list was in."""
    author = UserFactory()
    existing = SubscriberFactory(email="b@example.org", status="pending")
    first = imports.read_csv((HEADER + GOOD).encode())

    def second_click():
        client = Client()
        client.force_login(author)
        return upload(client, HEADER + GOOD)

    _, again = as_it_commits(lambda: imports.import_rows(report=first), second_click)

    assert again.status_code == 200
    report = again.context["report"]
    assert (report.imported, report.created, report.updated) == (True, 0, 0)
    assert report.unchanged == 2
    assert "upload the file again" not in again.content.decode()
    assert Subscriber.objects.get(pk=existing.pk).status == Subscriber.Status.ACTIVE
    assert Consent.objects.count() == 2
