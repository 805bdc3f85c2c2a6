"""Routes of this area; scopeweb/urls.py includes them. Every route declares who reaches it."""

from django.urls import URLPattern, path  # noqa: F401

urlpatterns: list[URLPattern] = []
