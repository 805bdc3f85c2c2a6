from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.validators import MaxValueValidator

from scopeweb.accounts.roles import Role
from scopeweb.accounts.scopes import PERSONAL_SCOPES, READ, SCOPE_LABELS

ROLE_CHOICES = [(role.value, role.value.title()) for role in Role]


class UserCreateForm(forms.Form):
    username = forms.RegexField(
        regex=r"^[\w.@+-]{1,150}$",
        max_length=150,
        error_messages={"invalid": "Use letters, digits and @ . + - _ only (150 at most)."},
    )
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES)
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput,
        help_text="Leave blank to generate one; it is shown once.",
    )

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"]
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(f"A user named {username!r} already exists.")
        return username

    def clean(self) -> dict[str, Any]:
        """A password an admin sets passes the same validators as one a user chooses."""
        cleaned: dict[str, Any] = super().clean() or {}
        password = cleaned.get("password")
        if password:
            candidate = User(username=cleaned.get("username", ""), email=cleaned.get("email", ""))
            try:
                validate_password(password, candidate)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class UserEditForm(forms.Form):
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES)
    is_active = forms.BooleanField(required=False, label="Active (may sign in)")


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'CI gate'.")
    scopes = forms.MultipleChoiceField(
        choices=[(scope, SCOPE_LABELS[scope]) for scope in PERSONAL_SCOPES],
        initial=[READ],
        widget=forms.CheckboxSelectMultiple,
        help_text="What it may do, within what your role may do.",
    )
    days = forms.IntegerField(
        label="Expires after (days)",
        min_value=1,
        help_text="It stops working then; make a new one to go on.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        days = self.fields["days"]
        assert isinstance(days, forms.IntegerField)
        days.initial = settings.API_TOKEN_DAYS
        days.max_value = settings.API_TOKEN_MAX_DAYS
        days.validators.append(MaxValueValidator(settings.API_TOKEN_MAX_DAYS))
        days.widget.attrs["max"] = settings.API_TOKEN_MAX_DAYS
        days.help_text = f"At most {settings.API_TOKEN_MAX_DAYS}. {days.help_text}"
