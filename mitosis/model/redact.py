"""Keeping secrets out of records: environment variables with secret-looking names, and values
that look like credentials whatever their name (user info in URLs, webhook URLs, key pairs of
connection strings, JWTs, private keys, access tokens of well-known shapes).

Redaction errs on the side of hiding: a variable that is not a secret but has a secret-looking
name (``SSH_AUTH_SOCK``, ``XDG_SESSION_ID``) is redacted too. Ordinary variables (``PATH``,
``PYTHONPATH``, ``HOME``, ``LANG``, a URL without credentials) are recorded as they are.
"""

from __future__ import annotations

import fnmatch
import functools
import re

__all__ = [
    "REDACTED",
    "SECRET_PATTERNS",
    "SECRET_WORDS",
    "redact_env",
    "redact_value",
    "secret_name",
    "storable",
    "strip_credentials",
]

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
    "*JWT*",
    "*SESSION*",
    "*SIGNING*",
    "*WEBHOOK*",
    "*CONNECTION_STRING*",
    "*CONNSTR*",
)
#: Words that make a name secret when they are a whole part of it (parts are separated by
#: ``_``, ``-``, ``.`` or a change of case): ``GITHUB_PAT`` and ``PAT_TOKEN``, but not
#: ``PATH`` or ``PYTHONPATH``.
SECRET_WORDS = frozenset({"PAT"})
REDACTED = "<redacted>"

# The user info of a URL: "user@", or "user:password@" where the password may hold "/" and "@"
# (unescaped, as people write them): everything up to the last "@" of the word is removed.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^/@\s:]*:\S*@|[^/@\s:]+@)")
# A name's parts: runs of capitals (GITHUB, PAT), capitalised words (Pat), digits.
_NAME_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# Private keys (PEM, OpenSSH, PGP), to their end line or, cut short, to the end of the value.
_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"
    r"(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|.*)",
    re.DOTALL,
)
# Webhook URLs carry their secret in the path: what follows the kept prefix goes.
_WEBHOOK = re.compile(
    r"(?P<keep>\bhttps?://(?:"
    r"hooks\.slack\.com/"
    r"|(?:[\w-]+\.)*discord(?:app)?\.com/api/webhooks/"
    r"|outlook\.office(?:365)?\.com/webhook\w*/"
    r"|[\w-]+\.webhook\.office\.com/"
    r"|api\.telegram\.org/bot"
    r"))[^\s\"'<>]+",
    re.IGNORECASE,
)
# Azure connection strings: the value of a key pair runs to the next ";".
_KEY_PAIR = re.compile(
    r"(?<![\w-])(?P<key>AccountKey|SharedAccessKey|SharedAccessSignature)=[^;\s\"']+",
    re.IGNORECASE,
)
# Secret-named fields of URL queries, libpq and ODBC connection strings: "?sig=...",
# "&access_token=...", "password=... host=...", "Server=...;Password=...".
_FIELD = re.compile(
    r"(?:^|(?<=[?&;\s]))(?P<key>sig|signature|token|access_token|refresh_token|id_token"
    r"|api[_-]?key|key|secret|client_secret|password|passwd|pwd|auth|authorization"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature"
    r"|x-goog-credential)=[^&;\s\"'#]+",
    re.IGNORECASE,
)
# JSON Web Tokens: three base64url segments, the first a JSON object ("eyJ" is '{"').
_JWT = re.compile(r"(?<![\w-])eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*(?![\w-])", re.ASCII)
# Access tokens of well-known shapes, whatever the variable is called.
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub
    r"|github_pat_[A-Za-z0-9_]{30,}"
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|xox[abeprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"  # AWS access key ids
    r"|sk-(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Z])[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
    r"|sk-[0-9a-f]{32,}"
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|AIza[A-Za-z0-9_-]{35}"  # Google API keys
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|npm_[A-Za-z0-9]{36}"
    r"|pypi-[A-Za-z0-9_-]{50,}"
    r")(?![A-Za-z0-9])"
)


# Whether a value may hold anything the patterns above find (most values hold none of it).
_MAYBE = re.compile(
    r"://|=|eyJ|-----BEGIN|gh[pousr]_|github_pat_|glpat-|xox|AKIA|ASIA|sk[-_]|rk_|AIza|hf_|npm_|pypi-"
)


def strip_credentials(text: str) -> str:
    """Remove user names and passwords from URLs: ``https://u:p@host`` -> ``https://host``."""
    return _URL_USERINFO.sub(r"\g<scheme>", text)


def redact_value(text: str) -> str:
    """``text`` without what looks like a credential, whatever it is called.

    Removed: user info of URLs (as :func:`strip_credentials`); private keys; the paths of
    webhook URLs (Slack, Discord, Microsoft Teams, Telegram bots); the values of
    ``AccountKey=``, ``SharedAccessKey=`` and ``SharedAccessSignature=`` pairs and of
    secret-named fields of URL queries and connection strings (``sig=``, ``access_token=``,
    ``password=``, ...); JWTs; and tokens of well-known shapes (``ghp_...``,
    ``github_pat_...``, ``glpat-...``, ``xoxb-...``, ``AKIA...``, ``sk-...``, ...).

    >>> redact_value("https://hooks.slack.com/services/T0/B0/XXXX")
    'https://hooks.slack.com/<redacted>'
    >>> redact_value("AccountName=lab;AccountKey=c2VjcmV0==;EndpointSuffix=core.windows.net")
    'AccountName=lab;AccountKey=<redacted>;EndpointSuffix=core.windows.net'
    """
    if not _MAYBE.search(text):
        return text
    text = _PRIVATE_KEY.sub(REDACTED, text)
    text = _WEBHOOK.sub(rf"\g<keep>{REDACTED}", text)
    text = strip_credentials(text)
    text = _KEY_PAIR.sub(rf"\g<key>={REDACTED}", text)
    text = _FIELD.sub(rf"\g<key>={REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    return _TOKEN.sub(REDACTED, text)


def secret_name(name: str, patterns: tuple[str, ...] = SECRET_PATTERNS) -> bool:
    """Whether an environment variable called ``name`` holds a secret, by its name alone:
    it matches one of ``patterns`` (case-insensitive globs), or one of its parts is one of
    :data:`SECRET_WORDS`."""
    if _globs(patterns).match(name.upper()):
        return True
    return any(part.upper() in SECRET_WORDS for part in _NAME_PARTS.findall(name))


@functools.lru_cache(maxsize=8)
def _globs(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One expression matching a name (upper case) that any of the globs matches."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p.upper())})" for p in patterns))


def redact_env(env: dict[str, str], extra: str | None = None) -> dict[str, str]:
    """Environment variables, sorted by name: those with a secret-looking name (see
    :func:`secret_name`; ``extra`` adds comma-separated globs, from ``MITOSIS_REDACT``) are
    ``<redacted>``, and credentials are removed from the others' values (:func:`redact_value`);
    bytes that are not UTF-8 are escaped (:func:`storable`).
    """
    patterns = (*SECRET_PATTERNS, *(p.strip() for p in (extra or "").split(",") if p.strip()))
    return {
        storable(name): REDACTED if secret_name(name, patterns) else storable(redact_value(value))
        for name, value in sorted(env.items())
    }


def storable(text: str) -> str:
    r"""``text`` as UTF-8 can store it: bytes the operating system gave that are not UTF-8 (kept
    by Python as lone surrogates) written as escapes, ``café``."""
    try:
        text.encode()
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode()
