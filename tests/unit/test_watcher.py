"""IndexWatcher: debounced, coalesced incremental updates from watchdog."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nearline.workspace.index import WorkspaceIndex
from nearline.workspace.watcher import IndexWatcher


def write(root: Path, rel: str, text: str = "x = 1\n") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / ".git" / "info").mkdir(parents=True)
    return root


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: list[set[Path]] = []

    def __call__(self, changed: set[Path]) -> None:
        with self.lock:
            self.batches.append(set(changed))

    @property
    def all(self) -> set[Path]:
        with self.lock:
            return set().union(*self.batches) if self.batches else set()


def disk_files(root: Path) -> set[str]:
    out = set()
    for dp, dns, fns in os.walk(root):
        dns[:] = [d for d in dns if d != ".git"]
        for f in fns:
            out.add(os.path.relpath(os.path.join(dp, f), root).replace(os.sep, "/"))
    return out


def test_created_file_is_picked_up(repo: Path) -> None:
    write(repo, "a.py")
    idx = WorkspaceIndex([repo])
    idx.scan()
    rec = Recorder()
    with IndexWatcher(idx, rec) as w:
        assert w.running
        t0 = time.monotonic()
        new = write(repo, "pkg/new.py", "new = 1\n")
        assert wait_for(lambda: idx.get(new) is not None, 5.0)
        assert time.monotonic() - t0 < 5.0
        assert wait_for(lambda: new in rec.all, 2.0)
        assert idx.text(new) == "new = 1\n"
    assert not w.running


def test_modify_delete_move(repo: Path) -> None:
    a = write(repo, "a.py", "a = 1\n")
    b = write(repo, "b.py", "b = 1\n")
    idx = WorkspaceIndex([repo])
    idx.scan()
    with IndexWatcher(idx) as w:
        a.write_text("a = 2\n")
        assert wait_for(lambda: idx.text(a) == "a = 2\n")
        b.unlink()
        assert wait_for(lambda: idx.get(b) is None)
        c = repo / "sub" / "c.py"
        c.parent.mkdir()
        a.rename(c)
        assert wait_for(lambda: idx.get(a) is None and idx.get(c) is not None)
        assert w.wait_idle(5.0)
    assert [e.rel for e in idx.files()] == ["sub/c.py"]


def test_debounce_coalesces_bursts(repo: Path) -> None:
    idx = WorkspaceIndex([repo])
    idx.scan()
    rec = Recorder()
    with IndexWatcher(idx, rec, quiet_s=0.3) as w:
        p = write(repo, "hot.py", "v = 0\n")
        for i in range(20):
            p.write_text(f"v = {i}\n")
            time.sleep(0.005)
        assert w.wait_idle(5.0)
    assert idx.text(p) == "v = 19\n"
    # 20 rapid saves within the quiet window collapse into very few batches
    assert w.batches <= 3
    assert len(rec.batches) <= 3


def test_max_latency_under_continuous_events(repo: Path) -> None:
    idx = WorkspaceIndex([repo])
    idx.scan()
    with IndexWatcher(idx, quiet_s=0.5, max_latency_s=0.6):
        target = write(repo, "target.py", "t = 1\n")
        noise = repo / "noise.py"
        t0 = time.monotonic()
        seen = None
        # events never stop arriving for 0.5 s, yet a batch runs by max latency
        while time.monotonic() - t0 < 2.5:
            noise.write_text(str(time.monotonic()))
            if seen is None and idx.get(target) is not None:
                seen = time.monotonic() - t0
            time.sleep(0.02)
        assert seen is not None and seen < 2.0


def test_storm_settles_with_exactly_the_files_on_disk(repo: Path) -> None:
    write(repo, ".gitignore", "*.log\n")
    for i in range(50):
        write(repo, f"old/f{i}.py", f"old = {i}\n")
    idx = WorkspaceIndex([repo])
    idx.scan()
    rec = Recorder()
    with IndexWatcher(idx, rec) as w:
        t0 = time.monotonic()
        # a `git checkout`-like storm: 2,000 new files in many directories,
        # rewrites, deletions, a directory move, ignored noise and .git churn
        for i in range(2000):
            write(repo, f"src/m{i % 40}/f{i}.py", f"v = {i}\n")
            if i % 10 == 0:
                write(repo, f"src/m{i % 40}/noise{i}.log", "ignored\n")
            if i % 100 == 0:
                write(repo, f".git/objects/{i % 256:02x}/obj{i}", "blob")
        for i in range(0, 2000, 7):
            write(repo, f"src/m{i % 40}/f{i}.py", f"v = {i} # changed\n")
        for i in range(0, 2000, 13):
            (repo / f"src/m{i % 40}/f{i}.py").unlink()
        shutil.move(str(repo / "old"), str(repo / "moved"))
        assert w.wait_idle(30.0, settle_s=0.5)
        settle = time.monotonic() - t0
    expected = {r for r in disk_files(repo) if not r.endswith(".log")}
    assert {e.rel for e in idx.files()} == expected
    assert len(expected) == 1 + 50 + 2000 - len(range(0, 2000, 13))
    for i in (7, 14, 700):
        assert idx.text(repo / f"src/m{i % 40}/f{i}.py") == f"v = {i} # changed\n"
    assert settle < 30.0
    # batched: far fewer refreshes than events
    assert w.batches < w.events / 20
    assert any(p.name == "f1.py" for p in rec.all)


def test_gitignore_change_via_watcher(repo: Path) -> None:
    write(repo, "src/a.py")
    write(repo, "src/b.js")
    idx = WorkspaceIndex([repo])
    idx.scan()
    with IndexWatcher(idx) as w:
        write(repo, "src/.gitignore", "*.py\n")
        assert wait_for(lambda: idx.get(repo / "src" / "a.py") is None)
        (repo / "src" / ".gitignore").unlink()
        assert wait_for(lambda: idx.get(repo / "src" / "a.py") is not None)
        assert w.wait_idle(5.0)


def test_multi_root_watch(tmp_path: Path) -> None:
    r1 = tmp_path / "one"
    r2 = tmp_path / "two"
    r1.mkdir()
    r2.mkdir()
    idx = WorkspaceIndex([r1, r2])
    idx.scan()
    with IndexWatcher(idx):
        a = write(r1, "a.py")
        b = write(r2, "b.py")
        assert wait_for(lambda: idx.get(a) is not None and idx.get(b) is not None)


def test_flush_and_stop_without_start(repo: Path) -> None:
    idx = WorkspaceIndex([repo])
    w = IndexWatcher(idx)
    assert w.flush() == set()
    w.stop()  # never started: harmless
    w._add(os.fspath(write(repo, "a.py")))
    assert w.flush() == {repo / "a.py"}
    # .git internals are dropped at the door; info/exclude is let through
    w._add(os.fspath(repo / ".git" / "index"))
    w._add(os.fspath(repo / ".git"))
    assert not w._pending
    w._add(os.fspath(repo / ".git" / "info" / "exclude"))
    assert len(w._pending) == 1


def test_queue_overflow_rescans_everything(repo: Path) -> None:
    """Events lost to an inotify overflow (watchdog only logs it) are made up by a rescan."""
    import logging

    write(repo, "a.py")
    idx = WorkspaceIndex([repo])
    idx.scan()
    # Changes the watcher never hears about: made before it starts watching.
    write(repo, "lost/b.py")
    (repo / "a.py").unlink()
    with IndexWatcher(idx, quiet_s=0.05) as w:
        assert not wait_for(lambda: idx.get(repo / "lost" / "b.py") is not None, 0.5)
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        assert wait_for(lambda: {f.rel for f in idx.files()} == {"lost/b.py"})
        assert w.overflows == 1
    # A stopped watcher no longer listens.
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed")
    assert w.overflows == 1
