"""Prompt assembly: segments, breakdown, FIM and repository framing, sanitizing; plus the engine's
UTF-8 accumulator (pure Python, no model)."""

from __future__ import annotations

import json

import pytest

from nearline.completion.prompt import Prompt, PromptPart, RepoFile, file_parts, repo_parts
from nearline.engine.llama import Utf8Accumulator
from nearline.engine.remote import sanitize
from nearline.weights.catalog import PromptFormat, load_catalog

QWEN = load_catalog().get("qwen2.5-coder-0.5b-instruct-q4_k_m").format
STAR = load_catalog().get("smollm2-135m-instruct-q4_1").format
PLAIN = PromptFormat(
    name="plain",
    fim_prefix=None,
    fim_suffix=None,
    fim_middle=None,
    repo_name=None,
    file_sep=None,
    stop=("</s>",),
)


def test_catalog_formats() -> None:
    assert QWEN.name == "qwen2.5-coder" and QWEN.has_fim
    assert STAR.name == "starcoder2" and not STAR.has_fim
    assert QWEN.specials[:5] == (
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|repo_name|>",
        "<|file_sep|>",
    )
    assert len(set(QWEN.specials)) == len(QWEN.specials)
    assert "<|endoftext|>" in QWEN.specials and "<|im_end|>" in QWEN.specials
    assert STAR.specials[:2] == ("<repo_name>", "<file_sep>")


# -- Prompt.segments / breakdown ------------------------------------------------------------------
def test_segments_merge_adjacent_plain_parts_and_keep_specials_apart() -> None:
    p = Prompt(
        [
            PromptPart("special", "<A>"),
            PromptPart("header", "repo\n"),
            PromptPart("special", "<S>"),
            PromptPart("header", "a.py\n", path="a.py"),
            PromptPart("repo-file", "x = 1\n", path="a.py"),
            PromptPart("header", "", path="b.py"),  # empty parts vanish
            PromptPart("prefix", "y = ", path="b.py"),
            PromptPart("special", "<S>"),
            PromptPart("special", "<M>"),
            PromptPart("suffix", ""),
        ]
    )
    assert p.segments() == [
        ("<A>", True),
        ("repo\n", False),
        ("<S>", True),
        ("a.py\nx = 1\ny = ", False),
        ("<S>", True),
        ("<M>", True),
    ]
    assert "".join(t for t, _ in p.segments()) == p.text


def test_segments_of_an_empty_prompt() -> None:
    assert Prompt().segments() == []
    assert Prompt().text == ""


def test_breakdown_folds_specials_into_headers_and_sums_to_the_total() -> None:
    p = Prompt(
        [
            PromptPart("special", "<repo>", tokens=1),
            PromptPart("header", "r\n", tokens=2),
            PromptPart("special", "<sep>", tokens=1),
            PromptPart("header", "a.py\n", path="a.py", tokens=3),
            PromptPart("repo-file", "body\n", path="a.py", tokens=40),
            PromptPart("special", "<sep>", tokens=1),
            PromptPart("header", "b.py\n", path="b.py", tokens=3),
            PromptPart("special", "<pre>", tokens=1),
            PromptPart("prefix", "code", path="b.py", tokens=10),
            PromptPart("special", "<suf>", tokens=1),
            PromptPart("suffix", ")", path="b.py", tokens=1),
            PromptPart("special", "<mid>"),  # tokens unknown: counted as one
        ]
    )
    rows = p.breakdown()
    assert rows == [
        {"kind": "header", "path": None, "tokens": 3},
        {"kind": "header", "path": "a.py", "tokens": 4},
        {"kind": "repo-file", "path": "a.py", "tokens": 40},
        {"kind": "header", "path": "b.py", "tokens": 4},
        {"kind": "special", "path": None, "tokens": 1},
        {"kind": "prefix", "path": "b.py", "tokens": 10},
        {"kind": "special", "path": None, "tokens": 1},
        {"kind": "suffix", "path": "b.py", "tokens": 1},
        {"kind": "special", "path": None, "tokens": 1},
    ]
    total = sum(x.tokens or 1 for x in p.parts if x.special) + sum(
        x.tokens or 0 for x in p.parts if not x.special
    )
    assert sum(r["tokens"] for r in rows) == total == 65
    data = json.loads(p.to_json(total))
    assert data == {"prompt": p.text, "parts": rows, "total_tokens": total}


@pytest.mark.parametrize("fmt", [QWEN, STAR, PLAIN], ids=lambda f: f.name)
@pytest.mark.parametrize("suffix", [None, "", ")\n"])
def test_breakdown_sums_for_real_layouts(fmt: PromptFormat, suffix: str | None) -> None:
    files = [RepoFile("pkg/a.py", "A = 1\n", 4), RepoFile("pkg/b.py", "B = 2", 5)]
    cur, _ = file_parts(fmt, "main.py", "print(", suffix, prefix_tokens=3, suffix_tokens=2)
    p = Prompt(repo_parts(fmt, "proj", files) + cur)
    specials = sum(1 for x in p.parts if x.special)
    plain = sum(x.tokens or 0 for x in p.parts if not x.special)
    assert sum(r["tokens"] for r in p.breakdown()) == specials + plain
    assert all(r["tokens"] >= 0 for r in p.breakdown())


# -- file_parts -----------------------------------------------------------------------------------
def test_file_parts_fim_with_suffix() -> None:
    parts, fim = file_parts(QWEN, "src/m.py", "def f(", "):\n    pass\n", prefix_tokens=3)
    assert fim is True
    assert [(x.kind, x.text) for x in parts] == [
        ("special", "<|file_sep|>"),
        ("header", "src/m.py\n"),
        ("special", "<|fim_prefix|>"),
        ("prefix", "def f("),
        ("special", "<|fim_suffix|>"),
        ("suffix", "):\n    pass\n"),
        ("special", "<|fim_middle|>"),
    ]
    assert parts[3].tokens == 3 and parts[3].path == "src/m.py"


def test_file_parts_fim_with_empty_suffix_still_uses_fim() -> None:
    parts, fim = file_parts(QWEN, "m.py", "x = ", "")
    assert fim is True
    assert parts[-1].text == "<|fim_middle|>"
    assert Prompt(parts).text == "<|file_sep|>m.py\n<|fim_prefix|>x = <|fim_suffix|><|fim_middle|>"


def test_file_parts_without_suffix_is_plain_continuation() -> None:
    parts, fim = file_parts(QWEN, "m.py", "x = ", None)
    assert fim is False
    assert Prompt(parts).text == "<|file_sep|>m.py\nx = "
    assert not any(x.text.startswith("<|fim") for x in parts)


@pytest.mark.parametrize("suffix", [None, ")\n"])
def test_file_parts_never_fim_for_a_format_without_fim(suffix: str | None) -> None:
    parts, fim = file_parts(STAR, "m.py", "x = ", suffix)
    assert fim is False
    assert [(x.kind, x.text) for x in parts] == [
        ("special", "<file_sep>"),
        ("header", "m.py\n"),
        ("prefix", "x = "),
    ]
    bare, fim2 = file_parts(PLAIN, "m.py", "x = ", suffix)
    assert fim2 is False
    assert [(x.kind, x.text) for x in bare] == [("prefix", "x = ")]


# -- repo_parts -----------------------------------------------------------------------------------
FILES = [RepoFile("helpers/zorb.py", "def z():\n    return 1\n", 9), RepoFile("a.py", "A = 1", 3)]


def test_repo_parts_qwen_framing() -> None:
    parts = repo_parts(QWEN, "proj", FILES)
    assert Prompt(parts).text == (
        "<|repo_name|>proj\n"
        "<|file_sep|>helpers/zorb.py\ndef z():\n    return 1\n"
        "<|file_sep|>a.py\nA = 1\n"  # a missing final newline is added
    )
    assert [x.kind for x in parts] == [
        "special",
        "header",
        "special",
        "header",
        "repo-file",
        "special",
        "header",
        "repo-file",
    ]
    assert [x.path for x in parts if x.kind == "repo-file"] == ["helpers/zorb.py", "a.py"]
    assert [x.tokens for x in parts if x.kind == "repo-file"] == [9, 3]
    specials = [x.text for x in parts if x.special]
    assert specials == ["<|repo_name|>", "<|file_sep|>", "<|file_sep|>"]


def test_repo_parts_starcoder2_framing() -> None:
    parts = repo_parts(STAR, "proj", FILES)
    assert Prompt(parts).text == (
        "<repo_name>proj\n<file_sep>helpers/zorb.py\ndef z():\n    return 1\n<file_sep>a.py\nA = 1\n"
    )
    segs = Prompt(parts).segments()
    assert ("<repo_name>", True) in segs
    assert [t for t, special in segs if special] == ["<repo_name>", "<file_sep>", "<file_sep>"]


def test_repo_parts_without_control_strings_uses_comment_headers() -> None:
    parts = repo_parts(PLAIN, "proj", FILES)
    assert not any(x.special for x in parts)
    assert Prompt(parts).text == (
        "# file: helpers/zorb.py\ndef z():\n    return 1\n# file: a.py\nA = 1\n"
    )


def test_repo_parts_empty() -> None:
    assert repo_parts(QWEN, "proj", []) == []


def test_whole_prompt_order_repo_then_file() -> None:
    cur, fim = file_parts(QWEN, "main.py", "x = ", ")")
    text = Prompt(repo_parts(QWEN, "proj", FILES) + cur, fim=fim).text
    assert text.index("helpers/zorb.py") < text.index("a.py") < text.index("main.py")
    assert text.endswith("<|fim_middle|>")


# -- sanitize -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", [QWEN, STAR], ids=lambda f: f.name)
def test_sanitize_defuses_every_control_string(fmt: PromptFormat) -> None:
    text = "a " + " b ".join(fmt.specials) + " c"
    out = sanitize(text, fmt)
    for s in fmt.specials:
        assert s not in out
    assert out.replace("\u200b", "") == text
    assert out.count("\u200b") == len(fmt.specials)


def test_sanitize_leaves_ordinary_text_alone() -> None:
    text = "if a < b and c > d: x = '<|not a marker|>' <file>"
    assert sanitize(text, QWEN) == text
    assert sanitize(text, STAR) == text


def test_sanitize_repeated_and_adjacent_markers() -> None:
    text = "<|file_sep|><|file_sep|>x<|fim_prefix|><|fim_suffix|>"
    out = sanitize(text, QWEN)
    assert not any(s in out for s in QWEN.specials)
    assert out.replace("\u200b", "") == text
    # Qwen markers mean nothing to the StarCoder2 format and the other way round.
    assert sanitize("<|fim_prefix|>", STAR) == "<|fim_prefix|>"
    assert "<file_sep>" not in sanitize("<file_sep>", STAR)
    assert sanitize("<file_sep>", QWEN) == "<file_sep>"


# -- Utf8Accumulator ------------------------------------------------------------------------------
SAMPLES = ["é", "€", "中文", "🎉", "👩‍💻", "naïve café — “ok” 😀!", "a\u0301"]


@pytest.mark.parametrize("text", SAMPLES)
def test_utf8_split_byte_by_byte(text: str) -> None:
    acc = Utf8Accumulator()
    out = [acc.push(bytes([b])) for b in text.encode("utf-8")]
    assert "".join(out) == text
    assert acc.text == text
    assert "\ufffd" not in acc.text


@pytest.mark.parametrize("text", SAMPLES)
def test_utf8_every_two_way_split(text: str) -> None:
    data = text.encode("utf-8")
    for cut in range(len(data) + 1):
        acc = Utf8Accumulator()
        acc.push(data[:cut])
        acc.push(data[cut:])
        assert acc.text == text, cut


def test_utf8_incomplete_character_is_held_back_not_emitted() -> None:
    acc = Utf8Accumulator()
    euro = "€".encode()
    assert acc.push(b"x" + euro[:1]) == "x"
    assert acc.push(euro[1:2]) == ""
    assert acc.push(euro[2:] + b"y") == "€y"
    assert acc.text == "x€y"


def test_utf8_genuinely_bad_bytes_become_replacement_characters() -> None:
    acc = Utf8Accumulator()
    acc.push(b"\xff")
    acc.push(b"ok")
    assert acc.text == "\ufffdok"
    # A started character followed by a byte that cannot continue it.
    acc2 = Utf8Accumulator()
    acc2.push("€".encode()[:2])
    acc2.push(b"A")
    assert acc2.text.endswith("A")
    assert "\ufffd" in acc2.text
    # Text after the bad sequence is never swallowed.
    acc3 = Utf8Accumulator()
    acc3.push(b"ab\xffcdefgh")
    assert acc3.text.startswith("ab") and acc3.text.endswith("cdefgh")


def test_utf8_text_after_a_bad_byte_is_not_held_back() -> None:
    acc = Utf8Accumulator()
    assert acc.push(b"x\xffy") == "x\ufffdy"
    assert Utf8Accumulator().push(b"ok\xff\n").endswith("\n")
