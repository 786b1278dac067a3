"""The core's config file: TOML, one flat table of the keys in `SETTINGS`.

TOML because it is in the standard library (`tomllib`), types its values
(integers, floats and strings arrive as such, so a quoted number is an error
rather than a guess) and allows comments, which an installation's settings
need. An unknown key is refused with the known ones listed, so a typo never
leaves a setting silently at its default (K1). The file decides how the core
starts, so one that others may write is refused; one that others may read is
refused when it holds a URL with a password.
"""

from __future__ import annotations

import os
import pathlib
import stat
import tomllib
from collections.abc import Mapping
from urllib.parse import urlsplit

from vivified.core.settings import BY_KEY, SETTINGS, SettingsError

MAX_FILE_BYTES = 64 * 1024


def config_file_path(args: object, environ: Mapping[str, str]) -> pathlib.Path | None:
    """`--config` wins over `VIVIFIED_CONFIG_FILE`; no file when neither is set."""
    value = getattr(args, "config", None) or environ.get("VIVIFIED_CONFIG_FILE")
    return pathlib.Path(value) if value else None


def has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return True  # unparseable: assume the worst, it is masked and guarded


def load_config_file(path: pathlib.Path) -> dict[str, object]:
    """The file's key/value pairs, after the permission, size, syntax and key checks."""
    try:
        info = path.stat()
    except OSError as exc:
        raise SettingsError(f"config file {path} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise SettingsError(f"config file {path} is not a regular file")
    if info.st_uid not in (os.geteuid(), 0):
        raise SettingsError(f"config file {path} is owned by uid {info.st_uid}, not by this user or root; refusing it")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SettingsError(
            f"config file {path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            "anyone who can write it controls the core: chmod go-w it"
        )
    if info.st_size > MAX_FILE_BYTES:
        raise SettingsError(f"config file {path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(k for k in values if k not in BY_KEY or not BY_KEY[k].in_file)
    if unknown:
        raise SettingsError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; "
            f"known keys: {', '.join(s.key for s in SETTINGS if s.in_file)}"
        )
    readable = bool(info.st_mode & (stat.S_IRGRP | stat.S_IROTH))
    for key, value in values.items():
        if readable and BY_KEY[key].kind == "url" and isinstance(value, str) and has_password(value):
            raise SettingsError(
                f"config file {path}: {key} holds a password but the file is readable by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 it"
            )
    return values
