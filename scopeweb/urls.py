"""The root routes: each app's own ``urls.py``, the API schema and docs, and ``/healthz``.

This module and ``scopeweb.wsgi`` compose the product, so they alone may import the apps above
the platform (the layer contract in ``pyproject.toml`` names them). Every route declares who
reaches it (see ``scopeweb.accounts.access``).
"""

from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from scopeweb import health
from scopeweb.accounts.access import SIGNED_IN


class SchemaView(SpectacularAPIView):
    access_rule = SIGNED_IN


class DocsView(SpectacularSwaggerSplitView):  # its script from a URL: no inline script (CSP)
    access_rule = SIGNED_IN


urlpatterns: list[URLPattern | URLResolver] = [
    path("healthz", health.healthz, name="healthz"),
    path("api/schema/", SchemaView.as_view(), name="api_schema"),
    path("api/docs/", DocsView.as_view(url_name="api_schema"), name="api_docs"),
    path("", include("scopeweb.accounts.urls")),
    path("", include("scopeweb.audit.urls")),
    path("", include("scopeweb.jobs.urls")),
    # Before retention's profile routes, whose <code> would swallow holds/, expiries/, purge/.
    path("", include("governance.urls")),
    path("", include("scopeweb.retention.urls")),
    path("", include("traces.urls")),
    path("", include("reports.urls")),
    path("", include("gates.urls")),
]
