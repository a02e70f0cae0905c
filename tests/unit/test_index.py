"""WorkspaceIndex: scanning rules, secrets, overlays, refresh, multi-root."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from nearline.config import IndexSettings
from nearline.workspace.index import FileEntry, WorkspaceIndex, language_for

GH_TOKEN = "gh" + "p_" + "FAKE" * 9
PEM = (
    "-----BEGIN "
    + "EC PRIVATE KEY-----\n"
    + "\n".join(["FAKE" * 16] * 8)
    + "\n-----END EC "
    + "PRIVATE KEY-----\n"
)

needs_symlinks = pytest.mark.skipif(sys.platform == "win32", reason="symlinks")


def write(root: Path, rel: str, text: str | bytes = "x = 1\n") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def rels(index: WorkspaceIndex) -> list[str]:
    return [e.rel for e in index.files()]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / ".git" / "info").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


# --------------------------------------------------------------------------- #
# scanning
# --------------------------------------------------------------------------- #


def test_basic_scan_entries(repo: Path) -> None:
    write(repo, "b.py", "print('b')\n")
    write(repo, "a/z.js", "let z = 1;\n")
    write(repo, "a/y.md", "# y\n")
    write(repo, "c.rs", "fn main() {}\n")
    idx = WorkspaceIndex([repo])
    idx.scan()
    assert rels(idx) == ["a/y.md", "a/z.js", "b.py", "c.rs"]
    e = idx.get(repo / "b.py")
    assert isinstance(e, FileEntry)
    assert e.path == repo / "b.py" and e.root == repo and e.language == "python"
    assert e.size == len("print('b')\n") and e.mtime > 0
    assert e.sha256 == sha("print('b')\n")
    assert idx.text(repo / "b.py") == "print('b')\n"
    assert [f.rel for f in idx.files("javascript")] == ["a/z.js"]
    assert idx.get(repo / ".git" / "HEAD") is None  # .git is never indexed
    assert idx.version > 0


def test_languages() -> None:
    assert language_for("x.py") == "python"
    assert language_for("a/b.tsx") == "typescriptreact"
    assert language_for("Makefile") == "makefile"
    assert language_for("x.CPP") == "cpp"
    assert language_for("noext") == "text"
    assert language_for("go.mod.unknownext") == "text"


def test_nested_gitignore_with_negation(repo: Path) -> None:
    write(repo, ".gitignore", "*.log\n!keep.log\nbuild/\n")
    write(repo, "app.log")
    write(repo, "keep.log")
    write(repo, "build/out.py")
    write(repo, "build/keep.log")  # parent dir excluded: negation can't rescue it
    write(repo, "src/.gitignore", "/local.txt\n*.tmp\n!important.tmp\n!debug.log\n")
    write(repo, "src/local.txt")
    write(repo, "src/deep/local.txt")  # `/local.txt` is anchored to src/
    write(repo, "src/a.tmp")
    write(repo, "src/important.tmp")
    write(repo, "src/debug.log")  # re-included by the deeper .gitignore
    write(repo, "src/other.log")
    write(repo, "local.txt")
    idx = WorkspaceIndex([repo])
    idx.scan()
    assert rels(idx) == [
        ".gitignore",
        "keep.log",
        "local.txt",
        "src/.gitignore",
        "src/debug.log",
        "src/deep/local.txt",
        "src/important.tmp",
    ]


def test_git_info_exclude(repo: Path) -> None:
    (repo / ".git" / "info" / "exclude").write_text("scratch/\n*.bak\n")
    write(repo, "scratch/a.py")
    write(repo, "x.bak")
    write(repo, "x.py")
    idx = WorkspaceIndex([repo])
    idx.scan()
    assert rels(idx) == ["x.py"]


def test_user_excludes(repo: Path) -> None:
    write(repo, ".gitignore", "gen/\n")
    write(repo, "docs/a.md")
    write(repo, "src/a.py")
    write(repo, "src/a_test.py")
    write(repo, "gen/api.py")
    settings = IndexSettings(exclude=["docs/", "*_test.py", "!gen/"])
    idx = WorkspaceIndex([repo], settings)
    idx.scan()
    # `!gen/` in the user's excludes re-includes a gitignored directory
    assert rels(idx) == [".gitignore", "gen/api.py", "src/a.py"]


def test_heavy_dirs_skipped_without_git(tmp_path: Path) -> None:
    write(tmp_path, "node_modules/x/index.js")
    write(tmp_path, ".venv/lib/site.py")
    write(tmp_path, "src/app.py")
    idx = WorkspaceIndex([tmp_path])
    idx.scan()
    assert rels(idx) == ["src/app.py"]


def test_binary_and_oversize(repo: Path) -> None:
    write(repo, "nul.dat", b"abc\0def")
    write(repo, "latin1.txt", "caf\u00e9".encode("latin-1"))
    write(repo, "big.py", "x" * 200)
    write(repo, "ok.py", "y = 2\n")
    write(repo, "utf8.txt", "caf\u00e9\n")
    idx = WorkspaceIndex([repo], IndexSettings(max_file_bytes=100))
    idx.scan()
    assert rels(idx) == ["ok.py", "utf8.txt"]
    assert idx.last_scan["skipped_binary"] == 2
    assert idx.last_scan["skipped_oversize"] == 1


def test_a_notebook_is_never_indexed_as_code(repo: Path) -> None:
    """A notebook's file is JSON around its cells; the editor sends the cells themselves."""
    write(repo, "analysis.ipynb", '{"cells": [{"source": ["x = 1"]}], "nbformat": 4}\n')
    write(repo, "ok.py", "y = 2\n")
    idx = WorkspaceIndex([repo])
    idx.scan()
    assert rels(idx) == ["ok.py"]
    assert idx.last_scan["skipped_container"] == 1


@needs_symlinks
def test_symlinks(tmp_path: Path, repo: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "secret_plans.py", "plans = 1\n")
    write(repo, "real/inside.py", "inside = 1\n")
    os.symlink(outside / "secret_plans.py", repo / "out_link.py")
    os.symlink(outside, repo / "out_dir")
    os.symlink(repo / "real" / "inside.py", repo / "in_link.py")
    os.symlink(repo / "real", repo / "real_alias")  # dir link inside: not followed
    os.symlink(repo, repo / "real" / "loop")  # loop
    os.symlink(repo / "nowhere.py", repo / "broken.py")
    idx = WorkspaceIndex([repo])
    idx.scan()
    assert rels(idx) == ["in_link.py", "real/inside.py"]
    assert idx.text(repo / "in_link.py") == "inside = 1\n"
    assert idx.get(repo / "out_link.py") is None
    assert idx.text(repo / "out_dir" / "secret_plans.py") is None


@needs_symlinks
def test_symlink_target_change_refreshes_link(repo: Path) -> None:
    target = write(repo, "real.py", "v = 1\n")
    os.symlink(target, repo / "alias.py")
    idx = WorkspaceIndex([repo])
    idx.scan()
    target.write_text("v = 2\n")
    changed = idx.refresh([target])
    assert changed == {repo / "real.py", repo / "alias.py"}
    assert idx.text(repo / "alias.py") == "v = 2\n"


def test_secret_paths_never_read(repo: Path) -> None:
    for rel in [
        ".env",
        ".env.local",
        ".envrc",
        "id_rsa",
        "tls/server.pem",
        "tls/server.key",
        "secrets/db.yaml",
        "config/credentials.json",
        ".npmrc",
        "keystore.p12",
    ]:
        write(repo, rel, "TOP_SECRET_VALUE_123\n")
    write(repo, "app.py", "import os\n")
    idx = WorkspaceIndex([repo])
    idx.scan()
    assert rels(idx) == ["app.py"]
    assert idx.text(repo / ".env") is None
    # an open .env document is still never handed out
    idx.set_overlay(repo / ".env", "KEY=" + "x" * 30)
    assert idx.text(repo / ".env") is None
    assert idx.get(repo / ".env") is None


def test_secret_content_redacted_and_key_files_dropped(repo: Path) -> None:
    code = f"import os\n\nGITHUB_TOKEN = '{GH_TOKEN}'\n\ndef main():\n    return 1\n"
    write(repo, "settings.py", code)
    write(repo, "key.txt", PEM)  # not a secret *path*, but the content is a key
    idx = WorkspaceIndex([repo])
    idx.scan()
    assert rels(idx) == ["settings.py"]
    text = idx.text(repo / "settings.py")
    assert text is not None
    assert GH_TOKEN not in text
    assert "GITHUB_TOKEN = '<redacted>'" in text
    assert "def main():" in text
    e = idx.get(repo / "settings.py")
    assert e is not None and e.sha256 == sha(text)
    assert idx.last_scan["skipped_secret_content"] == 1


def test_rescan_reuses_and_removes(repo: Path) -> None:
    a = write(repo, "a.py", "a = 1\n")
    write(repo, "b.py", "b = 1\n")
    idx = WorkspaceIndex([repo])
    idx.scan()
    v = idx.version
    idx.scan()
    assert idx.version == v  # nothing changed, no bump
    b = repo / "b.py"
    b.unlink()
    a.write_text("a = 22\n")
    idx.scan()
    assert rels(idx) == ["a.py"]
    assert idx.text(a) == "a = 22\n"
    assert idx.version > v


def test_scan_progress_and_cancel(repo: Path) -> None:
    for i in range(50):
        write(repo, f"d{i % 5}/f{i}.py", f"v = {i}\n")
    idx = WorkspaceIndex([repo])
    calls: list[tuple[int, int | None]] = []
    idx.scan(progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (50, 50)
    cancel = threading.Event()
    cancel.set()
    idx2 = WorkspaceIndex([repo])
    idx2.scan(cancel=cancel)
    assert idx2.files() == []


# --------------------------------------------------------------------------- #
# text cache consistency
# --------------------------------------------------------------------------- #


def test_text_consistent_with_hash_after_cache_miss(repo: Path) -> None:
    p = write(repo, "a.py", "old = 1\n")
    idx = WorkspaceIndex([repo], text_cache_bytes=0)  # never cache
    idx.scan()
    assert idx.text(p) == "old = 1\n"
    v = idx.version
    p.write_text("new = 2\n")  # changed behind the index's back
    assert idx.text(p) == "new = 2\n"
    e = idx.get(p)
    assert e is not None and e.sha256 == sha("new = 2\n")
    assert idx.version > v


# --------------------------------------------------------------------------- #
# overlays & version
# --------------------------------------------------------------------------- #


def test_overlay_wins_and_is_redacted(repo: Path) -> None:
    p = write(repo, "a.py", "disk = 1\n")
    idx = WorkspaceIndex([repo])
    idx.scan()
    v0 = idx.version
    idx.set_overlay(p, "unsaved = 2\n")
    assert idx.text(p) == "unsaved = 2\n"
    e = idx.get(p)
    assert e is not None and e.sha256 == sha("unsaved = 2\n")
    assert idx.version > v0
    idx.set_overlay(p, f"import os\n\ntok = '{GH_TOKEN}'\n\ndef main():\n    return tok\n")
    text = idx.text(p)
    assert text is not None and GH_TOKEN not in text and "<redacted>" in text
    # pasting a whole private key into an open document hides it entirely
    idx.set_overlay(p, PEM)
    assert idx.text(p) is None and idx.get(p) is None
    assert "a.py" not in rels(idx)
    idx.drop_overlay(p)
    assert idx.text(p) == "disk = 1\n"
    assert rels(idx) == ["a.py"]


def test_overlay_for_unsaved_new_file(repo: Path) -> None:
    write(repo, ".gitignore", "*.gen.py\n")
    idx = WorkspaceIndex([repo])
    idx.scan()
    new = repo / "new.py"
    idx.set_overlay(new, "brand = 'new'\n")
    assert "new.py" in rels(idx)
    ign = repo / "x.gen.py"
    idx.set_overlay(ign, "generated = 1\n")
    assert idx.get(ign) is None  # ignored: not in files()...
    assert idx.text(ign) == "generated = 1\n"  # ...but its text is the user's own
    idx.drop_overlay(new)
    assert "new.py" not in rels(idx)


def test_version_and_current_document(repo: Path) -> None:
    a = write(repo, "a.py", "a = 1\n")
    b = write(repo, "b.py", "b = 1\n")
    idx = WorkspaceIndex([repo])
    idx.scan()
    idx.set_current(a)
    v = idx.version
    idx.set_overlay(a, "a = 2\n")
    idx.set_overlay(a, "a = 3\n")
    assert idx.version == v  # edits to the current document don't bump
    idx.set_overlay(b, "b = 2\n")
    assert idx.version == v + 1  # another document's overlay does
    idx.set_overlay(b, "b = 2\n")
    assert idx.version == v + 1  # same text: no bump
    idx.set_current(b)
    assert idx.version == v + 2  # a's pending edits are published on switch
    idx.set_current(a)
    assert idx.version == v + 2  # nothing pending for b


def test_tokens_for_cached_by_hash(repo: Path) -> None:
    a = write(repo, "a.py", "same text here\n")
    b = write(repo, "b.py", "same text here\n")
    calls: list[str] = []

    def count(text: str) -> int:
        calls.append(text)
        return len(text.split())

    idx = WorkspaceIndex([repo], count_tokens=count)
    idx.scan()
    assert idx.get(a).tokens is None  # type: ignore[union-attr]
    assert idx.tokens_for(a) == 3
    assert idx.tokens_for(b) == 3
    assert idx.tokens_for(a) == 3
    assert len(calls) == 1
    assert idx.get(a).tokens == 3  # type: ignore[union-attr]
    assert idx.tokens_for(repo / "missing.py") == 0
    # default counter: a rough estimate, no model needed
    assert WorkspaceIndex([repo]).tokens_for(a) == 0  # not scanned yet
    idx2 = WorkspaceIndex([repo])
    idx2.scan()
    assert idx2.tokens_for(a) > 0


# --------------------------------------------------------------------------- #
# refresh
# --------------------------------------------------------------------------- #


def test_refresh_create_modify_delete_move(repo: Path) -> None:
    a = write(repo, "a.py", "a = 1\n")
    idx = WorkspaceIndex([repo])
    idx.scan()

    b = write(repo, "pkg/b.py", "b = 1\n")
    assert idx.refresh([b]) == {b}
    assert rels(idx) == ["a.py", "pkg/b.py"]

    a.write_text("a = 2\n")
    assert idx.refresh([a]) == {a}
    assert idx.text(a) == "a = 2\n"

    os.utime(a, None)  # touch only: entry refreshed, but nothing *changed*
    assert idx.refresh([a]) == set()

    c = repo / "pkg" / "c.py"
    b.rename(c)
    assert idx.refresh([b, c]) == {b, c}
    assert rels(idx) == ["a.py", "pkg/c.py"]

    a.unlink()
    assert idx.refresh([a]) == {a}
    assert rels(idx) == ["pkg/c.py"]

    # a path outside every root is ignored
    assert idx.refresh([repo.parent / "elsewhere.py"]) == set()


def test_refresh_directories(repo: Path) -> None:
    write(repo, "keep.py")
    idx = WorkspaceIndex([repo])
    idx.scan()
    for i in range(5):
        write(repo, f"newdir/sub/f{i}.py", f"f = {i}\n")
    changed = idx.refresh([repo / "newdir"])  # only the directory event
    assert len(changed) == 5
    (repo / "newdir").rename(repo / "moved")
    changed = idx.refresh([repo / "newdir", repo / "moved"])
    assert len(changed) == 10
    assert rels(idx) == ["keep.py"] + [f"moved/sub/f{i}.py" for i in range(5)]
    import shutil

    shutil.rmtree(repo / "moved")
    assert len(idx.refresh([repo / "moved"])) == 5
    assert rels(idx) == ["keep.py"]


def test_refresh_gitignore_change_reevaluates_subtree(repo: Path) -> None:
    write(repo, "src/a.py")
    write(repo, "src/b.js")
    write(repo, "other/c.py")
    idx = WorkspaceIndex([repo])
    idx.scan()
    gi = write(repo, "src/.gitignore", "*.py\n")
    changed = idx.refresh([gi])
    assert repo / "src" / "a.py" in changed
    assert rels(idx) == ["other/c.py", "src/.gitignore", "src/b.js"]
    gi.write_text("*.js\n")
    idx.refresh([gi])
    assert rels(idx) == ["other/c.py", "src/.gitignore", "src/a.py"]
    gi.unlink()
    idx.refresh([gi])
    assert rels(idx) == ["other/c.py", "src/a.py", "src/b.js"]
    # info/exclude governs the whole repository
    (repo / ".git" / "info" / "exclude").write_text("*.py\n")
    idx.refresh([repo / ".git" / "info" / "exclude"])
    assert rels(idx) == ["src/b.js"]


def test_refresh_ignored_and_secret_paths(repo: Path) -> None:
    write(repo, ".gitignore", "*.log\n")
    idx = WorkspaceIndex([repo])
    idx.scan()
    log = write(repo, "x.log")
    env = write(repo, ".env", "A=1\n")
    binf = write(repo, "x.bin", b"\0\0")
    assert idx.refresh([log, env, binf]) == set()
    assert rels(idx) == [".gitignore"]


# --------------------------------------------------------------------------- #
# multi-root
# --------------------------------------------------------------------------- #


def test_multi_root(tmp_path: Path) -> None:
    r1 = tmp_path / "one"
    r2 = tmp_path / "two"
    write(r1, ".gitignore", "*.tmp\n")
    write(r1, "main.py", "one = 1\n")
    write(r1, "x.tmp")
    write(r2, "main.py", "two = 2\n")
    write(r2, "x.tmp")  # r1's .gitignore doesn't apply here
    (r1 / ".git").mkdir()
    idx = WorkspaceIndex([r1, r2])
    idx.scan()
    files = idx.files()
    assert [(e.rel, e.root.name) for e in files] == [
        (".gitignore", "one"),
        ("main.py", "one"),
        ("main.py", "two"),
        ("x.tmp", "two"),
    ]
    assert idx.text(r2 / "main.py") == "two = 2\n"
    new = write(r2, "new.py")
    assert idx.refresh([new]) == {new}
    assert idx.get(new).root == r2  # type: ignore[union-attr]


def test_nested_root_owns_its_files(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    inner = outer / "inner"
    write(outer, "o.py")
    write(inner, "i.py")
    idx = WorkspaceIndex([outer, inner])
    idx.scan()
    assert [(e.rel, e.root.name) for e in idx.files()] == [("i.py", "inner"), ("o.py", "outer")]


@needs_symlinks
def test_root_given_through_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    write(real, "a.py", "a = 1\n")
    link = tmp_path / "link"
    os.symlink(real, link)
    idx = WorkspaceIndex([link])
    idx.scan()
    assert idx.text(link / "a.py") == "a = 1\n"
    assert idx.get(real / "a.py") is not None


def test_concurrent_readers_during_scan(repo: Path) -> None:
    for i in range(300):
        write(repo, f"d{i % 7}/f{i}.py", f"v = {i}\n" * 20)
    idx = WorkspaceIndex([repo])
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                for e in idx.files()[:20]:
                    t = idx.text(e.path)
                    assert t is None or sha(t) == idx.get(e.path).sha256  # type: ignore[union-attr]
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    th = threading.Thread(target=reader)
    th.start()
    t0 = time.monotonic()
    idx.scan()
    stop.set()
    th.join()
    assert not errors
    assert len(idx.files()) == 300
    assert time.monotonic() - t0 < 30
