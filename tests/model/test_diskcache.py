"""KV states on disk (engine/diskcache.py) through the real engine and the small model: a state
read once comes back after a restart (in process and in the model process), only for the same
model and settings; a damaged file is ignored, logged and removed, never used; the directory
stays within its cap, least recently used first; files are the user's alone.

Every test gets its own state directory (tests/conftest.py points ``NEARLINE_KV_DIR`` at it).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nearline.config import Settings, parse_settings
from nearline.engine import diskcache
from nearline.engine.base import GenerationRequest, GenerationResult
from nearline.engine.diskcache import DiskStateCache
from nearline.engine.factory import create_local_engine, engine_builder
from nearline.engine.llama import SAVE_MIN_TOKENS, LlamaEngine
from nearline.engine.worker import ProcessEngine

from ..conftest import SMALL_ID

pytestmark = pytest.mark.model

THREADS = 1  # see test_engine.py


def settings(**model: object) -> Settings:
    s, problems = parse_settings({"model": {"id": SMALL_ID, "threads": THREADS, **model}})
    assert not problems
    return s


def code(tag: str, lines: int = 28) -> str:
    """~400 SmolLM2 tokens: more than SAVE_MIN_TOKENS, a few seconds of prompt reading."""
    return "".join(f"item_{i}_{tag} = compute({i}, '{tag}')\n" for i in range(lines))


TAIL = "item_28_{tag} = compute("


def gen(engine: LlamaEngine | ProcessEngine, text: str) -> GenerationResult:
    return engine.generate(GenerationRequest([(text, False)], 12), threading.Event())


def local(**model: object) -> LlamaEngine:
    eng = create_local_engine(settings(**model))
    assert isinstance(eng, LlamaEngine)
    return eng


def kv_files(d: Path) -> list[Path]:
    return sorted(d.glob("*.kv"))


@pytest.fixture(scope="module")
def cold(small_model: Path) -> Iterator[Callable[[str], GenerationResult]]:
    """Greedy completions read from scratch, with no disk involved: the reference."""
    eng = local(diskCacheMb=0)

    def run(text: str) -> GenerationResult:
        eng.reset()
        res = gen(eng, text)
        assert res.evaluated_tokens == res.prompt_tokens
        return res

    yield run
    eng.close()


@pytest.fixture
def kv_dir() -> Path:
    return Path(os.environ["NEARLINE_KV_DIR"])


def save_state(kv_dir: Path, tag: str, **model: object) -> Path:
    """Warm an engine on ``code(tag)`` and close it (as a server does on exit): one state file."""
    eng = local(diskCacheMb=64, **model)
    try:
        assert eng.warm([(code(tag), False)], threading.Event()) >= SAVE_MIN_TOKENS
    finally:
        eng.close()
    files = kv_files(kv_dir)
    assert len(files) == 1
    return files[0]


def test_a_state_comes_back_after_a_restart_and_gives_the_same_line(
    small_model: Path, kv_dir: Path, cold: Callable[[str], GenerationResult]
) -> None:
    path = save_state(kv_dir, "restart")
    # The user's alone: the directory 0700, the file 0600, no temporary file left.
    assert stat.S_IMODE(kv_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in kv_dir.iterdir()] == [path.name]

    prompt = code("restart") + TAIL.format(tag="restart")
    want = cold(prompt)
    eng = local(diskCacheMb=64)
    try:
        res = gen(eng, prompt)
        n_saved = len(eng.tokenize([(code("restart"), False)]))
        assert res.extra["disk_restored"] >= n_saved - 2
        # Only the tail is read: a handful of tokens instead of the whole prompt.
        assert res.reused_tokens >= n_saved - 2
        assert res.evaluated_tokens <= res.prompt_tokens - n_saved + 3
        assert res.evaluated_tokens * 10 < want.evaluated_tokens
        assert (res.text, res.stop_reason) == (want.text, want.stop_reason)
        info = eng.info()["disk_cache"]
        assert info["restored"] == 1 and info["rejected"] == 0
    finally:
        eng.close()


def test_a_state_is_written_after_a_long_cold_prompt_not_after_a_keystroke(
    small_model: Path, kv_dir: Path
) -> None:
    eng = local(diskCacheMb=64)
    try:
        prompt = code("typing")
        first = gen(eng, prompt)
        assert first.extra.get("disk_saved") is True
        assert eng._disk is not None and eng._disk.flush()
        assert len(kv_files(kv_dir)) == 1
        # Typing on: a few tokens read per request, nothing written.
        for extra in ("item_28", "item_28_typing", "item_28_typing = "):
            assert "disk_saved" not in gen(eng, prompt + extra).extra
        assert eng._disk.flush() and len(kv_files(kv_dir)) == 1
    finally:
        eng.close()


@pytest.mark.parametrize(
    "other",
    [
        {"batchSize": 32},  # another batch size: the numbers in the cache differ
        {"contextLength": 1024},
        {"ropeFreqBase": 50000.0},
    ],
    ids=["batch", "context", "rope"],
)
def test_states_of_other_settings_are_not_used(
    small_model: Path, kv_dir: Path, other: dict[str, object]
) -> None:
    path = save_state(kv_dir, "mismatch")
    eng = local(diskCacheMb=64, **other)
    try:
        res = gen(eng, code("mismatch") + "x = ")
        assert "disk_restored" not in res.extra
        assert res.evaluated_tokens == res.prompt_tokens
        # Not damaged, only someone else's: left for the settings it belongs to.
        assert path.exists()
        assert eng.info()["disk_cache"]["rejected"] == 0
    finally:
        eng.close()


def test_states_of_another_model_file_are_not_used(small_model: Path, kv_dir: Path) -> None:
    """A model given by path is keyed by the file's identity, never by the catalog's hash: a
    copy of the file (another model, as far as the cache can know) does not get its states."""
    save_state(kv_dir, "model")
    copy = kv_dir.parent / "copy.gguf"
    shutil.copyfile(small_model, copy)
    eng = local(diskCacheMb=64, path=str(copy))
    try:
        res = gen(eng, code("model") + "x = ")
        assert "disk_restored" not in res.extra
        assert res.evaluated_tokens == res.prompt_tokens
    finally:
        eng.close()
        copy.unlink()


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _flip(offset_from_end: int) -> Callable[[Path], None]:
    def flip(p: Path) -> None:
        data = bytearray(p.read_bytes())
        data[len(data) - offset_from_end] ^= 0x40
        p.write_bytes(bytes(data))

    return flip


def _flip_token_block(p: Path) -> None:
    s = diskcache.read_header(p)
    data = bytearray(p.read_bytes())
    data[s.payload_offset - 5] ^= 0x01  # inside the last token
    p.write_bytes(bytes(data))


def _garbage_header(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(b"\x00garbage\xff" * 4 + data[40:])


def _empty(p: Path) -> None:
    p.write_bytes(b"")


DAMAGE = {
    "truncated": _truncate,
    "payload-byte": _flip(1000),
    "token-byte": _flip_token_block,
    "garbage-header": _garbage_header,
    "empty": _empty,
}


def test_a_damaged_state_file_is_ignored_logged_and_removed(
    small_model: Path,
    kv_dir: Path,
    cold: Callable[[str], GenerationResult],
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = save_state(kv_dir, "damage")
    original = good.read_bytes()
    prompt = code("damage") + TAIL.format(tag="damage")
    want = cold(prompt)
    eng = local(diskCacheMb=64)
    try:
        for name, damage in DAMAGE.items():
            eng.reset()
            for p in kv_files(kv_dir):
                p.unlink()
            good.write_bytes(original)
            damage(good)
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="nearline.engine.diskcache"):
                res = gen(eng, prompt)
            assert "disk_restored" not in res.extra, name
            assert res.evaluated_tokens == res.prompt_tokens, name
            assert (res.text, res.stop_reason) == (want.text, want.stop_reason), name
            assert any("ignoring KV state file" in r.getMessage() for r in caplog.records), name
            assert eng._disk is not None and eng._disk.flush()
            # The damaged file is gone; the cold read just wrote a good one in its place.
            assert [diskcache.read_header(p).n_tokens > 0 for p in kv_files(kv_dir)] == [True]
        # And the intact file still works in the same engine.
        eng.reset()
        for p in kv_files(kv_dir):
            p.unlink()
        good.write_bytes(original)
        res = gen(eng, prompt)
        assert res.extra.get("disk_restored", 0) > 0 and res.text == want.text
        assert eng.info()["disk_cache"]["rejected"] == len(DAMAGE)
    finally:
        eng.close()


def test_the_directory_stays_under_its_cap_least_recently_used_first(
    small_model: Path, kv_dir: Path
) -> None:
    """SmolLM2 keeps ~23 KB of KV per token: a ~400-token state is ~9.5 MB, so two fit in
    24 MB and not three. Restoring a state makes it recently used: the other one is evicted."""
    eng = local(diskCacheMb=24)
    assert eng._disk is not None
    try:
        names = {}
        for tag in ("p", "q"):
            eng.reset()
            gen(eng, code(tag))
            assert eng._disk.flush()
            (names[tag],) = set(kv_files(kv_dir)) - set(names.values())
        eng.reset()
        assert gen(eng, code("p") + "x = ").extra.get("disk_restored", 0) > 0  # p is used
        eng.reset()
        gen(eng, code("r"))
        assert eng._disk.flush()
        left = kv_files(kv_dir)
        assert names["p"] in left and names["q"] not in left and len(left) == 2
        assert sum(p.stat().st_size for p in left) <= 24 * 2**20
        info = eng.info()["disk_cache"]
        assert info["evicted"] == 1 and info["mb"] <= 24
    finally:
        eng.close()


def test_a_state_larger_than_the_cap_is_not_written(small_model: Path, kv_dir: Path) -> None:
    eng = local(diskCacheMb=2)
    try:
        assert gen(eng, code("big")).extra.get("disk_saved") is not True
        assert kv_files(kv_dir) == []
    finally:
        eng.close()


def test_the_model_process_saves_on_close_and_restores_after_a_restart(
    small_model: Path, kv_dir: Path, cold: Callable[[str], GenerationResult]
) -> None:
    """``engine.isolation: process`` (the default): the model process writes its state (the
    directory comes from the server's environment) and a new one restores it."""
    s = settings(diskCacheMb=64)
    prompt = code("proc") + TAIL.format(tag="proc")
    first = ProcessEngine(*engine_builder(s))
    try:
        assert first.warm([(code("proc"), False)], threading.Event()) >= SAVE_MIN_TOKENS
    finally:
        first.close()
    assert len(kv_files(kv_dir)) == 1
    want = cold(prompt)
    second = ProcessEngine(*engine_builder(s))
    try:
        res = second.generate(GenerationRequest([(prompt, False)], 12), threading.Event())
        assert res.extra.get("disk_restored", 0) > 0
        assert res.evaluated_tokens * 10 < res.prompt_tokens
        assert (res.text, res.stop_reason) == (want.text, want.stop_reason)
        assert second.info()["disk_cache"]["restored"] == 1
    finally:
        second.close()


# -- the file store alone (no model) -------------------------------------------------------------
def test_store_keeps_states_apart_by_key_and_drops_covered_ones(tmp_path: Path) -> None:
    a = DiskStateCache(tmp_path, 1 << 20, {"model": "a"})
    b = DiskStateCache(tmp_path, 1 << 20, {"model": "b"})
    short = list(range(300))
    a.save(short, b"x" * 1000)
    assert b.find(short) is None  # another key never sees it
    found = a.find([*short[:200], 9999])
    assert found is not None and found[1] == 200
    # A state holding all of ``short`` and more makes it redundant.
    a.save([*short, *range(1000, 1100)], b"y" * 1000)
    assert len(list(tmp_path.glob("*.kv"))) == 1
    assert a.covered(short) == 300
    assert a.load(a.find(short)[0]) == bytearray(b"y" * 1000)  # type: ignore[index]


def test_store_writes_in_the_background_and_flushes(tmp_path: Path) -> None:
    c = DiskStateCache(tmp_path / "kv", 1 << 20, {"model": "a"})
    c.save_async(list(range(500)), bytearray(b"z" * 5000))
    assert c.flush(10.0)
    (f,) = (tmp_path / "kv").glob("*.kv")
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "kv").stat().st_mode) == 0o700
    assert c.info()["saved"] == 1


def test_disk_cache_setting_is_validated() -> None:
    s, problems = parse_settings({"model": {"diskCacheMb": 0}})
    assert not problems and s.model.disk_cache_mb == 0
    s, problems = parse_settings({"model.diskCacheMb": -1})
    assert [p.key for p in problems] == ["model.diskCacheMb"] and s.model.disk_cache_mb == 1024
    s, problems = parse_settings({"model": {"diskCacheMb": "big"}})
    assert problems and s.model.disk_cache_mb == 1024


async def test_the_server_reads_an_opened_file_from_disk_after_a_restart(
    small_model: Path, sample_project: Path, kv_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``nearline serve`` (model process, the default): the warm-up of an opened file is
    written; after the server exits and starts again, opening the file restores it."""
    import asyncio

    from lsprotocol import types

    from nearline.tools.client import EditorSession

    monkeypatch.setenv("NEARLINE_STATS_FILE", str(kv_dir.parent / "stats.json"))
    opts = {"model": {"id": SMALL_ID, "threads": THREADS}, "completion": {"debounceMs": 0}}
    path = sample_project / "restart_me.py"
    path.write_text(code("server") + "total = item_", encoding="utf-8")

    async def open_and_warm() -> dict[str, object]:
        session = EditorSession(sample_project, opts)
        assert await session.start_ready() is not None
        try:
            for _ in range(600):
                idx = await session.client.workspace_execute_command_async(
                    types.ExecuteCommandParams(command="nearline.index", arguments=[])
                )
                if idx["state"] == "ready":
                    break
                await asyncio.sleep(0.05)
            session.open(path)
            for _ in range(2400):
                st = await session.status()
                # The state goes to disk on the engine's writer thread after the warm-up: an
                # editor closed at that very moment would lose it, so wait for the file (a
                # second start finds it already there and writes nothing new).
                if st["stats"]["warmups"] >= 1 and kv_files(kv_dir):
                    return st
                await asyncio.sleep(0.05)
            raise AssertionError("no warm-up written to disk")
        finally:
            await session.stop()

    first = await open_and_warm()
    (warm,) = [r for r in first["recent"] if r["source"] == "warm-up"]  # type: ignore[attr-defined]
    assert warm["evaluated"] > SAVE_MIN_TOKENS
    assert kv_files(kv_dir), "nothing written"
    again = await open_and_warm()
    (warm,) = [r for r in again["recent"] if r["source"] == "warm-up"]  # type: ignore[attr-defined]
    assert warm["evaluated"] <= 3
    disk = again["engine"]["disk_cache"]  # type: ignore[index]
    assert disk["restored"] == 1 and disk["rejected"] == 0
