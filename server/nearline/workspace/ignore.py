"""What the workspace index may read, and what it must never pass on.

Three concerns live here, none of which knows about models or LSP:

* **Ignore rules** (:class:`IgnoreRules`): ``.gitignore`` files at every level
  (each relative to its own directory, negations included), ``.git/info/exclude``
  and the user's ``index.exclude`` globs, all matched with gitwildmatch
  semantics through :mod:`pathspec` (``GitIgnoreSpec``).

  Precedence, highest first (this mirrors git, plus the user's setting on top):

  1. the user's ``index.exclude`` globs.  A match excludes; a negated user glob
     (``!build/gen/``) force-includes a path git ignores;
  2. the deepest ``.gitignore`` with a matching pattern (last match in a file
     wins), then its parents' ``.gitignore`` files, including those *above* the
     workspace folder up to the top of its git work tree;
  3. ``.git/info/exclude`` of the enclosing repository;
  4. only when the workspace folder is **not** inside a git work tree:
     :data:`DEFAULT_HEAVY_DIRS` (``node_modules/``, ``.venv/``, ...).  Inside a
     repository the ``.gitignore`` files are authoritative: a project that
     commits ``node_modules`` gets it indexed, one that ignores it does not.

  VCS metadata directories (``.git``, ``.hg``, ``.svn``) are always skipped.
  A nested repository (a directory holding its own ``.git``) starts a fresh
  stack of ``.gitignore`` files, as git does.  Git's global excludes file
  (``core.excludesFile``) is not read.

  As in git, a file inside an excluded directory cannot be re-included by a
  negation in a ``.gitignore`` (the directory is never walked); only the user's
  negated ``index.exclude`` globs can do that, and only for the directory itself.

* **Secret paths** (:func:`is_secret_path`): files that are never read at all.

* **Secret content** (:func:`redact_secrets`, :func:`redact`): token-shaped
  secrets are replaced by :data:`REDACTED`, keeping the surrounding code; a text
  that is mostly secret (e.g. a PEM key) is flagged ``mostly_secret`` and the
  index drops it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec

__all__ = [
    "DEFAULT_HEAVY_DIRS",
    "PRIVATE_KEY_BLOCK",
    "REDACTED",
    "SECRET_PATH_PATTERNS",
    "VCS_DIRS",
    "FastSpec",
    "IgnoreRules",
    "Redaction",
    "decode_text",
    "find_git_toplevel",
    "ignore_file_scope",
    "is_ignore_file",
    "is_secret_path",
    "looks_binary",
    "redact",
    "redact_secrets",
    "redact_slice",
    "secret_spans",
]

REDACTED = "<redacted>"

VCS_DIRS: frozenset[str] = frozenset({".git", ".hg", ".svn", ".bzr", "_darcs"})

DEFAULT_HEAVY_DIRS: tuple[str, ...] = (
    "node_modules/",
    "bower_components/",
    "__pycache__/",
    ".venv/",
    "venv/",
    ".tox/",
    ".nox/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".next/",
    ".nuxt/",
    ".gradle/",
    ".terraform/",
    ".cache/",
)

BINARY_SNIFF_BYTES = 8192


# --------------------------------------------------------------------------- #
# Binary / text detection
# --------------------------------------------------------------------------- #


def looks_binary(head: bytes) -> bool:
    """True when the first 8 KiB contain a NUL byte."""
    return b"\0" in head[:BINARY_SNIFF_BYTES]


def decode_text(data: bytes) -> str | None:
    """Decode ``data`` as UTF-8 (a leading BOM is dropped), or ``None`` if it is
    binary: a NUL in the first 8 KiB or not valid UTF-8."""
    if looks_binary(data):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


# --------------------------------------------------------------------------- #
# Fast pathspec matching
# --------------------------------------------------------------------------- #

_NAMED_GROUP = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>")


class FastSpec:
    """A :class:`pathspec.GitIgnoreSpec` plus one union regex of all its
    patterns.  Most paths match no pattern at all; the union answers those in
    a single C-level search, and only paths that hit some pattern go through
    pathspec's exact (last-match-wins, negation-aware) evaluation."""

    __slots__ = ("_any", "spec")

    def __init__(self, spec: GitIgnoreSpec) -> None:
        self.spec = spec
        self._any: re.Pattern[str] | None = None
        parts: list[str] = []
        try:
            for pat in spec.patterns:
                if pat.include is None:
                    continue
                rx = getattr(pat, "regex", None)
                if (
                    rx is None
                    or not isinstance(rx.pattern, str)
                    or "(?P=" in rx.pattern
                    or rx.flags & ~re.UNICODE
                ):
                    return  # unknown shape: always use the exact path
                parts.append("(?:" + _NAMED_GROUP.sub("(?:", rx.pattern) + ")")
            self._any = re.compile("|".join(parts) if parts else "(?!)")
        except (re.error, AttributeError, TypeError):
            self._any = None

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> FastSpec:
        """Compile gitignore lines; a line git would reject is skipped rather
        than failing the whole file."""
        lines = list(lines)
        try:
            return cls(GitIgnoreSpec.from_lines(lines))
        except (ValueError, TypeError):
            good = []
            for line in lines:
                try:
                    GitIgnoreSpec.from_lines([line])
                except (ValueError, TypeError):
                    continue
                good.append(line)
            return cls(GitIgnoreSpec.from_lines(good))

    def __len__(self) -> int:
        return len(self.spec)

    def check(self, path: str) -> bool | None:
        """True = excluded, False = re-included by a negation, None = no
        pattern matched."""
        if self._any is not None and self._any.search(path) is None:
            return None
        return self.spec.check_file(path).include


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

_SECRET_SPEC = FastSpec.from_lines(SECRET_PATH_PATTERNS)


def is_secret_path(relpath: str | os.PathLike[str]) -> bool:
    """True if a path (relative to its workspace folder, any separator) names a
    file that must never be read: keys, dotenv files, credential stores, or
    anything under a ``secrets/`` (``.ssh/``, ...) directory.  A trailing ``/``
    asks about a directory."""
    rel = os.fspath(relpath).replace("\\", "/").lstrip("/")
    if not rel:
        return False
    return bool(_SECRET_SPEC.check(rel))


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


def redact_secrets(text: str) -> tuple[str, int]:
    """``(redacted_text, number_of_secrets_replaced)``."""
    r = redact(text)
    return r.text, r.count


# --------------------------------------------------------------------------- #
# Ignore rules
# --------------------------------------------------------------------------- #


def find_git_toplevel(path: Path) -> Path | None:
    """The closest directory at or above ``path`` that holds a ``.git`` entry."""
    p = path
    while True:
        if os.path.lexists(os.path.join(p, ".git")):
            return p
        if p.parent == p:
            return None
        p = p.parent


def _git_dirs(work_tree: str) -> list[str]:
    """Candidate git directories for a work tree (``.git`` may be a file:
    worktrees and submodules), including a worktree's common dir."""
    dot_git = os.path.join(work_tree, ".git")
    if os.path.isdir(dot_git):
        return [dot_git]
    try:
        with open(dot_git, encoding="utf-8") as f:
            first = f.readline().strip()
    except OSError:
        return []
    if not first.startswith("gitdir:"):
        return []
    gitdir = first[len("gitdir:") :].strip()
    gitdir = os.path.normpath(os.path.join(work_tree, gitdir))
    dirs = [gitdir]
    try:
        with open(os.path.join(gitdir, "commondir"), encoding="utf-8") as f:
            dirs.append(os.path.normpath(os.path.join(gitdir, f.readline().strip())))
    except OSError:
        pass
    return dirs


def _read_spec(path: str) -> FastSpec | None:
    try:
        with open(path, "rb") as f:
            data = f.read(1_000_000)
    except OSError:
        return None
    lines = data.decode("utf-8", "replace").splitlines()
    spec = FastSpec.from_lines(lines)
    return spec if len(spec) else None


def _parent(rel: str) -> str:
    i = rel.rfind("/")
    return rel[:i] if i >= 0 else ""


@dataclass(frozen=True, slots=True)
class _Layer:
    prefix: str  # rel path of the layer's base dir, relative to the workspace root
    up: str  # for layers above the root: root relative to the layer's dir
    spec: FastSpec

    def check(self, rel: str, is_dir: bool) -> bool | None:
        if self.up:
            sub = f"{self.up}/{rel}"
        elif self.prefix:
            sub = rel[len(self.prefix) + 1 :]
        else:
            sub = rel
        if is_dir:
            sub += "/"
        return self.spec.check(sub)


class IgnoreRules:
    """Ignore decisions for one workspace folder.  Thread-safe; ``.gitignore``
    files are read lazily and cached until :meth:`reset`."""

    def __init__(self, root: Path, exclude: Sequence[str] = ()) -> None:
        self.root = root
        self._root_s = os.fspath(root)
        self._lock = threading.RLock()
        self._user = FastSpec.from_lines(exclude) if exclude else None
        if self._user is not None and not len(self._user):
            self._user = None
        self._heavy = FastSpec.from_lines(DEFAULT_HEAVY_DIRS)
        self._init_repo()

    # -- setup ---------------------------------------------------------------

    def _init_repo(self) -> None:
        self.git_toplevel = find_git_toplevel(self.root)
        self.in_git = self.git_toplevel is not None
        self._own: dict[str, tuple[FastSpec | None, bool, FastSpec | None]] = {}
        self._layers: dict[str, tuple[_Layer, ...]] = {}
        self._dir_excluded: dict[str, bool] = {}
        # layers from above the workspace folder (root inside a repo)
        above: list[_Layer] = []
        top = self.git_toplevel
        if top is not None and top != self.root:
            up_parts = self.root.relative_to(top).parts
            # deepest first: root's parent, ..., top
            for i in range(len(up_parts) - 1, -1, -1):
                d = top.joinpath(*up_parts[:i])
                up = "/".join(up_parts[i:])
                spec = _read_spec(os.path.join(d, ".gitignore"))
                if spec is not None:
                    above.append(_Layer("", up, spec))
            for gd in _git_dirs(os.fspath(top)):
                spec = _read_spec(os.path.join(gd, "info", "exclude"))
                if spec is not None:
                    above.append(_Layer("", "/".join(up_parts), spec))
                    break
        self._above = tuple(above)

    def reset(self) -> None:
        """Forget every cached ``.gitignore``/``info/exclude`` (call after one
        of them changed)."""
        with self._lock:
            self._init_repo()

    # -- per-directory data --------------------------------------------------

    def _own_info(self, d: str) -> tuple[FastSpec | None, bool, FastSpec | None]:
        info = self._own.get(d)
        if info is None:
            abs_d = os.path.join(self._root_s, d) if d else self._root_s
            gi = _read_spec(os.path.join(abs_d, ".gitignore"))
            is_repo = os.path.lexists(os.path.join(abs_d, ".git"))
            excl = None
            if is_repo:
                for gd in _git_dirs(abs_d):
                    excl = _read_spec(os.path.join(gd, "info", "exclude"))
                    if excl is not None:
                        break
            info = (gi, is_repo, excl)
            self._own[d] = info
        return info

    def _layers_for(self, d: str) -> tuple[_Layer, ...]:
        """Layers that apply to entries of directory ``d``, highest precedence
        first."""
        layers = self._layers.get(d)
        if layers is not None:
            return layers
        gi, is_repo, excl = self._own_info(d)
        own: list[_Layer] = []
        if gi is not None:
            own.append(_Layer(d, "", gi))
        if is_repo:
            # A repository boundary: parents' .gitignore files stop here, and
            # this repo's info/exclude sits below all of its .gitignore files.
            # (The deeper .gitignore files of this repo come first, being
            # layers of descendants.)
            result = tuple(own) + ((_Layer(d, "", excl),) if excl is not None else ())
        else:
            parent = self._layers_for(_parent(d)) if d else self._above
            result = tuple(own) + parent
        self._layers[d] = result
        return result

    # -- queries ---------------------------------------------------------------

    def is_ignored(self, rel: str, is_dir: bool) -> bool:
        """Does a rule exclude this entry, assuming its parent directory is
        *not* excluded?  (What a tree walk asks.)"""
        name = rel.rsplit("/", 1)[-1]
        if name in VCS_DIRS:
            return True
        with self._lock:
            if self._user is not None:
                r = self._user.check(rel + "/" if is_dir else rel)
                if r is not None:
                    return r
            for layer in self._layers_for(_parent(rel)):
                r = layer.check(rel, is_dir)
                if r is not None:
                    return r
            if not self.in_git:
                return bool(self._heavy.check(rel + "/" if is_dir else rel))
            return False

    def dir_excluded(self, rel_dir: str) -> bool:
        """Is this directory, or any directory above it, excluded?"""
        if not rel_dir:
            return False
        with self._lock:
            cached = self._dir_excluded.get(rel_dir)
            if cached is not None:
                return cached
            result = self.dir_excluded(_parent(rel_dir)) or self.is_ignored(rel_dir, True)
            self._dir_excluded[rel_dir] = result
            return result

    def is_excluded(self, rel: str, is_dir: bool = False) -> bool:
        """Full check for a single path (refresh): its directories, then itself."""
        return self.dir_excluded(_parent(rel)) or self.is_ignored(rel, is_dir)


def is_ignore_file(rel: str) -> bool:
    """Does a change to this path change ignore rules?"""
    if rel == ".gitignore" or rel.endswith("/.gitignore"):
        return True
    return rel == ".git/info/exclude" or rel.endswith("/.git/info/exclude")


def ignore_file_scope(rel: str) -> str:
    """The directory (rel) whose subtree an ignore file governs."""
    if rel.rsplit("/", 1)[-1] == ".gitignore":
        return _parent(rel)
    # <scope>/.git/info/exclude
    i = ("/" + rel).rfind("/.git/")
    return rel[: max(i - 1, 0)] if i > 0 else ""


def iter_parents(rel: str) -> Iterable[str]:
    """``a/b/c`` -> ``a/b``, ``a`` (not the root)."""
    while "/" in rel:
        rel = rel.rsplit("/", 1)[0]
        yield rel
