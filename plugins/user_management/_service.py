"""`DirectoryServicer`: the `vivified.directory.v1.DirectoryService` contract.

The core lets only plugins whose approved manifest lists an operation under
`calls` reach it, and clears the PII fields of the answer for callers
without `handles_pii`; this servicer validates requests and answers from the
store."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, NoReturn

import grpc
from google.protobuf import timestamp_pb2

from vivified.directory.v1 import directory_pb2 as pb
from vivified.directory.v1 import directory_pb2_grpc
from vivified.plugins.user_management._store import (
    ACTIVE,
    EDITABLE,
    FAILED,
    INVITED,
    WELCOMED,
    ProfileRecord,
    ProfileStore,
)
from vivified.sdk import abort

_DOMAIN = "vivified.directory"
_USER_ID = re.compile(r"usr_[0-9a-f]{1,36}")
_STATES = {
    INVITED: pb.ONBOARDING_STATE_INVITED,
    WELCOMED: pb.ONBOARDING_STATE_WELCOMED,
    ACTIVE: pb.ONBOARDING_STATE_ACTIVE,
    FAILED: pb.ONBOARDING_STATE_FAILED,
}
MAX_TEXT = 128
Context = grpc.aio.ServicerContext[Any, Any]


def _time(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(dt.datetime.fromtimestamp(seconds, dt.UTC))
    return stamp


def profile_message(record: ProfileRecord) -> pb.Profile:
    return pb.Profile(
        user_id=record.user_id,
        username=record.username,
        display_name=record.display_name,
        email=record.email,
        department=record.department,
        manager_user_id=record.manager_user_id,
        start_date=record.start_date,
        onboarding_state=_STATES[record.onboarding_state],
        onboarding_reason=record.onboarding_reason,
        create_time=_time(record.created_at),
        update_time=_time(record.updated_at),
    )


async def _invalid(context: Context, message: str) -> NoReturn:
    await abort(context, grpc.StatusCode.INVALID_ARGUMENT, message, reason="INVALID_REQUEST", domain=_DOMAIN)


async def _not_found(context: Context) -> NoReturn:
    await abort(
        context, grpc.StatusCode.NOT_FOUND, "no profile for this user id", reason="PROFILE_NOT_FOUND", domain=_DOMAIN
    )


def _edit_problem(name: str, value: str) -> str | None:
    if name == "start_date":
        if not value:
            return None
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return "profile.start_date must be YYYY-MM-DD"
        return None if len(value) == 10 else "profile.start_date must be YYYY-MM-DD"
    if name == "manager_user_id":
        return None if not value or _USER_ID.fullmatch(value) else "profile.manager_user_id must be a user id (usr_…)"
    if len(value) > MAX_TEXT or not value.isprintable():
        return f"profile.{name} must be at most {MAX_TEXT} printable characters"
    return None


class DirectoryServicer(directory_pb2_grpc.DirectoryServiceServicer):
    """Serves profiles and onboarding state from a `ProfileStore`."""

    def __init__(self, store: ProfileStore) -> None:
        self._store = store

    async def _require(self, user_id: str, context: Context) -> ProfileRecord:
        if not _USER_ID.fullmatch(user_id):
            await _invalid(context, "user_id must be a core user id (usr_…)")
        record = await self._store.get(user_id)
        if record is None:
            await _not_found(context)
        return record

    async def GetProfile(self, request: pb.GetProfileRequest, context: Context) -> pb.GetProfileResponse:
        return pb.GetProfileResponse(profile=profile_message(await self._require(request.user_id, context)))

    async def UpdateProfile(self, request: pb.UpdateProfileRequest, context: Context) -> pb.UpdateProfileResponse:
        await self._require(request.user_id, context)
        paths = list(request.update_mask.paths)
        if not paths or len(set(paths)) != len(paths) or not set(paths) <= set(EDITABLE):
            await _invalid(context, f"update_mask must name one or more of {', '.join(EDITABLE)}, each once")
        values = {name: str(getattr(request.profile, name)).strip() for name in paths}
        for name, value in values.items():
            problem = _edit_problem(name, value)
            if problem is not None:
                await _invalid(context, problem)
        record = await self._store.edit(request.user_id, values)
        if record is None:
            await _not_found(context)
        return pb.UpdateProfileResponse(profile=profile_message(record))

    async def ListProfiles(self, request: pb.ListProfilesRequest, context: Context) -> pb.ListProfilesResponse:
        size = request.page_size or 100
        if not 1 <= size <= 500:
            await _invalid(context, "page_size must be 1 to 500")
        records = await self._store.page(request.page_token, size + 1)
        more = len(records) > size
        records = records[:size]
        return pb.ListProfilesResponse(
            profiles=[profile_message(r) for r in records], next_page_token=records[-1].user_id if more else ""
        )

    async def GetOnboardingStatus(
        self, request: pb.GetOnboardingStatusRequest, context: Context
    ) -> pb.GetOnboardingStatusResponse:
        record = await self._require(request.user_id, context)
        return pb.GetOnboardingStatusResponse(
            user_id=record.user_id,
            state=_STATES[record.onboarding_state],
            reason=record.onboarding_reason,
            update_time=_time(record.updated_at),
        )
