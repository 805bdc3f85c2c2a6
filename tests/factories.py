from __future__ import annotations

from typing import Any, cast

import factory
from django.contrib.auth.models import Group, User

from scopeweb.jobs.models import Job, JobKind, JobState
from scopeweb.retention.models import RetentionProfile
from traces.models import Prompt, PromptSet

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def role(obj: User, create: bool, extracted: str | None, **kwargs: Any) -> None:
        if create and extracted:
            obj.groups.add(Group.objects.get(name=extracted))


class JobFactory(factory.django.DjangoModelFactory[Job]):
    class Meta:
        model = Job

    kind = JobKind.PROMPT_IMPORT
    state = JobState.SUCCEEDED
    title = factory.Sequence(lambda n: f"Import {n}")


class PromptSetFactory(factory.django.DjangoModelFactory[PromptSet]):
    class Meta:
        model = PromptSet
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"prompt set {n}")
    profile = factory.LazyFunction(lambda: RetentionProfile.objects.get(code="US"))
    source_filename = "prompts.jsonl"
    source_format = "jsonl"
    source_sha256 = "0" * 64
    source_bytes = 100
    prompt_count = 2
    token_total = 10
    token_max = 6
    capture_limit = 1000
    over_limit_count = 0
    tokenizer = "gemma-3-270m"
    import_job = factory.SubFactory(JobFactory)

    @factory.post_generation
    def prompts(obj: PromptSet, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            for position, text in enumerate(["hello there", "a second prompt"]):
                Prompt.objects.create(
                    prompt_set=obj,
                    position=position,
                    line=position + 1,
                    text=text,
                    token_count=5,
                )


def make_user(username: str, role: str | None = None) -> User:
    return cast(User, UserFactory(username=username, role=role))


def make_prompt_set(**fields: Any) -> PromptSet:
    return cast(PromptSet, PromptSetFactory(**fields))
