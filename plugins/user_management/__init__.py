"""User management: the organisation's people directory beside core identity.

One profile per core user (display name, department, manager, start date)
and where the person is in onboarding (invited → welcomed → active, or
failed with a reason), kept in a SQLite file in the plugin's own data dir.
It serves `vivified.directory.v1.DirectoryService` to the plugins whose
manifests declare the calls, and learns about people from the core's
`UserCreated`/`UserUpdated` events and about welcome mails from
`EmailSent`/`EmailFailed`. Run it with `python -m vivified.plugins.user_management`.
"""

from vivified.plugins.user_management._events import DirectoryEvents, UnknownUser
from vivified.plugins.user_management._plugin import UserManagementPlugin, serve_until_stopped
from vivified.plugins.user_management._service import DirectoryServicer, profile_message
from vivified.plugins.user_management._store import ProfileRecord, ProfileStore

__all__ = [
    "DirectoryEvents",
    "DirectoryServicer",
    "ProfileRecord",
    "ProfileStore",
    "UnknownUser",
    "UserManagementPlugin",
    "profile_message",
    "serve_until_stopped",
]
