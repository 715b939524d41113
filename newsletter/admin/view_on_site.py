"""The change page's "View on site" link (/admin/r/<content type>/<id>/), for
what the user may see.

Django's own answers any member of the desk with the address of any object: a
Contributor learnt the slug of someone else's draft (its title, as typed), or
that a comment awaits moderation, and on which post. Here the object's own admin
decides, as it does for the object's change page.
"""

from django.contrib import admin
from django.contrib.contenttypes import views as contenttype_views
from django.contrib.contenttypes.models import ContentType
from django.http import Http404, HttpRequest, HttpResponse


def view_on_site(
    request: HttpRequest, content_type_id: int, object_id: str
) -> HttpResponse:
    try:
        model = ContentType.objects.get_for_id(content_type_id).model_class()
    except ContentType.DoesNotExist:
        model = None
    model_admin = admin.site._registry.get(model)
    # As the change page: not found, rather than forbidden, for what the user's
    # desk does not hold (get_object asks the admin's get_queryset).
    obj = model_admin.get_object(request, object_id) if model_admin else None
    if obj is None or not model_admin.has_view_permission(request, obj):
        raise Http404("Nothing to view on the site here.")
    return contenttype_views.shortcut(request, content_type_id, object_id)
