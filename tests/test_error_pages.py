"""What a reader sees when a page cannot answer as asked: the site's own pages,
in its look, with an honest status and nothing of the reader's in them."""

import pytest
from django.core.exceptions import PermissionDenied
from django.db import OperationalError, connection
from django.http import Http404
from django.test import Client, RequestFactory
from django.views import defaults

from .factories import PublishedPostFactory

pytestmark = pytest.mark.django_db

# Each of the site's pages carries its header: the site's look, not Django's own.
SITE_HEADER = '<a class="brand" href="/">On Probation</a>'


@pytest.fixture
def post():
    return PublishedPostFactory(slug="derby")


def test_a_refused_request_gets_the_sites_403_page():
    request = RequestFactory().get("/preferences/a-readers-token/")
    response = defaults.permission_denied(request, PermissionDenied("a-secret"))

    assert response.status_code == 403
    assert SITE_HEADER in response.text
    assert "a-readers-token" not in response.text
    assert "a-secret" not in response.text


@pytest.mark.parametrize(
    "error_page",
    [
        lambda request: defaults.bad_request(request, Exception("a-secret")),
        lambda request: defaults.permission_denied(request, PermissionDenied()),
        lambda request: defaults.page_not_found(request, Http404("a-secret")),
        defaults.server_error,
    ],
    ids=["400", "403", "404", "500"],
)
def test_no_error_page_asks_the_database_or_repeats_the_address(
    error_page, django_assert_num_queries
):
    request = RequestFactory().get("/unsubscribe/a-readers-token/")
    with django_assert_num_queries(0):
        html = error_page(request).content.decode()
    assert "a-readers-token" not in html
    assert "a-secret" not in html


def test_the_500_page_is_shown_with_the_database_down(post):
    def database_down(execute, sql, params, many, context):
        raise OperationalError("the database went away")

    client = Client(raise_request_exception=False)
    with connection.execute_wrapper(database_down):
        response = client.get("/posts/derby/")

    assert response.status_code == 500
    assert "Something went wrong" in response.text
