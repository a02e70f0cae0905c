from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample_project"
SMALL_ID = "smollm2-135m-instruct-q4_1"
DEFAULT_ID = "qwen2.5-coder-0.5b-instruct-q4_k_m"
SERVER_CMD = [sys.executable, "-m", "nearline", "serve"]


def model_path(model_id: str) -> Path:
    """A pulled, verified model. The test command pulls both models first; a missing one is a
    setup error with the fix in the message, not a skip."""
    from nearline.weights.catalog import load_catalog
    from nearline.weights.download import ModelError, ensure_verified

    entry = load_catalog().get(model_id)
    try:
        return ensure_verified(entry)
    except ModelError as exc:
        pytest.fail(f"{exc}", pytrace=False)


@pytest.fixture(scope="session")
def small_model() -> Path:
    return model_path(SMALL_ID)


@pytest.fixture(scope="session")
def default_model() -> Path:
    return model_path(DEFAULT_ID)


@pytest.fixture
def sample_project(tmp_path: Path) -> Path:
    """A private copy of the sample project (tests may edit it)."""
    dest = tmp_path / "sample_project"
    shutil.copytree(SAMPLE, dest)
    return dest


# KV states on disk (engine/diskcache.py) stay out of the user's cache directory, and no test
# restores what another test saved: engines built outside a test (module fixtures) use this
# session's directory, each test (and the servers it starts) a fresh one. Server fixtures take
# their environment from server_env() when they are defined, but read it when they start the
# server: the fixture below points every such environment at the test's directory.
os.environ["NEARLINE_KV_DIR"] = tempfile.mkdtemp(prefix="nearline-test-kv-")
_SERVER_ENVS: list[dict[str, str]] = []


@pytest.fixture(autouse=True)
def _private_kv_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    kv = str(tmp_path_factory.mktemp("kv"))
    monkeypatch.setenv("NEARLINE_KV_DIR", kv)
    for env in _SERVER_ENVS:
        env["NEARLINE_KV_DIR"] = kv


# Servers started by tests keep their acceptance statistics out of the user's state directory.
_TEST_STATS = os.path.join(tempfile.gettempdir(), f"nearline-test-stats-{os.getpid()}.json")


def server_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "NEARLINE_STATS_FILE": _TEST_STATS, **extra}
    env.setdefault("PYTHONUNBUFFERED", "1")
    if "NEARLINE_KV_DIR" not in extra:
        _SERVER_ENVS.append(env)
    return env


@pytest.fixture(scope="session")
def served_pool(tmp_path_factory: pytest.TempPathFactory):
    """Completion servers for the remote-engine tests (tests/servers.py), started on first use
    by kind and shared by every test of the session."""
    from .servers import ServedPool

    pool = ServedPool(tmp_path_factory.mktemp("served"))
    yield pool
    pool.stop()
