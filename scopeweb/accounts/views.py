from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from scopeweb.accounts import services
from scopeweb.accounts.access import PUBLIC, SIGNED_IN, access
from scopeweb.accounts.actor import Actor
from scopeweb.accounts.forms import ApiTokenForm, UserCreateForm, UserEditForm
from scopeweb.accounts.lockouts import locked_until
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
    users = list(User.objects.prefetch_related("groups").order_by("username"))
    locked = locked_until(user.username for user in users)
    rows = [(user, services.user_roles(user), locked.get(user.username)) for user in users]
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


def _edit_initial(target: User) -> dict[str, object]:
    roles = services.user_roles(target)
    role = roles[0].value if roles else Role.REVIEWER.value
    return {"email": target.email, "role": role, "is_active": target.is_active}


@access("manage_users")
def user_edit(request: HttpRequest, user_id: int) -> HttpResponse:
    target = get_object_or_404(User, pk=user_id)
    form = UserEditForm(request.POST or None, initial=_edit_initial(target))
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
        {
            "form": form,
            "title": f"Edit {target.username}",
            "target": target,
            "locked_until": locked_until([target.username]).get(target.username),
        },
    )


@access("manage_users")
@require_POST
def user_unlock(request: HttpRequest, user_id: int) -> HttpResponse:
    target = get_object_or_404(User, pk=user_id)
    if services.user_unlock(user=target, actor=Actor.of(request)):
        messages.success(request, f"Unlocked {target.username}: they may sign in again now.")
    else:
        messages.info(request, f"{target.username} had no failed sign-ins to clear.")
    return redirect("user_edit", user_id=target.pk)


@access(SIGNED_IN)
@never_cache  # a new key is shown in this answer, once
def token_list(request: HttpRequest) -> HttpResponse:
    actor = Actor.of(request)
    form = ApiTokenForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        try:
            _, new_key = services.api_token_create(
                actor=actor,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                days=form.cleaned_data["days"],
            )
            form = ApiTokenForm()
        except services.TokenRefused as exc:
            form.add_error(exc.field or None, exc.message)
    tokens = ApiToken.objects.filter(user=actor.person)
    return render(
        request,
        "accounts/token_list.html",
        {"form": form, "tokens": tokens, "new_key": new_key, "now": timezone.now()},
    )


@access(SIGNED_IN)
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    actor = Actor.of(request)
    token = get_object_or_404(ApiToken, pk=token_id, user=actor.person)
    services.api_token_revoke(token=token, actor=actor)
    messages.success(request, f"Revoked token {token.name}.")
    return redirect("token_list")
