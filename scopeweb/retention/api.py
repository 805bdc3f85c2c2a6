from __future__ import annotations

from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from scopeweb.accounts.actor import Actor
from scopeweb.retention.models import EDITABLE_FIELDS, RetentionProfile, RetentionProfileChange
from scopeweb.retention.services import retention_profile_update


class RetentionProfileChangeSerializer(serializers.ModelSerializer):
    changed_by = serializers.CharField(source="changed_by.username", default=None)

    class Meta:
        model = RetentionProfileChange
        fields = ["changed_by", "changed_at", "before", "after"]


class RetentionProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = RetentionProfile
        fields = ["code", *EDITABLE_FIELDS]
        read_only_fields = ["code"]


class RetentionProfileDetailSerializer(RetentionProfileSerializer):
    changes = RetentionProfileChangeSerializer(many=True, read_only=True)

    class Meta(RetentionProfileSerializer.Meta):
        fields = [*RetentionProfileSerializer.Meta.fields, "changes"]


class RetentionProfileListApi(generics.ListAPIView):
    """The retention profiles (every signed-in user may read them, e.g. to pick one)."""

    access_rule = "signed_in"
    serializer_class = RetentionProfileSerializer
    queryset = RetentionProfile.objects.all()
    pagination_class = None


class RetentionProfileDetailApi(generics.RetrieveUpdateAPIView):
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
