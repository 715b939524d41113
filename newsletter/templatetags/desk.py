"""{% desk as desk %}: the desk's figures for the admin's front page
(templates/admin/index.html), computed for the user looking at it."""

from django import template

from ..desk import Desk, desk_for

register = template.Library()


@register.simple_tag(takes_context=True)
def desk(context) -> Desk:
    return desk_for(context["request"])
