"""What every form a visitor sends has in common (the newsletter's and the
comments')."""

from django import forms
from django.forms.utils import ErrorList

from .validators import without_control_characters

# A text area's line breaks and tabs are the reader's text, and HTML allows them.
_TEXT_AREA_KEEPS = "\n\r\t"


class _ShownBackField(forms.BoundField):
    """A field as its page shows it again, refused: without the control
    characters it was refused for, which HTML forbids in a page (U+000B), in its
    value and in a message quoting it ("Select a valid choice. … is not one")."""

    def value(self) -> object:
        value = super().value()
        if not isinstance(value, str):
            return value
        keeps = (
            _TEXT_AREA_KEEPS if isinstance(self.field.widget, forms.Textarea) else ""
        )
        return without_control_characters(value, allowed=keeps)

    @property
    def errors(self) -> ErrorList:
        errors = super().errors
        return self.form.error_class(
            [without_control_characters(message) for message in errors],
            renderer=errors.renderer,
            field_id=errors.field_id,
        )


class ReaderForm(forms.Form):
    """A form a visitor sends: shown back with its errors, it shows every field
    without control characters (_ShownBackField)."""

    bound_field_class = _ShownBackField
