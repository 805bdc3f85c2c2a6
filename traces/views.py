from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from scopeweb.accounts.access import access
from traces import selectors
from traces.forms import PromptSetUploadForm, RunStartForm
from traces.prompt_files import PromptFileError
from traces.services.prompt_sets import prompt_set_upload

PROMPTS_PER_PAGE = 100


@access("view_prompt_set")
def prompt_set_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.prompt_set_list(), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "traces/prompt_set_list.html",
        {"page": page, "imports": selectors.prompt_imports_recent()},
    )


@access("upload_prompt_set")
def prompt_set_upload_view(request: HttpRequest) -> HttpResponse:
    form = PromptSetUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            job = prompt_set_upload(
                user=request.user,  # type: ignore[arg-type]
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                profile=form.cleaned_data["profile"],
                file=upload,
                filename=upload.name,
                size=upload.size,
                file_format=form.cleaned_data["file_format"],
                request=request,
            )
        except PromptFileError as exc:
            for problem in exc.problems:
                form.add_error("file", str(problem))
        else:
            return redirect("job_detail", job_id=job.pk)
    return render(request, "traces/prompt_set_upload.html", {"form": form})


@access("view_prompt_set")
def prompt_set_detail(request: HttpRequest, prompt_set_id: int) -> HttpResponse:
    prompt_set = get_object_or_404(selectors.prompt_set_list(), pk=prompt_set_id)
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
            "run_form": RunStartForm(initial={"sae": selectors.sae_list().first()}),
            "runs": selectors.run_list().filter(prompt_set=prompt_set)[:20],
        },
    )


@access("browse_traces")
def sae_list(request: HttpRequest) -> HttpResponse:
    return render(request, "traces/sae_list.html", {"saes": selectors.sae_list()})
