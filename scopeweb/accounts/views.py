from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from scopeweb.accounts import services
from scopeweb.accounts.access import PUBLIC, SIGNED_IN, access
from scopeweb.accounts.actor import Actor
from scopeweb.accounts.forms import ApiTokenForm, UserCreateForm, UserEditForm
from scopeweb.accounts.models import ApiToken
from scopeweb.accounts.roles import Role

login = access(PUBLIC)(auth_views.LoginView.as_view(redirect_authenticated_user=True))
logout = access(PUBLIC)(auth_views.LogoutView.as_view())
password_change = access(SIGNED_IN)(
    auth_views.PasswordChangeView.as_view(success_url="/account/password/done/")
)
password_change_done = access(SIGNED_IN)(auth_views.PasswordChangeDoneView.as_view())


@access("manage_users")
def user_list(request: HttpRequest) -> HttpResponse:
    users = User.objects.prefetch_related("groups").order_by("username")
    rows = [(user, services.user_roles(user)) for user in users]
    return render(request, "accounts/user_list.html", {"rows": rows})


@access("manage_users")
@never_cache  # a generated password is shown in this answer, once
def user_create(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user, password = services.user_create(
            username=form.cleaned_data["username"],
            email=form.cleaned_data["email"],
            role=Role(form.cleaned_data["role"]),
            password=form.cleaned_data["password"] or None,
            actor=Actor.of(request),
        )
        return render(
            request, "accounts/user_created.html", {"new_user": user, "password": password}
        )
    return render(request, "accounts/user_form.html", {"form": form, "title": "New user"})


@access("manage_users")
def user_edit(request: HttpRequest, user_id: int) -> HttpResponse:
    target = get_object_or_404(User, pk=user_id)
    roles = services.user_roles(target)
    initial = {
        "email": target.email,
        "role": roles[0].value if roles else Role.REVIEWER.value,
        "is_active": target.is_active,
    }
    form = UserEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        if target == request.user and (
            form.cleaned_data["role"] != Role.ADMIN.value or not form.cleaned_data["is_active"]
        ):
            form.add_error(None, "You cannot remove your own admin role or deactivate yourself.")
        else:
            services.user_update(
                user=target,
                role=Role(form.cleaned_data["role"]),
                is_active=form.cleaned_data["is_active"],
                email=form.cleaned_data["email"],
                actor=Actor.of(request),
            )
            messages.success(request, f"Saved {target.username}.")
            return redirect("user_list")
    return render(
        request,
        "accounts/user_form.html",
        {"form": form, "title": f"Edit {target.username}", "target": target},
    )


@access(SIGNED_IN)
@never_cache  # a new key is shown in this answer, once
def token_list(request: HttpRequest) -> HttpResponse:
    actor = Actor.of(request)
    form = ApiTokenForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        _, new_key = services.api_token_create(actor=actor, name=form.cleaned_data["name"])
        form = ApiTokenForm()
    tokens = ApiToken.objects.filter(user=actor.person)
    return render(
        request, "accounts/token_list.html", {"form": form, "tokens": tokens, "new_key": new_key}
    )


@access(SIGNED_IN)
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    actor = Actor.of(request)
    token = get_object_or_404(ApiToken, pk=token_id, user=actor.person)
    services.api_token_revoke(token=token, actor=actor)
    messages.success(request, f"Revoked token {token.name}.")
    return redirect("token_list")
