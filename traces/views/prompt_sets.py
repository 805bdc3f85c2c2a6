from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from scopeweb.feedback import show_problems
from traces.forms.prompt_sets import PromptSetOriginalForm, PromptSetUploadForm
from traces.forms.runs import RunStartForm
from traces.prompt_files import PromptFileError
from traces.selectors.prompt_sets import prompt_imports_recent, prompt_set_list
from traces.selectors.runs import run_list
from traces.selectors.saes import sae_list
from traces.services.originals import (
    OriginalRefused,
    prompt_set_flag_summary,
    prompt_set_original_supply,
    prompt_set_redaction_summary,
)
from traces.services.prompt_sets import prompt_set_upload

PROMPTS_PER_PAGE = 100


@access("view_prompt_set")
def prompt_set_list_view(request: HttpRequest) -> HttpResponse:
    page = Paginator(prompt_set_list(), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "traces/prompt_set_list.html",
        {"page": page, "imports": prompt_imports_recent()},
    )


@access("upload_prompt_set")
def prompt_set_upload_view(request: HttpRequest) -> HttpResponse:
    form = PromptSetUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            job = prompt_set_upload(
                actor=Actor.of(request),
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                profile=form.cleaned_data["profile"],
                file=upload,
                filename=upload.name,
                size=upload.size,
                file_format=form.cleaned_data["file_format"],
            )
        except PromptFileError as exc:
            for problem in exc.problems:
                form.add_error("file", str(problem))
        else:
            return redirect("job_detail", job_id=job.pk)
    return render(request, "traces/prompt_set_upload.html", {"form": form})


@access("view_prompt_set")
def prompt_set_detail(request: HttpRequest, prompt_set_id: int) -> HttpResponse:
    prompt_set = get_object_or_404(prompt_set_list(), pk=prompt_set_id)
    prompts = prompt_set.prompts.all()
    if request.GET.get("over_limit") == "1":
        prompts = prompts.filter(over_capture_limit=True)
    page = Paginator(prompts, PROMPTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "traces/prompt_set_detail.html",
        {
            "prompt_set": prompt_set,
            "page": page,
            "run_form": RunStartForm(initial={"sae": list(sae_list()[:1])}),
            "runs": run_list().filter(prompt_set=prompt_set)[:20],
            "redaction": prompt_set_redaction_summary(prompt_set),
            "flagged": prompt_set_flag_summary(prompt_set),
            "original_form": PromptSetOriginalForm(),
        },
    )


@access("upload_prompt_set")
@require_POST
def prompt_set_original_view(request: HttpRequest, prompt_set_id: int) -> HttpResponse:
    """Supply a redacted prompt set's original file again (after the purge removed it)."""
    prompt_set = get_object_or_404(prompt_set_list(), pk=prompt_set_id)
    form = PromptSetOriginalForm(request.POST, request.FILES)
    if not form.is_valid():
        show_problems(request, form.errors)
        return redirect("prompt_set_detail", prompt_set_id=prompt_set.pk)
    upload = form.cleaned_data["file"]
    try:
        count = prompt_set_original_supply(
            prompt_set,
            file=upload,
            filename=upload.name,
            size=upload.size,
            actor=Actor.of(request),
        )
    except OriginalRefused as exc:
        messages.error(request, f"The original was refused: {exc}")
    else:
        messages.success(
            request, f"The original file matches all {count} prompts; runs can read it again."
        )
    return redirect("prompt_set_detail", prompt_set_id=prompt_set.pk)
