"""Binary detection and gitignore matching (nearline.workspace.ignore)."""

from __future__ import annotations

import random
from pathlib import Path

from pathspec import GitIgnoreSpec

from nearline.workspace.ignore import (
    GitPatterns,
    IgnoreRules,
    decode_text,
    ignore_file_scope,
    is_ignore_file,
)


def test_decode_text() -> None:
    assert decode_text(b"hello\n") == "hello\n"
    assert decode_text(b"\xef\xbb\xbfbom") == "bom"
    assert decode_text(b"abc\0def") is None
    assert decode_text("caf\u00e9".encode("latin-1")) is None
    assert decode_text(b"x" * 9000 + b"\0") == "x" * 9000 + "\0"  # NUL past 8 KiB is allowed


def test_git_patterns_agree_with_pathspec() -> None:
    rng = random.Random(7)
    atoms = ["a", "b", "*", "**", "?", "[ab]", "x.py", "*.log", "build", "!", "/", ".d"]
    names = ["a", "b", "x.py", "y.log", "build", "ab", ".d"]
    for _ in range(400):
        lines = [
            "".join(rng.choice(atoms) for _ in range(rng.randint(1, 4)))
            for _ in range(rng.randint(1, 5))
        ]
        fast = GitPatterns.from_lines(lines)  # invalid lines are skipped, not fatal
        exact = fast.exact
        assert isinstance(exact, GitIgnoreSpec)
        for _ in range(20):
            p = "/".join(rng.choice(names) for _ in range(rng.randint(1, 3)))
            if rng.random() < 0.3:
                p += "/"
            assert fast.check(p) == exact.check_file(p).include, (lines, p)


def test_ignore_rules_layers(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / ".git" / "info").mkdir(parents=True)
    (root / ".git" / "info" / "exclude").write_text("*.scratch\n")
    (root / ".gitignore").write_text("*.log\n!keep.log\nbuild/\n")
    (root / "sub").mkdir()
    (root / "sub" / ".gitignore").write_text("/local.txt\n!*.scratch\n*.tmp\n!important.tmp\n")
    rules = IgnoreRules(root, exclude=["docs/**"])
    assert rules.in_git
    assert rules.is_ignored("a.log", False)
    assert not rules.is_ignored("keep.log", False)
    assert rules.is_ignored("build", True)
    assert not rules.is_ignored("build", False)  # `build/` only matches directories
    assert rules.is_excluded("build/x.py")
    assert rules.is_excluded("build/keep.log")  # can't re-include below an excluded dir
    assert rules.is_ignored("sub/local.txt", False)
    assert not rules.is_ignored("local.txt", False)
    assert rules.is_ignored("sub/a.tmp", False)
    assert not rules.is_ignored("sub/important.tmp", False)
    assert rules.is_ignored("x.scratch", False)  # info/exclude
    assert not rules.is_ignored("sub/x.scratch", False)  # .gitignore beats info/exclude
    assert rules.is_excluded("docs/a/b.md")  # user exclude
    assert rules.is_ignored(".git", True)


def test_heavy_dirs_only_outside_git(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert IgnoreRules(plain).is_ignored("node_modules", True)
    assert IgnoreRules(plain).is_ignored("a/__pycache__", True)
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert not IgnoreRules(repo).is_ignored("node_modules", True)


def test_root_inside_repo_uses_parent_gitignores(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git" / "info").mkdir(parents=True)
    (repo / ".gitignore").write_text("*.gen\npkg/vendor/\n")
    (repo / ".git" / "info" / "exclude").write_text("*.local\n")
    (repo / "pkg").mkdir()
    rules = IgnoreRules(repo / "pkg")
    assert rules.is_ignored("a.gen", False)
    assert rules.is_ignored("vendor", True)
    assert rules.is_ignored("x.local", False)
    assert not rules.is_ignored("a.py", False)


def test_ignore_file_helpers() -> None:
    assert is_ignore_file(".gitignore") and is_ignore_file("a/b/.gitignore")
    assert is_ignore_file(".git/info/exclude") and is_ignore_file("sub/.git/info/exclude")
    assert not is_ignore_file("a.gitignore") and not is_ignore_file("info/exclude")
    assert ignore_file_scope("a/b/.gitignore") == "a/b"
    assert ignore_file_scope(".gitignore") == ""
    assert ignore_file_scope(".git/info/exclude") == ""
    assert ignore_file_scope("sub/.git/info/exclude") == "sub"
