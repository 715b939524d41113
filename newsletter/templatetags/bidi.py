"""{{ name|isolated }}: a reader's name set apart from the text around it, for
emails. A name written right to left (Arabic, Hebrew) otherwise pulls what
follows it into its direction ("محمد · 7 December" shows as "7 · محمد December").
The site's pages use <bdi>, which mail apps support patchily, and a text part has
no markup: Unicode's first-strong isolate (FSI … PDI) works in both. Names hold
no isolates of their own (posts.validators refuses them), so none closes this
one early."""

from django import template
from django.template.defaultfilters import stringfilter

register = template.Library()

FIRST_STRONG_ISOLATE = "\u2068"
POP_DIRECTIONAL_ISOLATE = "\u2069"


@register.filter(is_safe=True)
@stringfilter
def isolated(name: str) -> str:
    if not name:
        return name
    return f"{FIRST_STRONG_ISOLATE}{name}{POP_DIRECTIONAL_ISOLATE}"
