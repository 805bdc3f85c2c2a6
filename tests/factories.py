from __future__ import annotations

from collections.abc import Callable
from typing import Any

import factory
from django.contrib.auth.models import Group, User
from factory import base, declarations, helpers

from scopeweb.jobs.models import Job, JobKind, JobState
from scopeweb.retention.models import RetentionProfile
from traces.models import AnalysisRun, Prompt, PromptSet, SaeRecord, Trace, TraceFeature

PASSWORD = "correct horse battery staple"

# factory_boy ships py.typed but leaves its declarations unannotated (and re-exports them from
# ``factory`` implicitly): typed names for the ones used here.
Sequence: Callable[[Callable[[int], object]], declarations.Sequence] = declarations.Sequence
LazyAttribute: Callable[[Callable[[Any], object]], declarations.LazyAttribute] = (
    declarations.LazyAttribute
)
LazyFunction: Callable[[Callable[[], object]], declarations.LazyFunction] = (
    declarations.LazyFunction
)
SubFactory: Callable[[type[base.BaseFactory[Any]]], declarations.SubFactory] = (
    declarations.SubFactory
)
Password: Callable[[str], factory.django.Password] = factory.django.Password
post_generation: Callable[[Callable[..., None]], declarations.PostGeneration] = (
    helpers.post_generation
)


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = Sequence(lambda n: f"user{n}")
    email = LazyAttribute(lambda u: f"{u.username}@example.org")
    password = Password(PASSWORD)

    @post_generation
    def role(obj: User, create: bool, extracted: str | None, **kwargs: Any) -> None:
        if create and extracted:
            obj.groups.add(Group.objects.get(name=extracted))


class JobFactory(factory.django.DjangoModelFactory[Job]):
    class Meta:
        model = Job

    kind = JobKind.PROMPT_IMPORT
    state = JobState.SUCCEEDED
    title = Sequence(lambda n: f"Import {n}")


class PromptSetFactory(factory.django.DjangoModelFactory[PromptSet]):
    class Meta:
        model = PromptSet
        skip_postgeneration_save = True

    name = Sequence(lambda n: f"prompt set {n}")
    profile = LazyFunction(lambda: RetentionProfile.objects.get(code="US"))
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
    import_job = SubFactory(JobFactory)

    @post_generation
    def prompts(obj: PromptSet, create: bool, extracted: list[str] | None, **kwargs: Any) -> None:
        """Two prompts, or one per text of ``prompts=[...]``."""
        if create:
            for position, text in enumerate(extracted or ["hello there", "a second prompt"]):
                Prompt.objects.create(
                    prompt_set=obj,
                    position=position,
                    line=position + 1,
                    text=text,
                    token_count=5,
                )


def make_user(username: str, role: str | None = None) -> User:
    return UserFactory.create(username=username, role=role)


def make_prompt_set(**fields: Any) -> PromptSet:
    return PromptSetFactory.create(**fields)


class SaeRecordFactory(factory.django.DjangoModelFactory[SaeRecord]):
    class Meta:
        model = SaeRecord

    name = Sequence(lambda n: f"sae-{n}")
    reference = "/nowhere"
    model_name = "gemma-3-270m"
    site = "resid_post"
    layer = 12
    width = 4096
    hook_point = "model.layers.12.output"
    params_sha256 = Sequence(lambda n: f"{n:064x}")


def make_sae(**fields: Any) -> SaeRecord:
    return SaeRecordFactory.create(**fields)


def make_run(*, sae: SaeRecord, prompt_set: PromptSet | None = None, **fields: Any) -> AnalysisRun:
    """A finished run row (no engine involved)."""
    prompt_set = prompt_set or make_prompt_set()
    job = JobFactory.create(kind=JobKind.ANALYSIS, state=JobState.SUCCEEDED)
    return AnalysisRun.objects.create(
        prompt_set=prompt_set, sae=sae, profile=prompt_set.profile, job=job, **fields
    )


def make_trace(
    run: AnalysisRun,
    position: int = 0,
    features: dict[int, tuple[float, int, int]] | None = None,
    **fields: Any,
) -> Trace:
    """A trace of the run's prompt at ``position`` with index rows {feature: (peak, count,
    first position)}."""
    values: dict[str, Any] = {
        "chunk": 0, "row": 0, "tokens": 6, "prompt_tokens": 6,
        "l0": 10.0, "fvu": 0.2, "resid_norm": 100.0, "arrays_sha256": "0" * 64,
    }  # fmt: skip
    trace = Trace.objects.create(
        run=run, prompt=run.prompt_set.prompts.get(position=position), **(values | fields)
    )
    TraceFeature.objects.bulk_create(
        TraceFeature(trace=trace, feature=f, max_activation=m, count=c, first_position=p)
        for f, (m, c, p) in (features or {}).items()
    )
    return trace
