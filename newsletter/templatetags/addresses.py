"""{{ subscriber.email|readable_email }}: an address as its reader writes it, on
every page and in every email's text that shows it to them (the domain in
Unicode, not the ASCII form it is stored and sent to: see
posts.validators.readable_email). Never in a header."""

from django import template
from django.template.defaultfilters import stringfilter

from posts.validators import readable_email

register = template.Library()
register.filter("readable_email", stringfilter(readable_email))
