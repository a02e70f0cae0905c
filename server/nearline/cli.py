"""``nearline``: serve, complete, prompt, models, demo, bench.

Every user-facing failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from nearline import __version__

log = logging.getLogger("nearline")


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.WARNING),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _parse_hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    try:
        p = int(port)
    except ValueError:
        raise UserError(f"--tcp expects [HOST:]PORT, got {value!r}") from None
    if not 0 <= p <= 65535:
        raise UserError(f"--tcp port out of range: {p}")
    return (host or "127.0.0.1").strip("[]"), p


def _is_loopback(host: str) -> bool:
    """Only loopback addresses keep the server private to this machine (a host name might
    resolve anywhere, so only ``localhost`` counts)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    import faulthandler
    import signal

    from nearline.lsp.server import LspLogHandler, build_server

    # `kill -USR1 <pid>` dumps every thread's stack to stderr: how to see where a server hangs.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    server = build_server()
    handler = LspLogHandler(server)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("nearline").addHandler(handler)
    logging.getLogger("nearline").setLevel(logging.INFO)
    if args.tcp:
        host, port = _parse_hostport(args.tcp)
        if not _is_loopback(host):
            log.warning(
                "listening on %s: reachable from other machines; Nearline has no auth", host
            )
        try:
            server.start_tcp(host, port)
        except OSError as exc:  # port taken, unknown host, no permission
            reason = exc.strerror or str(exc)
            raise UserError(f"cannot listen on {host}:{port}: {reason}") from None
    else:
        server.start_io()
    return 0


def _parse_location(loc: str) -> tuple[Path, int, int]:
    parts = loc.rsplit(":", 2)
    if len(parts) != 3:
        raise UserError(f"expected PATH:LINE:COL (1-based), got {loc!r}")
    path_s, line_s, col_s = parts
    try:
        line, col = int(line_s), int(col_s)
    except ValueError:
        raise UserError(f"LINE and COL must be numbers in {loc!r}") from None
    if line < 1 or col < 1:
        raise UserError(f"LINE and COL are 1-based, got {line}:{col}")
    return Path(path_s), line, col


def _settings_from_args(args: argparse.Namespace) -> Any:
    from nearline.config import parse_settings

    raw: dict[str, Any] = {}
    if getattr(args, "settings", None):
        try:
            raw = json.loads(args.settings)
        except json.JSONDecodeError as exc:
            raise UserError(f"--settings is not valid JSON: {exc}") from None
    if getattr(args, "model", None):
        raw.setdefault("model", {})["id"] = args.model
    if getattr(args, "model_path", None):
        raw.setdefault("model", {})["path"] = args.model_path
    if getattr(args, "composer", None):
        raw.setdefault("context", {})["composer"] = args.composer
    settings, problems = parse_settings(raw)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    from nearline.weights.catalog import load_catalog

    try:
        if settings.model.id != "auto":
            load_catalog().get(settings.model.id)
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None
    settings.completion.debounce_ms = 0
    return settings


def _query_for(args: argparse.Namespace) -> Any:
    from nearline.completion.service import Query, language_for

    path, line, col = _parse_location(args.location)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if line > len(lines):
        raise UserError(f"{path}: line {line} is past the end ({len(lines)} lines)")
    if col > len(lines[line - 1]) + 1:
        raise UserError(
            f"{path}:{line}: column {col} is past the end of the line ({len(lines[line - 1])} characters)"
        )
    root = Path(args.root).resolve() if args.root else path.resolve().parent
    abspath = path.resolve()
    try:
        rel = abspath.relative_to(root).as_posix()
    except ValueError:
        rel = abspath.name
    return Query(
        uri=abspath.as_uri(), text=text, line=line - 1, col=col - 1, path=abspath, rel=rel,
        language=language_for(abspath.name), root=root,
    )  # fmt: skip


def _make_service(args: argparse.Namespace, q: Any) -> Any:
    from nearline.completion.service import CompletionService

    settings = _settings_from_args(args)
    # Load errors surface once, as the command's own error line (svc.error), not twice.
    svc = CompletionService(settings, on_message=lambda lvl, text: None)
    if q.root is not None and settings.context.composer != "file-level":
        svc.index = _build_index(q.root, settings, q, svc.count_tokens)
    return svc


def _build_index(root: Path, settings: Any, q: Any, count: Any) -> Any:
    from nearline.workspace.index import WorkspaceIndex

    idx = WorkspaceIndex([root], settings.index, count_tokens=count)
    idx.scan()
    if q.path is not None:
        idx.set_overlay(q.path, q.text)
    return idx


def cmd_complete(args: argparse.Namespace) -> int:
    q = _query_for(args)
    svc = _make_service(args, q)

    async def run() -> int:
        await svc.start()
        if svc.state != "ready":
            raise UserError(svc.error or "the model is not available")
        out = await svc.complete(q)
        svc.close()
        if out.source == "error":
            extra = out.result.extra if out.result is not None else {}
            if "server" in extra:  # a remote engine's failure
                raise UserError(f"the completion server at {extra['server']} {extra['error']}")
            raise UserError("generation failed (see the log above)")
        if out.suggestions:
            print(out.suggestions[0].text)
        if args.verbose and out.result is not None:
            r = out.result
            print(
                f"[{out.source}] prompt={r.prompt_tokens} evaluated={r.evaluated_tokens} "
                f"generated={r.generated_tokens} stop={r.stop_reason} {out.latency_s * 1000:.0f} ms",
                file=sys.stderr,
            )
        return 0

    return asyncio.run(run())


def cmd_prompt(args: argparse.Namespace) -> int:
    q = _query_for(args)
    svc = _make_service(args, q)
    prompt = svc.build_prompt(q)
    total = svc.prompt_tokens(prompt)
    if args.json:
        print(prompt.to_json(total))
    else:
        sys.stdout.write(prompt.text)
        sys.stdout.write("\n")
        print(f"--- {total} tokens: " + ", ".join(
            f"{p['kind']} {p['path'] or ''} {p['tokens']}".strip() for p in prompt.breakdown()
        ), file=sys.stderr)  # fmt: skip
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from nearline.weights.catalog import load_catalog
    from nearline.weights.download import ModelError, pull, status, verify

    cat = load_catalog()
    if args.models_cmd == "inspect":
        return _models_inspect(args)
    if args.models_cmd == "auto":
        return _models_auto(args)
    if args.models_cmd == "list":
        for m in cat.models:
            st = status(m)
            state = "missing"
            if st.present:
                state = "verified" if st.verified else ("present" if st.size_ok else "bad size")
            default = " (default)" if m.id == cat.default_id else ""
            size = f"{m.size / 1e6:.0f} MB" if m.size else "?"
            print(f"{m.id:<40} {size:>8}  {state:<9} {m.name}{default}")
        return 0
    try:
        entry = cat.get(args.id)
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None
    if args.models_cmd == "pull":
        try:
            pull(entry, force=args.force)
        except ModelError as exc:
            raise UserError(str(exc)) from None
        return 0
    if args.models_cmd == "verify":
        return 0 if verify(entry) else 1
    if args.models_cmd == "path":
        print(entry.path)
        return 0
    raise UserError(f"unknown models command {args.models_cmd}")


def _models_auto(args: argparse.Namespace) -> int:
    """What ``model.id: auto`` runs on this machine and why (measuring what is not yet)."""
    from nearline.config import Settings
    from nearline.engine import calibrate
    from nearline.engine.factory import auto_choice

    if args.remeasure:
        with contextlib.suppress(FileNotFoundError):
            calibrate.cache_file().unlink()
    settings = Settings()
    if args.threads:
        settings.model.threads = args.threads
    choice = auto_choice(settings, measure=True)
    if args.json:
        print(json.dumps(choice.as_dict(), indent=2))
        return 0
    for c in choice.calibrations:
        print(
            f"{c.model_id:<40} warm p50 {c.warm_p50_ms:6.0f} ms  p95 {c.warm_p95_ms:6.0f} ms  "
            f"prompt {c.prompt_tps:6.1f} t/s  generation {c.gen_tps:5.1f} t/s"
        )
    print(f"auto: {choice.model_id} ({choice.reason})")
    return 0


def _models_inspect(args: argparse.Namespace) -> int:
    """What a GGUF says about itself and the prompt format Nearline will use for it."""
    import contextlib

    from nearline.engine.formats import (
        FormatError,
        choose_format,
        format_from_info,
        read_model_info,
    )
    from nearline.weights.catalog import load_catalog
    from nearline.weights.download import ModelError, check_gguf

    cat = load_catalog()
    path = Path(args.file).expanduser()
    if not path.exists() and os.sep not in args.file:
        with contextlib.suppress(KeyError):  # a catalog id names its pulled file
            path = cat.get(args.file).path
    try:
        check_gguf(path)
        info = read_model_info(path)
        chosen, why = choose_format(cat.default, path, None)
    except (ModelError, FormatError) as exc:
        raise UserError(str(exc)) from None
    detected = format_from_info(info)
    fmt_json = {
        "name": chosen.name, "why": why, "fim": chosen.has_fim,
        "fimPrefix": chosen.fim_prefix, "fimSuffix": chosen.fim_suffix,
        "fimMiddle": chosen.fim_middle, "repoName": chosen.repo_name,
        "fileSep": chosen.file_sep, "stop": list(chosen.stop), "detected": detected.name,
    }  # fmt: skip
    if args.json:
        print(json.dumps({**info.to_json(), "format": fmt_json}, indent=2, ensure_ascii=False))
        return 0
    t = info.tokens
    rope = f"base {info.rope_freq_base:g}" if info.rope_freq_base else "base (default)"
    if info.rope_scaling and info.rope_scaling != "none":
        rope += f", {info.rope_scaling} x{info.rope_scaling_factor or 1:g}"
        if info.rope_orig_context:
            rope += f" from {info.rope_orig_context}"
    else:
        rope += ", no scaling"
    rows = [
        ("file", str(path)),
        ("read by", info.reader),
        ("architecture", info.architecture or "?"),
        ("name", info.name or "?"),
        ("tokenizer", f"{info.tokenizer or '?'}, {info.vocab_size} tokens"),
        ("trained context", str(info.trained_context or "?")),
        ("RoPE", rope),
        ("FIM tokens", " ".join(t[r] or "-" for r in ("fim_pre", "fim_suf", "fim_mid"))
         + (f" (pad {t['fim_pad']})" if t["fim_pad"] else "")),
        ("repository tokens", f"repo {t['fim_rep']}, file separator {t['fim_sep']}"),
        ("end of generation", " ".join(info.eog) or "-"),
        ("format", f"{chosen.name} ({why}; FIM {'yes' if chosen.has_fim else 'no'}"
         + (f"; the file's tokens say {detected.name}" if detected.name != chosen.name else "")
         + ")"),
    ]  # fmt: skip
    for k, v in rows:
        print(f"{k + ':':<19} {v}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from nearline.tools.demo import run_demo

    return asyncio.run(run_demo(model=args.model, lines=args.lines))


def _overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``--set section.key=value`` (value as JSON when it parses) -> {section: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not eq or not dot or not section or not name:
            raise UserError(f"--set wants section.key=value, got {item!r}")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(section, {})[name] = parsed
    return out


def cmd_bench(args: argparse.Namespace) -> int:
    if args.bench_cmd == "latency":
        from nearline.bench.latency import run_latency

        extra: dict[str, Any] = {}
        if args.settings:
            try:
                extra = json.loads(args.settings)
            except json.JSONDecodeError as exc:
                raise UserError(f"--settings is not valid JSON: {exc}") from None
            if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
                raise UserError('--settings must be nested sections, e.g. {"engine": {...}}')
        return asyncio.run(
            run_latency(model=args.model, file=args.file, max_keystrokes=args.keystrokes,
                        raw=not args.no_raw, out_json=args.json, other_file=args.other_file,
                        llama_server=args.llama_server, server_baseline=not args.no_llama_server,
                        settings_overrides=_overrides(args.set or []), root=args.root, extra_settings=extra,
                        line=args.line)
        )  # fmt: skip
    if args.bench_cmd == "coldstart":
        from nearline.bench.coldstart import run_coldstart

        if args.cold_prompt_tokens is not None and args.cold_prompt_tokens < 0:
            raise UserError("--cold-prompt-tokens must be 0 or more")
        return asyncio.run(
            run_coldstart(model=args.model, root=args.root, file=args.file, sibling=args.sibling,
                          line=args.line, cold_prompt_tokens=args.cold_prompt_tokens,
                          out_json=args.json, threads=args.threads)
        )  # fmt: skip
    if args.bench_cmd == "worker":
        from nearline.bench.worker_bench import run_worker_bench
        from nearline.weights.download import ModelError

        try:
            return run_worker_bench(model=args.model, requests=args.requests,
                                    threads=args.threads, file=args.file, out_json=args.json)  # fmt: skip
        except ModelError as exc:
            raise UserError(str(exc)) from None
    if args.bench_cmd == "soak":
        from nearline.bench.soak import main_soak

        if args.seconds <= 0 or args.rate <= 0:
            raise UserError("--seconds and --rate must be positive")
        return main_soak(args.seconds, args.model, args.rate, args.json)
    if args.bench_cmd == "threads":
        from nearline.bench.threads_bench import run_threads_bench
        from nearline.weights.download import ModelError

        if args.tokens < 16 or args.reps < 1:
            raise UserError("--tokens must be at least 16 and --reps at least 1")
        try:
            return run_threads_bench(model=args.model, n_tokens=args.tokens, reps=args.reps,
                                     out_json=args.json)  # fmt: skip
        except ModelError as exc:
            raise UserError(str(exc)) from None
    if args.bench_cmd == "kernels":
        from nearline.bench.kernels_bench import run_kernels_bench
        from nearline.weights.download import ModelError

        if len(args.wheels) < 1 or args.rounds < 1 or args.tokens < 16 or args.gen < 1:
            raise UserError("give one or more wheels; --rounds, --gen >= 1, --tokens >= 16")
        try:
            return run_kernels_bench(args.wheels, model=args.model, n_prompt=args.tokens,
                                     n_gen=args.gen, rounds=args.rounds, threads=args.threads,
                                     out_json=args.json, pick_file=args.pick)  # fmt: skip
        except (ModelError, RuntimeError) as exc:
            raise UserError(str(exc)) from None
    if args.bench_cmd == "quality":
        from nearline.bench.quality import QualityError, main_quality

        try:
            return main_quality(
                projects=args.projects, project_dirs=args.project_dir or [],
                variants=args.variants, budgets=args.budgets,
                lines_per_category=args.lines_per_category,
                files_per_project=args.files_per_project, seed=args.seed, limit=args.limit,
                max_minutes=args.max_minutes, dry_run=args.dry_run, model=args.model,
                out_json=args.out_json, out_png=args.out_png,
                overrides=_overrides(args.set or []), categories=args.categories,
                language=args.language, models=args.models,
                latency_json=args.latency_json or [],
                merge=args.merge or [], baseline=args.baseline,
            )  # fmt: skip
        except QualityError as exc:
            raise UserError(str(exc)) from None
    if args.bench_cmd == "index":
        try:
            from nearline.bench.index_bench import run as run_index
        except ImportError:
            raise UserError("the index benchmark is not available in this build") from None
        run_index(files=args.files)
        return 0
    raise UserError(f"unknown bench {args.bench_cmd}")


def cmd_stats(args: argparse.Namespace) -> int:
    from nearline.completion.stats import AcceptanceStats, format_report, stats_path

    path = stats_path()
    if not path.is_file():
        print(f"no statistics yet ({path}): they appear once an editor has shown suggestions")
        return 0
    print(format_report(AcceptanceStats(path).data))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nearline", description="Local, offline code completion.")
    p.add_argument("--version", action="version", version=f"nearline {__version__}")
    p.add_argument("--log-level", default=os.environ.get("NEARLINE_LOG", "warning"))
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the language server (stdio by default)")
    s.add_argument("--tcp", metavar="[HOST:]PORT", help="listen on TCP (default host 127.0.0.1)")
    s.add_argument("--stdio", action="store_true", help="use stdio (the default)")
    s.set_defaults(func=cmd_serve)

    def add_model_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--root", help="workspace root (default: the file's directory)")
        sp.add_argument("--model", help="catalog model id")
        sp.add_argument("--model-path", help="a GGUF file")
        sp.add_argument(
            "--composer", help="context composer (path-distance, file-level, ring-buffer, bm25)"
        )
        sp.add_argument("--settings", help="settings as JSON (same shape as initializationOptions)")

    c = sub.add_parser("complete", help="print the suggestion at PATH:LINE:COL (1-based)")
    c.add_argument("location")
    c.add_argument("-v", "--verbose", action="store_true")
    add_model_opts(c)
    c.set_defaults(func=cmd_complete)

    pr = sub.add_parser("prompt", help="print the exact prompt for PATH:LINE:COL")
    pr.add_argument("location")
    pr.add_argument("--json", action="store_true")
    add_model_opts(pr)
    pr.set_defaults(func=cmd_prompt)

    m = sub.add_parser("models", help="list, pull and verify models")
    msub = m.add_subparsers(dest="models_cmd", required=True)
    msub.add_parser("list")
    for name in ("pull", "verify", "path"):
        mp = msub.add_parser(name)
        mp.add_argument(
            "id", nargs="?", default=None, help="catalog id (default: the default model)"
        )
        if name == "pull":
            mp.add_argument("--force", action="store_true")
    ma = msub.add_parser(
        "auto", help="which model `model.id: auto` runs here and why (measures once per machine)"
    )
    ma.add_argument("--remeasure", action="store_true", help="forget earlier measurements")
    ma.add_argument("--threads", type=int, default=None)
    ma.add_argument("--json", action="store_true")
    mi = msub.add_parser("inspect", help="what a GGUF file says: tokens, context, RoPE, format")
    mi.add_argument("file", help="a GGUF file (or a catalog id)")
    mi.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("demo", help="drive `nearline serve` like an editor on the sample project")
    d.add_argument("--model", default=None)
    d.add_argument("--lines", type=int, default=6)
    d.set_defaults(func=cmd_demo)

    st = sub.add_parser("stats", help="acceptance rate of suggestions (local statistics)")
    st.set_defaults(func=cmd_stats)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_cmd", required=True)
    bl = bsub.add_parser("latency", help="replay typing a file through the server")
    bl.add_argument("--model", default=None)
    bl.add_argument("--file", default=None, help="file to type (relative to the project)")
    bl.add_argument(
        "--line", type=int, default=None,
        help="1-based line where typing starts (default: halfway down the file)",
    )  # fmt: skip
    bl.add_argument("--keystrokes", type=int, default=300)
    bl.add_argument("--no-raw", action="store_true", help="skip the raw llama-cpp-python run")
    bl.add_argument("--json", default=None, help="write the numbers to this JSON file")
    bl.add_argument(
        "--project-dir", "--root", dest="root", default=None,
        help="project to use (default: the sample project); needs --file",
    )  # fmt: skip
    bl.add_argument("--other-file", default=None, help="file to switch to and back from")
    bl.add_argument("--llama-server", default=None, help="llama-server binary for the baseline")
    bl.add_argument("--no-llama-server", action="store_true", help="skip the llama-server run")
    bl.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE",
        help="a server setting for this run, e.g. --set model.draftTokens=6",
    )  # fmt: skip
    bc = bsub.add_parser(
        "coldstart",
        help="first suggestion after a restart, in a sibling of a warm file, and truly cold, "
        "each against today's behaviour (no disk states, no short prompt)",
    )
    bc.add_argument("--model", default=None)
    bc.add_argument(
        "--project-dir", "--root", dest="root", default=None,
        help="project to use (default: the sample project); needs --file",
    )  # fmt: skip
    bc.add_argument("--file", default=None, help="the first file (relative to the project)")
    bc.add_argument(
        "--sibling", default=None,
        help="a file of the same package, opened once the first is warm (default: the largest "
        "file of the same extension beside it)",
    )  # fmt: skip
    bc.add_argument("--line", type=int, default=None, help="1-based line (default: halfway down)")
    bc.add_argument(
        "--cold-prompt-tokens", type=int, default=None,
        help="completion.coldPromptTokens for the new behaviour (default: the setting's default)",
    )  # fmt: skip
    bc.add_argument(
        "--threads", type=int, default=None, help="model.threads (default: the server's)"
    )
    bc.add_argument("--json", default=None, help="write the numbers to this JSON file")
    bw = bsub.add_parser("worker", help="per-request cost of running the model in its own process")
    bw.add_argument("--model", default=None)
    bw.add_argument("--requests", type=int, default=60)
    bw.add_argument("--threads", type=int, default=None)
    bw.add_argument("--file", default=None, help="file of the sample project to type")
    bw.add_argument("--json", default=None, help="write the numbers to this JSON file")
    bl.add_argument(
        "--settings",
        default=None,
        help='more server settings as JSON, e.g. {"engine": {"backend": "openai", "url": "…"}}',
    )
    bs = bsub.add_parser("soak", help="typing, request and cancel storms across 20 documents")
    bs.add_argument("--seconds", type=float, default=60.0)
    bs.add_argument("--model", default=None)
    bs.add_argument("--rate", type=float, default=50.0, help="requests per second")
    bs.add_argument("--json", default=None, help="write the numbers to this JSON file")
    bt = bsub.add_parser(
        "threads", help="prompt speed by thread count and OpenMP wait policy, idle and loaded"
    )
    bt.add_argument("--model", default=None)
    bt.add_argument("--tokens", type=int, default=512, help="prompt length")
    bt.add_argument("--reps", type=int, default=3)
    bt.add_argument("--json", default=None, help="write the numbers to this JSON file")
    bk = bsub.add_parser(
        "kernels",
        help="llama.cpp builds (wheels) compared on this CPU: prompt and generation speed",
    )
    bk.add_argument("wheels", nargs="+", metavar="WHEEL", help="llama-cpp-python wheel files")
    bk.add_argument("--model", default=None)
    bk.add_argument("--tokens", type=int, default=512, help="prompt length")
    bk.add_argument("--gen", type=int, default=32, help="tokens generated after the prompt")
    bk.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    bk.add_argument("--threads", type=int, default=None, help="default: CPU cores (at most 8)")
    bk.add_argument("--json", default=None, help="write the numbers to this JSON file")
    bk.add_argument("--pick", default=None, help="write the faster wheel's path to this file")
    bq = bsub.add_parser(
        "quality",
        help="completion quality (Exact Match, Edit Similarity) per context composer on real "
        "projects, the Long Code Arena way",
    )
    bq.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE",
        help="a setting for every variant, e.g. --set context.prefixShare=0.75",
    )  # fmt: skip
    bq.add_argument(
        "--language", default="python", metavar="python|typescript",
        help="the dataset's language: python (PyPI sdists, default) or typescript (npm "
        "tarballs that ship their TypeScript/JavaScript sources)",
    )  # fmt: skip
    bq.add_argument(
        "--projects", default=None, metavar="NAME==VER,...",
        help="PyPI projects whose sdists make the dataset (default: the 10 pinned ones); with "
        "--language typescript npm packages, NAME@VER[:FOLDER] (default: the 8 pinned ones)",
    )  # fmt: skip
    bq.add_argument(
        "--project-dir", action="append", metavar="PATH",
        help="a local project directory instead of sdists (repeatable; no network)",
    )  # fmt: skip
    bq.add_argument(
        "--variants", default=None,
        help="comma-separated, of file-level, path-distance, prefix-suffix, ring-buffer, bm25, "
        "path-distance+suffix (default: these six), oracle (the definitions of the names the "
        "line uses: a ceiling for repository context), path-distance-shared (context.layout "
        "shared)",
    )  # fmt: skip
    bq.add_argument(
        "--budgets", default=None,
        help="token budgets, comma-separated (default 1024; 2048/4096 are slow on a 2-core CPU)",
    )  # fmt: skip
    bq.add_argument(
        "--lines-per-category", type=int, default=2, metavar="N",
        help="inproject and infile lines per completion file (default 2)",
    )  # fmt: skip
    bq.add_argument(
        "--files-per-project", type=int, default=1, metavar="N",
        help="completion files per project (default 1)",
    )  # fmt: skip
    bq.add_argument(
        "--categories", default=None, metavar="inproject,infile",
        help="run only these line categories (drawn as for both, so a seed gives the same "
        "lines); default: both",
    )  # fmt: skip
    bq.add_argument("--seed", type=int, default=0, help="for drawing files and lines (default 0)")
    bq.add_argument(
        "--limit", type=int, default=None, metavar="N",
        help="run only N tasks (lines, taken across all files), each under every variant",
    )  # fmt: skip
    bq.add_argument(
        "--max-minutes", type=float, default=None, metavar="M",
        help="start no new task after M minutes; report what was done (marked partial)",
    )  # fmt: skip
    bq.add_argument(
        "--dry-run", action="store_true",
        help="no model: compose every prompt, report API recall, prompt tokens and the ETA",
    )  # fmt: skip
    bq.add_argument("--model", default=None, help="catalog model id (default: the default model)")
    bq.add_argument(
        "--models", default=None, metavar="ID,ID",
        help="catalog model ids: the whole variant x budget matrix once per model",
    )  # fmt: skip
    bq.add_argument(
        "--latency-json", action="append", metavar="FILE",
        help="a `nearline bench latency --json` report (repeatable, one per model): adds a "
        "chart of Exact Match against warm p95 per keystroke",
    )  # fmt: skip
    bq.add_argument(
        "--merge", action="append", metavar="JSON",
        help="no model run: combine earlier runs' JSON reports (repeatable; runs drawn with the "
        "same seed pair up line by line) into one table, paired tests, criterion and charts",
    )  # fmt: skip
    bq.add_argument(
        "--baseline", default=None, metavar="MODEL:VARIANT:BUDGET",
        help="with --merge: also set every cell against this one, line by line (e.g. the "
        "default configuration against a larger model's file-level run)",
    )  # fmt: skip
    bq.add_argument("--out-json", default=None, help="default: bench-results/quality-*.json")
    bq.add_argument("--out-png", default=None, help="default: next to the JSON file")
    bi = bsub.add_parser("index", help="index a generated tree")
    bi.add_argument("--files", type=int, default=10_000)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"nearline: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
