"""What the workspace index must never read or pass on: secret paths and secret content.

* **Secret paths** (:func:`is_secret_path`): files that are never read at all (keys, dotenv
  files, credential stores, anything under ``secrets/``, ``.ssh/``, ...), matched with the same
  gitwildmatch semantics as ``.gitignore`` files (:class:`~nearline.workspace.ignore.GitPatterns`).

* **Secret content** (:func:`redact`, :func:`secret_spans`, :func:`redact_slice`): token-shaped
  secrets are replaced by :data:`REDACTED`, keeping the surrounding code; a text that is mostly
  secret (e.g. a PEM key) is flagged ``mostly_secret`` and the index drops it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from nearline.workspace.ignore import GitPatterns

__all__ = [
    "PRIVATE_KEY_BLOCK",
    "REDACTED",
    "SECRET_PATH_PATTERNS",
    "Redaction",
    "is_secret_path",
    "redact",
    "redact_slice",
    "secret_spans",
]

REDACTED = "<redacted>"

# --------------------------------------------------------------------------- #
# Secret paths
# --------------------------------------------------------------------------- #

#: gitwildmatch patterns; a pattern without a slash matches at any depth and
#: ``dir/`` patterns match the directory and everything under it.
SECRET_PATH_PATTERNS: tuple[str, ...] = (
    # dotenv & friends (templates such as .env.example included: better safe)
    ".env*",
    "*.env",
    # keys, certificates bundles and key stores
    "*.pem",
    "*.key",
    "*.p8",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.ppk",
    "*.kdbx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    # credential files
    ".netrc",
    "_netrc",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".dockercfg",
    ".docker/config.json",
    ".git-credentials",
    ".htpasswd",
    ".vault-token",
    "credentials*",
    "*.tfstate",
    "*.tfstate.*",
    "*.tfvars",
    # whole directories
    "secrets/",
    ".secrets/",
    ".ssh/",
    ".gnupg/",
    ".aws/",
)

_SECRET_PATHS = GitPatterns.from_lines(SECRET_PATH_PATTERNS)


def is_secret_path(relpath: str | os.PathLike[str]) -> bool:
    """True if a path (relative to its workspace folder, any separator) names a
    file that must never be read: keys, dotenv files, credential stores, or
    anything under a ``secrets/`` (``.ssh/``, ...) directory.  A trailing ``/``
    asks about a directory."""
    rel = os.fspath(relpath).replace("\\", "/").lstrip("/")
    if not rel:
        return False
    return bool(_SECRET_PATHS.check(rel))


# --------------------------------------------------------------------------- #
# Secret content
# --------------------------------------------------------------------------- #

_ValueCheck = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class _Rule:
    """One kind of secret.  Speed matters (every file of the workspace goes
    through here), so regexes start with a literal, which lets ``re`` skip
    ahead instead of trying every position; left-boundary checks that would
    need a leading look-behind are done in Python (``not_after``)."""

    name: str
    regex: re.Pattern[str]
    group: int  # which group holds the secret (0 = whole match)
    #: lower-case literals a match *starts* with: the regex is only tried (with
    #: ``match``) where one occurs in ``text.lower()``, not scanned over the text
    anchors: tuple[str, ...] = ()
    #: the match must not directly follow one of these characters
    not_after: str = ""
    check: _ValueCheck | None = None  # extra test on the captured value


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

_PLACEHOLDER_HINTS = (
    "redacted",
    "your",
    "example",
    "changeme",
    "change_me",
    "placeholder",
    "xxxxxx",
    "******",
    "<",
    ">",
    "${",
    "{{",
    "%(",
    "%s",
)


def _plausible_value(value: str) -> bool:
    low = value.lower()
    if any(h in low for h in _PLACEHOLDER_HINTS):
        return False
    if value.startswith(("$", "{", "%")):
        return False
    if "://" in value:
        return False  # a URL, not a secret (userinfo passwords have their own rule)
    return len(set(value)) > 2


def _plausible_unquoted(value: str) -> bool:
    # Unquoted right-hand sides are mostly identifiers in code; demand a digit
    # and a letter, which config-file secrets nearly always have.
    if not _plausible_value(value):
        return False
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _plausible_url_password(value: str) -> bool:
    return not value.startswith(("$", "{", "<", "%", "*")) and value.lower() not in {
        "password",
        "pass",
        "pwd",
        REDACTED,
    }


# optional type annotation between the name and the operator: `password: str = "..."`
_ANNOT = r"(?:[ \t]*:[ \t]*[A-Za-z_&*][\w\[\]., |&*]{0,40}?)?"

# The tail of a secret-ish name, starting at one of _KW_ANCHORS (what precedes
# it doesn't matter: `DB_PASSWORD`, `client_secret`, `githubToken` all end in
# one).  A bare `key` only counts after api/secret/private/access.
_KW = (
    r"(?:pass(?:word|phrase|wd)|pwd|secret(?:[_-]?access)?(?:[_-]?key)?|token"
    r"|(?:(?<=api)|(?<=api[_-])|(?<=secret)|(?<=secret[_-])|(?<=private)|(?<=private[_-])"
    r"|(?<=access)|(?<=access[_-]))key)"
    # ...and a short suffix after it: `password_prod`, `api_key_v2`, `secret_key_base`, `token2`
    # (after a separator or as digits, so that `tokenizer` stays a word of its own).
    r"(?:[_-][A-Za-z0-9]{1,16}|[0-9]{1,4}){0,2}"
)
_KW_ANCHORS = ("pass", "pwd", "secret", "token", "key")

_RULES: tuple[_Rule, ...] = (
    # PEM / OpenSSH / PGP private key blocks; an unterminated block is redacted
    # up to the end of its base64 body.
    _Rule(
        "private_key",
        re.compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
            r"|[A-Za-z0-9+/=\s\\:,.-]*)",
            re.S,
        ),
        0,
    ),
    _Rule(
        "aws_access_key_id",
        re.compile(r"A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
        0,
        not_after=_ALNUM,
    ),
    _Rule(
        "aws_secret_access_key",
        re.compile(
            r"(?i)secret(?:[_-]?access)?[_-]?key"
            r"[\"'\]]?\s*(?::=|=>|=|:)\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
        ),
        1,
        anchors=("secret",),
    ),
    _Rule(
        "github_token",
        re.compile(
            r"g(?:h[pousr]_[A-Za-z0-9]{36,251}|ithub_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9_])"
        ),
        0,
        not_after=_ALNUM + "_",
    ),
    _Rule(
        "gitlab_token",
        re.compile(r"gl(?:pat|dt|rt|ptt)-[A-Za-z0-9_-]{20,}"),
        0,
        not_after=_ALNUM + "_-",
    ),
    _Rule(
        "slack_token",
        re.compile(r"x(?:ox[abeoprs]|app)-[A-Za-z0-9-]{10,}"),
        0,
        not_after=_ALNUM + "_-",
    ),
    _Rule(
        "slack_webhook",
        re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/([A-Za-z0-9_/+-]{8,})"),
        1,
    ),
    _Rule(
        "stripe_key",
        re.compile(r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"),
        0,
        anchors=("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
        not_after=_ALNUM + "_",
    ),
    _Rule(
        "google_api_key",
        re.compile(r"AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),
        0,
        not_after=_ALNUM + "_-",
    ),
    _Rule(  # OpenAI / Anthropic
        "llm_api_key",
        re.compile(
            r"sk-(?:(?:proj|ant|svcacct|admin)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{48})(?![A-Za-z0-9_-])"
        ),
        0,
        not_after=_ALNUM + "_-",
    ),
    _Rule(
        "huggingface_token",
        re.compile(r"hf_[A-Za-z0-9]{34}(?![A-Za-z0-9_-])"),
        0,
        not_after=_ALNUM + "_-",
    ),
    _Rule(
        "npm_token",
        re.compile(r"npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_-])"),
        0,
        not_after=_ALNUM + "_-",
    ),
    _Rule(
        "jwt",
        re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
        0,
        not_after=_ALNUM + "_-",
    ),
    _Rule(  # scheme://user:PASSWORD@host
        "url_password",
        re.compile(r"://[^\s:/?#@'\"<>]+:([^\s/?#@'\"<>]+)@"),
        1,
        anchors=("://",),
        check=_plausible_url_password,
    ),
    # Generic `password = "..."`, `"api_key": "..."`, `SECRET_KEY=...` (quoted,
    # any language; unquoted only up to end of line and only if it has a digit).
    _Rule(
        "assignment_quoted",
        re.compile(
            r"(?i)"
            + _KW
            + r"[\"'\]]?"
            + _ANNOT
            + r"\s*(?::=|=>|=|:)\s*([\"'`])([^\"'`\s\\]{8,512})\1"
        ),
        2,
        anchors=_KW_ANCHORS,
        check=_plausible_value,
    ),
    _Rule(
        "assignment_unquoted",
        re.compile(
            r"(?im)" + _KW + r"[\"'\]]?" + _ANNOT + r"[ \t]*(?::=|=|:)[ \t]*"
            r"([^\s\"'`,;(){}\[\]<>]{8,512})[ \t]*(?:#.*)?$"
        ),
        1,
        anchors=_KW_ANCHORS,
        check=_plausible_unquoted,
    ),
)


#: a private key block (PEM, OpenSSH, PGP), terminated or not
PRIVATE_KEY_BLOCK: re.Pattern[str] = _RULES[0].regex


@dataclass(frozen=True, slots=True)
class Redaction:
    text: str  # the redacted text
    count: int  # number of secrets replaced
    redacted_chars: int  # characters removed (before the markers went in)
    kinds: tuple[str, ...]  # names of the rules that fired (sorted, unique)

    @property
    def mostly_secret(self) -> bool:
        """At least 3/4 of the non-whitespace text was secret: a key file, or
        a file that is little more than a token.  Such a text is dropped
        rather than passed on as a husk of markers."""
        if not self.count:
            return False
        kept = len("".join(self.text.split())) - self.count * len(REDACTED)
        return self.redacted_chars >= 3 * max(kept, 0)


def _anchored_matches(rule: _Rule, text: str, lower: str) -> Iterator[re.Match[str]]:
    if len(lower) != len(text):  # lower() changed lengths (rare Unicode): scan
        yield from rule.regex.finditer(text)
        return
    starts: list[int] = []
    for lit in rule.anchors:
        i = lower.find(lit)
        while i >= 0:
            starts.append(i)
            i = lower.find(lit, i + 1)
    if not starts:
        return
    starts.sort()
    end = 0
    match = rule.regex.match
    for i in starts:
        if i < end:
            continue
        m = match(text, i)
        if m is not None:
            end = m.end()
            yield m


def redact(text: str) -> Redaction:
    """Replace every secret in ``text`` with :data:`REDACTED`."""
    count = 0
    removed = 0
    kinds: set[str] = set()
    lower: str | None = None
    for rule in _RULES:
        if rule.anchors:
            if lower is None:
                lower = text.lower()
            matches: Iterable[re.Match[str]] = _anchored_matches(rule, text, lower)
        else:
            matches = rule.regex.finditer(text)
        pieces: list[str] = []
        pos = 0
        n_here = 0
        not_after = rule.not_after
        for m in matches:
            value = m.group(rule.group)
            if not value or value == REDACTED:
                continue
            if not_after and m.start() > 0 and text[m.start() - 1] in not_after:
                continue
            if rule.check is not None and not rule.check(value):
                continue
            start, end = m.span(rule.group)
            pieces.append(text[pos:start])
            pieces.append(REDACTED)
            removed += len("".join(value.split()))
            pos = end
            n_here += 1
        if n_here:
            pieces.append(text[pos:])
            text = "".join(pieces)
            lower = None
            count += n_here
            kinds.add(rule.name)
    return Redaction(text, count, removed, tuple(sorted(kinds)))


def secret_spans(text: str) -> list[tuple[int, int]]:
    """Where :func:`redact` would find secrets, as merged ``(start, end)`` offsets into
    ``text`` itself (every rule runs on the original text, so overlapping finds merge)."""
    spans: list[tuple[int, int]] = []
    lower = text.lower() if any(r.anchors for r in _RULES) else ""
    for rule in _RULES:
        matches: Iterable[re.Match[str]] = (
            _anchored_matches(rule, text, lower) if rule.anchors else rule.regex.finditer(text)
        )
        for m in matches:
            value = m.group(rule.group)
            if not value or value == REDACTED:
                continue
            if rule.not_after and m.start() > 0 and text[m.start() - 1] in rule.not_after:
                continue
            if rule.check is not None and not rule.check(value):
                continue
            spans.append(m.span(rule.group))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def redact_slice(text: str, spans: Sequence[tuple[int, int]], lo: int, hi: int) -> str:
    """``text[lo:hi]`` with every secret span that reaches into it replaced by
    :data:`REDACTED` (a span cut by the slice's edge too: part of a secret is a secret)."""
    out: list[str] = []
    pos = lo
    for a, b in spans:
        if b <= lo or a >= hi:
            continue
        a, b = max(a, lo), min(b, hi)
        if a > pos:
            out.append(text[pos:a])
        if not out or out[-1] != REDACTED:
            out.append(REDACTED)
        pos = max(pos, b)
    out.append(text[pos:hi])
    return "".join(out)
