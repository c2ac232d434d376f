"""Keeping secrets out of records: environment variables with secret-looking names, and the
user names and passwords of URLs."""

from __future__ import annotations

import fnmatch
import re

__all__ = ["REDACTED", "SECRET_PATTERNS", "redact_env", "strip_credentials"]

#: Names of environment variables whose values are recorded as ``<redacted>`` (case-insensitive
#: globs). Add more with the ``MITOSIS_REDACT`` environment variable, a comma-separated list.
SECRET_PATTERNS = (
    "*TOKEN*",
    "*SECRET*",
    "*PASS*",
    "*_PWD",
    "*KEY*",
    "*CREDENTIAL*",
    "*AUTH*",
    "*COOKIE*",
    "*PRIVATE*",
)
REDACTED = "<redacted>"
# The user info of a URL: "user@", or "user:password@" where the password may hold "/" and "@"
# (unescaped, as people write them): everything up to the last "@" of the word is removed.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^/@\s:]*:\S*@|[^/@\s:]+@)")


def strip_credentials(text: str) -> str:
    """Remove user names and passwords from URLs: ``https://u:p@host`` -> ``https://host``."""
    return _URL_USERINFO.sub(r"\g<scheme>", text)


def redact_env(env: dict[str, str], extra: str | None = None) -> dict[str, str]:
    """Environment variables with secret-looking names redacted and URL credentials removed."""
    patterns = [
        *SECRET_PATTERNS,
        *(p.strip().upper() for p in (extra or "").split(",") if p.strip()),
    ]
    return {
        name: REDACTED
        if any(fnmatch.fnmatchcase(name.upper(), p) for p in patterns)
        else strip_credentials(value)
        for name, value in sorted(env.items())
    }
