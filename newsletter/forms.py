from django import forms

from .subscriptions import CONSENT_WORDING


class SubscribeForm(forms.Form):
    email = forms.EmailField(
        label="Email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    name = forms.CharField(
        label="Name (optional)",
        max_length=100,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    consent_wording = CONSENT_WORDING

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        # The name may end up in an email; control characters never may.
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
            raise forms.ValidationError("Please use letters and spaces only.")
        return name


class ChangeEmailForm(forms.Form):
    new_email = forms.EmailField(
        label="New email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
