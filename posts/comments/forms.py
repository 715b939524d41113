import re
from urllib.parse import quote, urlsplit, urlunsplit

from django import forms
from django.conf import settings
from django.template.defaultfilters import pluralize

from posts.forms import ReaderForm
from posts.validators import (
    ROW_IDS,
    clean_email,
    reject_control_characters,
    reject_invisible,
)

from .models import (
    BODY_MAX_LENGTH,
    EMAIL_MAX_LENGTH,
    NAME_MAX_LENGTH,
    WEBSITE_MAX_LENGTH,
    count_links,
)


class TextareaField(forms.CharField):
    """A textarea's text, its line breaks as LF. Browsers send them as CR LF but
    count them as one character against the box's maxlength: counted as two, a
    comment the box allowed was refused as too long."""

    def to_python(self, value) -> str:
        return super().to_python(value).replace("\r\n", "\n").replace("\r", "\n")


# What an address holds as it is besides letters, digits and -._~ (RFC 3986's
# delimiters, and the escapes already made); the rest is percent-encoded as UTF-8.
# [ and ] only enclose an IPv6 host, which is left as typed.
_AS_IT_IS = "!$&'()*+,;=:@/?%"
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def percent_encoded_url(url: str) -> str:
    """The address as a browser sends it: < > " { | ^ ` and the like, kept as typed
    in a link's href, make the page invalid HTML (and some browsers refuse it)."""
    scheme, netloc, path, query, fragment = urlsplit(_STRAY_PERCENT.sub("%25", url))
    userinfo, at, host = netloc.rpartition("@")
    return urlunsplit(
        (
            scheme,
            quote(userinfo, safe=_AS_IT_IS) + at + host,
            *(quote(part, safe=_AS_IT_IS) for part in (path, query, fragment)),
        )
    )


class WebsiteField(forms.URLField):
    """A commenter's website, from the reader's form and the desk's alike: a web
    page, taken as https without a scheme, stored percent-encoded."""

    def __init__(self, **kwargs) -> None:
        super().__init__(assume_scheme="https", **kwargs)

    def to_python(self, value) -> str:
        # Encoded before the length is checked: the encoded form is what is stored.
        website = super().to_python(value)
        reject_control_characters(website)
        # URLField accepts ftp:// too; a commenter's website is a web page.
        if website and not website.lower().startswith(("http://", "https://")):
            raise forms.ValidationError("Please give a web address (http or https).")
        try:
            return percent_encoded_url(website)
        except ValueError:  # no address to read ("https://[", an IPv6 host unclosed)
            raise forms.ValidationError(
                self.error_messages["invalid"], code="invalid"
            ) from None


class CommentNameField(forms.CharField):
    """A commenter's name, from the reader's form and the desk's alike: it shows
    as the comment's byline, on the post page and in the moderators' digest."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=NAME_MAX_LENGTH, **kwargs)

    def clean(self, value) -> str:
        name = super().clean(value)
        reject_control_characters(name)
        reject_invisible(name)
        return name


class CommentBodyField(TextareaField):
    """A comment's text, from the reader's form and the desk's alike: a
    moderator's edit is published as the reader's text is, and held to its rules."""

    def __init__(self, **kwargs) -> None:
        super().__init__(label="Comment", max_length=BODY_MAX_LENGTH, **kwargs)

    def clean(self, value) -> str:
        body = super().clean(value)
        reject_control_characters(body, allowed="\n\t")
        reject_invisible(body)
        max_links = settings.COMMENTS_MAX_LINKS
        if count_links(body) > max_links:
            raise forms.ValidationError(
                "Please include no links."
                if max_links == 0
                else "Please include at most %(max)d link%(s)s.",
                code="too_many_links",
                params={"max": max_links, "s": pluralize(max_links)},
            )
        return body


class CommentForm(ReaderForm):
    name = CommentNameField(widget=forms.TextInput(attrs={"autocomplete": "name"}))
    # Checked by clean_email, as every form that takes an address: Django's
    # EmailField would let through what no provider delivers to.
    email = forms.CharField(
        label="Email (never shown)",
        max_length=EMAIL_MAX_LENGTH,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    website = WebsiteField(
        label="Website (optional)",
        max_length=WEBSITE_MAX_LENGTH,
        required=False,
        widget=forms.URLInput(attrs={"autocomplete": "url"}),
    )
    body = CommentBodyField(
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="Plain text. Links become clickable; "
        "comments are published once the author has approved them.",
    )
    parent = forms.IntegerField(
        required=False,
        min_value=ROW_IDS.start,
        max_value=ROW_IDS.stop - 1,
        widget=forms.HiddenInput,
    )
    # The honeypot: hidden from people (and screen readers), filled in by bots.
    homepage = forms.CharField(
        label="Leave this empty",
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}),
    )

    def clean_email(self) -> str:
        return clean_email(self.cleaned_data["email"])

    @property
    def is_from_a_bot(self) -> bool:
        return bool(self.cleaned_data.get("homepage"))
