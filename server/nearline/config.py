"""Settings: parsed from LSP ``initializationOptions`` / ``workspace/configuration``.

Settings arrive as nested camelCase JSON (``{"completion": {"maxTokens": 32}}``); dotted keys
(``{"completion.maxTokens": 32}``, as VS Code sends flat settings) are accepted too. A bad value
never stops the server: the key keeps its default and the problem is reported, naming the key,
so the LSP layer can show it to the user.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

ROPE_SCALING_TYPES = ("none", "linear", "yarn")
# The composers' names: the one list (``context.composer``'s choices; completion.composers maps
# each to its function, checked by mypy to miss none). It lives here because config may not
# import completion.
ComposerName = Literal["path-distance", "file-level", "ring-buffer", "bm25"]
COMPOSERS: tuple[ComposerName, ...] = get_args(ComposerName)
BACKENDS = ("local", "openai")
ISOLATIONS = ("process", "thread")
TRIGGERS = ("automatic", "manual")
# How path-distance lays out the repository block (see composers/path_distance_composer.py).
LAYOUTS = ("per-file", "shared")
# Prose, where a code model's guess is noise and the text is often private (commit messages):
# no completions unless the user names the language in ``completion.languages``.
PROSE_LANGUAGES = (
    "plaintext", "text", "markdown", "git-commit", "git-rebase", "scminput", "restructuredtext",
    "asciidoc",
)  # fmt: skip
# The catalog's format names (models/catalog.json "formats"; a unit test keeps them equal):
# config is a leaf module and cannot read the catalog itself.
PROMPT_FORMATS = ("auto", "qwen2.5-coder", "starcoder2")


@dataclass(kw_only=True)
class ModelSettings:
    id: str | None = None
    """Catalog id; ``None`` or ``"auto"``: the best catalog model on this machine whose warm
    p95 per keystroke meets 500 ms here (measured once, see engine/calibrate.py)."""
    path: str | None = None
    """An explicit GGUF file; overrides ``id``'s file (the catalog entry still gives the format)."""
    format: str = "auto"
    """The prompt format: ``auto`` (the catalog's for a catalog file, else read from the GGUF's
    own tokens) or the name of a known format, which overrides what was detected."""
    context_length: int | None = None
    """llama.cpp context window (n_ctx); ``None``: large enough for the prompt budget and the
    completion (at least the catalog entry's). RoPE scaling (YaRN) switches on by itself only
    past the model's trained context."""
    gpu_layers: int | None = None
    """Layers to offload; ``None`` = all when the build supports GPU offload, else 0."""
    threads: int | str | None = "auto"
    """llama.cpp threads. ``auto`` (or ``None``): physical cores (at most 8), unless the load's
    calibration (engine/calibrate.py, once per machine) measured fewer clearly faster, for
    generation and for prompt reading each."""
    rope_freq_base: float | None = None
    rope_scaling: str | None = None
    rope_scaling_factor: float | None = None
    yarn_orig_context: int | None = None
    batch_size: int | str = "auto"
    """Prompt tokens per llama_decode call: also the granularity at which a cold prompt can be
    cancelled, so it stays small (64 tokens ≈ 0.3 s on 2 CPU cores). ``auto``: 64, or a larger
    batch where the calibration measured it clearly faster and one batch still short."""
    state_cache_mb: int = 256
    """Memory for saved KV states of recently used documents (0 = off): switching to another
    file and back restores its state instead of reading its whole prompt again."""
    disk_cache_mb: int = 1024
    """Disk space for saved KV states (0 = off): after an editor restart, a file's prompt is
    restored from disk instead of read again. In the user cache directory, LRU within the cap."""
    draft_tokens: int | str = "auto"
    """Speculative decoding: draft up to this many tokens and verify them in one batch. Without
    ``draft_model`` the drafts are copied from the prompt (prompt lookup; 0 = off; ``auto``: as
    many as the calibration found to pay on this machine, often 0); with it, the draft model
    writes them (0 or ``auto`` = its default, 6)."""
    draft_model: str | None = None
    """A small model sharing the main model's vocabulary (a catalog id or a GGUF path) that
    drafts tokens for the main model to verify in one batch; the text is the main model's own
    greedy line. ``None``: off."""


@dataclass(kw_only=True)
class CompletionSettings:
    enabled: bool = True
    max_tokens: int = 48
    debounce_ms: int = 75
    timeout_ms: int = 2000
    """Limit on generating one suggestion, after which whatever was produced is used. Reading the
    prompt is not limited (it is kept in the KV cache for the next keystrokes); cancel stops it."""
    warm_up: bool = True
    """Read an opened document's prompt into the KV cache in the background."""
    suffix_lines: int = 0
    """Lines after the cursor's line given to FIM models (the rest of the cursor's line always is)."""
    cold_prompt_tokens: int = 256
    """When no KV state (in memory or on disk) holds most of the prompt, answer from a short
    prompt of about this many tokens of the file around the cursor (no repository context)
    while the full prompt is read in the background (0 = off: always the full prompt)."""
    in_comments: bool = True
    """Complete inside comments."""
    in_strings: bool = True
    """Complete inside string literals."""
    syntax_check: bool = True
    """Drop suggestions that break the syntax of their statement (tree-sitter; Python,
    JavaScript, TypeScript, Go, Rust, Java, C, C++)."""
    candidates: int = 1
    """Alternative suggestions per request (1-5), most probable first, for editors that cycle."""
    speculate: bool = True
    """While a suggestion is shown, compute the next line as if it were accepted (in the
    background, preempted by any request), so accepting and going on is instant."""
    languages: list[str] | None = None
    """Allow list of LSP language ids; ``None``: every language not in ``disabled_languages``."""
    disabled_languages: list[str] = field(default_factory=lambda: list(PROSE_LANGUAGES))
    """Deny list of LSP language ids: no model run and no warm-up there."""
    trigger: str = "automatic"
    """``automatic``: suggest while typing. ``manual``: only when the user asks (an inline
    request whose triggerKind is Invoked, a completion request invoked by its key)."""

    def enabled_for(self, language: str | None) -> bool:
        """Whether completions run in ``language`` (an LSP language id)."""
        lang = (language or "").lower()
        if self.languages is not None:
            return lang in {x.lower() for x in self.languages}
        return lang not in {x.lower() for x in self.disabled_languages}


@dataclass(kw_only=True)
class ContextSettings:
    composer: str = "path-distance"
    budget_tokens: int | None = None
    """Prompt budget; ``None`` = the catalog entry's ``budgetTokens``."""
    same_language: bool = True
    prefix_share: float = 1.0
    """At most this share of the budget goes to the current file's prefix while repository
    context is available (the rest is the composer's; what it leaves goes back to the prefix).
    1.0 = the prefix first, repository files only in what it leaves: on the quality benchmark
    the model used its own file's lines better than other files' stubs, so a smaller share lost
    Exact Match (figures in the README's quality section)."""
    layout: str = "shared"
    """How ``path-distance`` lays out the repository block: ``shared`` (first a part every
    file of the same directory gets the same, so opening a sibling reuses its KV state; then
    the current file's own) or ``per-file`` (every file chosen for the current file, nearest
    last). ``shared`` is the default: paired on the quality benchmark it lost nothing against
    ``per-file`` (figures in the README), and a sibling's prompt then starts from a state
    read before."""


@dataclass(kw_only=True)
class IndexSettings:
    """The ``index`` section; also what :class:`~nearline.workspace.index.WorkspaceIndex` takes
    (the workspace layer reads it from here, so the settings and the index cannot disagree)."""

    exclude: list[str] = field(default_factory=list)
    """gitwildmatch globs excluded on top of ``.gitignore``; ``!glob`` force-includes."""
    max_file_bytes: int = 1_000_000
    """Larger files are not indexed."""
    watch: bool = True
    """Keep the index current with disk changes (a watchdog watcher)."""


@dataclass(kw_only=True)
class EngineSettings:
    backend: str = "local"
    """``local``: llama.cpp in this process. ``openai``: any server with an OpenAI-compatible
    ``/v1/completions`` endpoint (llama-server, llama-cpp-python's server, vLLM, Ollama);
    prompts are still composed, budgeted and cleaned here, only generation moves there."""
    url: str = "http://127.0.0.1:8080"
    """Base URL of the server (``/v1`` is appended unless the URL already ends with it)."""
    model: str | None = None
    """Model name sent to the server; ``None`` = the first model the server lists."""
    api_key_env: str | None = None
    """The *name* of an environment variable holding the API key (never the key itself)."""
    timeout_ms: int = 10_000
    """Limit on one remote request from connecting to its last token (queueing and reading the
    prompt included; ``completion.timeoutMs`` still limits the generation itself)."""
    connect_timeout_ms: int = 2_000
    isolation: str = "process"
    """Where llama.cpp runs (backend ``local``): ``process`` (a child process: a crash in native
    code is survived, the model restarts) or ``thread`` (in the server process: for benchmarks
    and debugging)."""


@dataclass(kw_only=True)
class StatsSettings:
    enabled: bool = True
    """Count shown/accepted suggestions in a local file (never sent anywhere)."""


@dataclass(kw_only=True)
class Settings:
    model: ModelSettings = field(default_factory=ModelSettings)
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    context: ContextSettings = field(default_factory=ContextSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    stats: StatsSettings = field(default_factory=StatsSettings)


@dataclass(frozen=True)
class SettingsProblem:
    key: str
    problem: str

    def __str__(self) -> str:
        return f"nearline.{self.key}: {self.problem}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _int_range(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be between {lo} and {hi}, got {v}"

    return check


AUTO = "auto"


def _auto_or(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def auto_or(v: Any) -> str | None:
        if isinstance(v, str):
            return None if v == AUTO else f'must be a number or "auto", got {v!r}'
        return check(v)

    return auto_or


def _one_of(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in options else f"must be one of {', '.join(options)}; got {v!r}"

    return check


def _float_range(lo: float, hi: float) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be a number from {lo} to {hi}, got {v}"

    return check


def _positive(v: Any) -> str | None:
    return None if v > 0 else f"must be positive, got {v}"


def _http_url(v: Any) -> str | None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(v.strip())
        if parts.username is not None or parts.password is not None:
            # Not echoed: it holds a credential, and settings are shown in status output.
            return "must not contain credentials; put the key in engine.apiKeyEnv's variable"
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"is not a valid URL ({exc}), got {v!r}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http:// or https:// URL such as http://127.0.0.1:8080, got {v!r}"
    return None


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(v: Any) -> str | None:
    # Never echo the value: a user who pasted the key itself here must not see it in a message.
    if _ENV_NAME.fullmatch(v):
        return None
    return "must be the name of an environment variable (such as NEARLINE_API_KEY), not the key"


def _non_empty(v: Any) -> str | None:
    return None if v.strip() else "must not be empty"


def _existing_file(v: Any) -> str | None:
    p = os.path.expanduser(v)
    return None if os.path.isfile(p) else f"no such file: {v}"


# Range checks beyond the type: (section, field) -> check returning a problem or None.
_CHECKS: dict[tuple[str, str], Callable[[Any], str | None]] = {
    ("model", "context_length"): _int_range(256, 1 << 20),
    ("model", "gpu_layers"): _int_range(-1, 10_000),
    ("model", "threads"): _auto_or(_int_range(1, 512)),
    ("model", "rope_freq_base"): _positive,
    ("model", "rope_scaling"): _one_of(ROPE_SCALING_TYPES),
    ("model", "rope_scaling_factor"): _positive,
    ("model", "yarn_orig_context"): _int_range(1, 1 << 24),
    ("model", "batch_size"): _auto_or(_int_range(8, 4096)),
    ("model", "state_cache_mb"): _int_range(0, 1 << 16),
    ("model", "disk_cache_mb"): _int_range(0, 1 << 20),
    ("model", "draft_tokens"): _auto_or(_int_range(0, 16)),
    ("model", "draft_model"): _non_empty,
    ("model", "path"): _existing_file,
    ("model", "format"): _one_of(PROMPT_FORMATS),
    ("completion", "max_tokens"): _int_range(1, 512),
    ("completion", "debounce_ms"): _int_range(0, 10_000),
    ("completion", "timeout_ms"): _int_range(50, 600_000),
    ("completion", "suffix_lines"): _int_range(0, 200),
    ("completion", "cold_prompt_tokens"): _int_range(0, 8192),
    ("completion", "candidates"): _int_range(1, 5),
    ("completion", "trigger"): _one_of(TRIGGERS),
    ("context", "composer"): _one_of(COMPOSERS),
    ("context", "budget_tokens"): _int_range(64, 1 << 20),
    ("context", "prefix_share"): _float_range(0.1, 1.0),
    ("context", "layout"): _one_of(LAYOUTS),
    ("index", "max_file_bytes"): _int_range(1, 1 << 30),
    ("engine", "backend"): _one_of(BACKENDS),
    ("engine", "isolation"): _one_of(ISOLATIONS),
    ("engine", "url"): _http_url,
    ("engine", "model"): _non_empty,
    ("engine", "api_key_env"): _env_name,
    ("engine", "timeout_ms"): _int_range(100, 600_000),
    ("engine", "connect_timeout_ms"): _int_range(50, 60_000),
}


def _coerce(value: Any, annotation: str) -> Any:
    """Check ``value`` against a dataclass field annotation (given as a string, since this module
    uses postponed annotations). Raises ``TypeError`` with a readable message."""
    optional = "None" in annotation
    base = annotation.replace(" | None", "").strip()
    if value is None:
        if optional:
            return None
        raise TypeError("must not be null")
    if base == "bool":
        if isinstance(value, bool):
            return value
        raise TypeError(f"must be true or false, got {value!r}")
    if base == "int | str":
        # A number, or a word such as "auto" (the field's check says which words); a number
        # typed into a string field ("4") is the number.
        if isinstance(value, str):
            return int(value) if value.strip().isdigit() else value
        return _coerce(value, "int")
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"must be an integer, got {value!r}")
        if isinstance(value, float) and not value.is_integer():
            raise TypeError(f"must be an integer, got {value!r}")
        return int(value)
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"must be a number, got {value!r}")
        return float(value)
    if base == "str":
        if isinstance(value, str):
            return value
        raise TypeError(f"must be a string, got {value!r}")
    if base == "list[str]":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise TypeError(f"must be a list of strings, got {value!r}")
    raise TypeError(f"unsupported setting type {annotation}")  # pragma: no cover


def _nest(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Turn dotted keys into nested dicts; nested input passes through."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        last = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            node[last].update(_nest(value))
        elif isinstance(value, Mapping):
            node[last] = _nest(value)
        else:
            node[last] = value
    return out


def parse_settings(
    raw: Any, base: Settings | None = None
) -> tuple[Settings, list[SettingsProblem]]:
    """Parse user settings over ``base`` (or the defaults).

    Unknown keys are reported (a typo should not silently do nothing); every bad key keeps its
    default. Never raises.
    """
    settings = dataclasses.replace(base) if base is not None else Settings()
    # Copy nested sections so the caller's base is not mutated.
    for f in fields(Settings):
        setattr(settings, f.name, dataclasses.replace(getattr(settings, f.name)))
    problems: list[SettingsProblem] = []
    if raw is None:
        return settings, problems
    if not isinstance(raw, Mapping):
        return settings, [SettingsProblem("", f"settings must be an object, got {raw!r}")]
    nested = _nest(raw)
    if isinstance(nested.get("nearline"), dict) and len(nested) == 1:
        nested = nested["nearline"]
    sections = {f.name: f for f in fields(Settings)}
    for sec_name, sec_value in nested.items():
        sec_key = _snake(sec_name)
        if sec_key not in sections:
            problems.append(SettingsProblem(sec_name, "unknown setting"))
            continue
        if not isinstance(sec_value, Mapping):
            problems.append(SettingsProblem(sec_name, f"must be an object, got {sec_value!r}"))
            continue
        section = getattr(settings, sec_key)
        sec_fields = {f.name: f for f in fields(section)}
        for key, value in sec_value.items():
            field_name = _snake(key)
            dotted = f"{sec_name}.{key}"
            if field_name not in sec_fields:
                problems.append(SettingsProblem(dotted, "unknown setting"))
                continue
            annotation = str(sec_fields[field_name].type)
            try:
                coerced = _coerce(value, annotation)
            except TypeError as exc:
                problems.append(SettingsProblem(dotted, f"{exc}; using the default"))
                continue
            check = _CHECKS.get((sec_key, field_name))
            if coerced is not None and check is not None and (msg := check(coerced)):
                problems.append(SettingsProblem(dotted, f"{msg}; using the default"))
                continue
            setattr(section, field_name, coerced)
    return settings, problems


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    """The effective settings as nested camelCase (for logs and the prompt command)."""
    return {
        _camel(sec.name): {
            _camel(f.name): getattr(getattr(settings, sec.name), f.name)
            for f in fields(getattr(settings, sec.name))
        }
        for sec in fields(Settings)
    }
