from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from scopeweb.accounts.actor import Actor
from scopeweb.api_bodies import FormParser, MultiPartParser
from scopeweb.jobs.serializers import JobSerializer
from traces.models import Prompt, PromptSet
from traces.selectors.prompt_sets import prompt_set_list
from traces.serializers.prompt_sets import (
    PromptSerializer,
    PromptSetSerializer,
    PromptSetUploadSerializer,
)
from traces.services.prompt_sets import prompt_set_upload


class PromptSetListApi(generics.ListAPIView[PromptSet]):
    """Prompt sets (GET), or upload a file to import as a new one (POST, multipart)."""

    access_rule = "upload_prompt_set"
    serializer_class = PromptSetSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[PromptSet]:
        return prompt_set_list()

    @extend_schema(
        request={"multipart/form-data": PromptSetUploadSerializer},
        responses={202: JobSerializer},
        description="Queues the import and answers at once with its job; poll "
        "`/api/jobs/{id}/`. A refused file makes the job fail with every problem by line.",
    )
    def post(self, request: Request) -> Response:
        data = PromptSetUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        job = prompt_set_upload(
            actor=Actor.of(request),
            name=data.validated_data["name"],
            description=data.validated_data["description"],
            profile=data.validated_data["profile"],
            file=upload,
            filename=upload.name,
            size=upload.size,
            file_format=data.validated_data["format"],
        )
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class PromptSetDetailApi(generics.RetrieveAPIView[PromptSet]):
    access_rule = "view_prompt_set"
    serializer_class = PromptSetSerializer

    def get_queryset(self) -> QuerySet[PromptSet]:
        return prompt_set_list()


class PromptListApi(generics.ListAPIView[Prompt]):
    """A prompt set's prompts in file order, with token counts."""

    access_rule = "view_prompt_set"
    serializer_class = PromptSerializer

    def get_queryset(self) -> QuerySet[Prompt]:
        prompt_set = get_object_or_404(prompt_set_list(), pk=self.kwargs["pk"])
        return Prompt.objects.filter(prompt_set=prompt_set).order_by("position")
