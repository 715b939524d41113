"""{{ subscriber.email|readable_email }}: an address as its reader writes it, on
every page and in every email's text that shows it to them (the domain in
Unicode, not the ASCII form it is stored and sent to: see
posts.validators.readable_email). Never in a header.

{{ replies_address|mailto }}: the address a page asks readers to write to, as a
link their mail program opens addressed (shown as they write it); the pages'
messages made in Python call mailto() too."""

from django import template
from django.template.defaultfilters import stringfilter
from django.utils.html import format_html
from django.utils.safestring import SafeString

from posts.validators import readable_email

register = template.Library()
register.filter("readable_email", stringfilter(readable_email))


@register.filter
@stringfilter
def mailto(address: str) -> SafeString:
    return format_html('<a href="mailto:{}">{}</a>', address, readable_email(address))
