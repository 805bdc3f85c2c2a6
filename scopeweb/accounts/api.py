"""Who the caller is, for API clients."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scopeweb.accounts.access import SIGNED_IN
from scopeweb.accounts.services import user_roles


class MeApi(APIView):
    """Who the caller is and which roles they hold."""

    access_rule = SIGNED_IN

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(
            {
                "username": request.user.username,
                "roles": [r.value for r in user_roles(request.user)],
            }
        )
