"""The welcome mail of a new person: personalised from their directory
profile (`user-management`'s `DirectoryService.GetProfile`, called through
the core's operator lane), with the activation link built from the
CONFIDENTIAL `UserCreated.activation_token` this plugin is granted to see.

A directory that cannot answer (UNAVAILABLE, or NOT_FOUND because it has not
handled the same `UserCreated` yet) is a temporary failure: the event is
nacked and redelivered. On the last attempt the mail goes out from the
event's own fields, so a person is never left without their activation link
because the directory was down."""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable

from vivified.directory.v1 import directory_pb2
from vivified.events.v1.canonical_pb2 import UserCreated
from vivified.plugins.email_gateway._smtp import Mail

DIRECTORY = "user-management"
Lookup = Callable[[str], Awaitable[directory_pb2.Profile]]
"""user id -> the directory's profile (`runtime.call(DIRECTORY, GetProfileRequest(...))`);
raises the SDK's typed errors."""


def welcome_mail(user: UserCreated, profile: directory_pb2.Profile | None, activation_url: str) -> Mail:
    """The mail for `user`; `profile` None when the directory could not be asked."""
    name = (profile.display_name if profile is not None else "") or user.display_name or user.username
    lines = [f"Hello {name},", "", f"welcome to Vivified. Your account '{user.username}' has been created."]
    if profile is not None and profile.department:
        lines.append(f"You join {profile.department}.")
    if profile is not None and profile.start_date:
        lines.append(f"Your first day is {profile.start_date}.")
    if user.activation_token:
        link = activation_url.replace("{token}", urllib.parse.quote(user.activation_token, safe=""))
        expires = ""
        if user.HasField("activation_expire_time"):
            expires = f" (valid until {user.activation_expire_time.ToDatetime().strftime('%Y-%m-%d %H:%M')} UTC)"
        lines += ["", f"Activate your account and choose a password{expires}:", link]
    lines += ["", "-- Vivified", ""]
    return Mail(
        f"welcome-{user.user_id}", user.email, f"Welcome to Vivified, {name}", "\n".join(lines), user_id=user.user_id
    )
