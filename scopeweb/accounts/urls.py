"""Account routes: sign-in, passwords, personal API tokens, user management, and who am I."""

from django.urls import URLPattern, path

from scopeweb.accounts import api, views

urlpatterns: list[URLPattern] = [
    path("account/login/", views.login, name="login"),
    path("account/logout/", views.logout, name="logout"),
    path("account/password/", views.password_change, name="password_change"),
    path("account/password/done/", views.password_change_done, name="password_change_done"),
    path("account/tokens/", views.token_list, name="token_list"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("manage/users/", views.user_list, name="user_list"),
    path("manage/users/new/", views.user_create, name="user_create"),
    path("manage/users/<int:user_id>/", views.user_edit, name="user_edit"),
    path("manage/users/<int:user_id>/unlock/", views.user_unlock, name="user_unlock"),
    path("api/me/", api.MeApi.as_view(), name="api_me"),
]
