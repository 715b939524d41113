"""The publication's content: demo data, listings, the post page and its facts."""

import pytest
from django.core.management import call_command

from posts.models import Inspection, Organisation, Post, RelatedLink, StandardRating

pytestmark = pytest.mark.django_db


def test_seed_demo_loads_every_fact_and_is_idempotent():
    call_command("seed_demo", stdout=None)
    call_command("seed_demo", stdout=None)
    assert Post.objects.published().count() == 12
    assert Inspection.objects.count() == 12
    assert StandardRating.objects.count() == 92
    assert RelatedLink.objects.count() == 24
    suffolk = Inspection.objects.get(area__slug="suffolk")
    assert suffolk.overall == "narrative"
    assert set(suffolk.organisations.values_list("slug", flat=True)) == {
        "norfolk-and-suffolk-crc",
        "nps-south-east-and-eastern",
    }
    crc = Organisation.objects.get(slug="norfolk-and-suffolk-crc")
    assert set(crc.owners.values_list("slug", flat=True)) == {
        "sodexo-justice-services",
        "nacro",
    }
    assert "Sodexo Justice Services" in suffolk.post.search_facts
