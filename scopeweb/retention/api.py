from __future__ import annotations

from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from scopeweb.accounts.actor import Actor
from scopeweb.retention.models import RetentionProfile
from scopeweb.retention.serializers import (
    RetentionProfileDetailSerializer,
    RetentionProfileSerializer,
)
from scopeweb.retention.services import retention_profile_update


class RetentionProfileListApi(generics.ListAPIView[RetentionProfile]):
    """The retention profiles (every signed-in user may read them, e.g. to pick one)."""

    access_rule = "signed_in"
    serializer_class = RetentionProfileSerializer
    queryset = RetentionProfile.objects.all()
    pagination_class = None


class RetentionProfileDetailApi(generics.RetrieveUpdateAPIView[RetentionProfile]):
    """Read or edit one profile (admins only); every change is kept with before and after."""

    access_rule = "manage_retention"
    serializer_class = RetentionProfileDetailSerializer
    queryset = RetentionProfile.objects.prefetch_related("changes__changed_by")
    lookup_field = "code"
    http_method_names = ["get", "patch", "head", "options"]

    def patch(self, request: Request, *args: object, **kwargs: object) -> Response:
        profile = self.get_object()
        data = RetentionProfileSerializer(profile, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        retention_profile_update(
            profile=profile,
            actor=Actor.of(request),
            values=dict(data.validated_data),
        )
        return Response(RetentionProfileDetailSerializer(self.get_object()).data)
