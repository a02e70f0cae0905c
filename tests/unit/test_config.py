from __future__ import annotations

from nearline.config import IndexSettings, Settings, parse_settings, settings_to_dict


def test_defaults_when_empty() -> None:
    s, problems = parse_settings(None)
    assert problems == []
    assert s == Settings()
    assert s.completion.max_tokens == 48
    assert s.context.composer == "path-distance"


def test_nested_camel_case() -> None:
    s, problems = parse_settings(
        {
            "model": {"id": "smollm2-135m-instruct-q4_1", "contextLength": 1024, "gpuLayers": 0},
            "completion": {"maxTokens": 16, "debounceMs": 0},
            "model.threads": 2,
        }
    )
    assert problems == []
    assert s.model.id == "smollm2-135m-instruct-q4_1"
    assert s.model.context_length == 1024
    assert s.model.gpu_layers == 0
    assert s.model.threads == 2
    assert s.completion.max_tokens == 16
    assert s.completion.debounce_ms == 0


def test_section_wrapped_in_nearline_key() -> None:
    s, problems = parse_settings({"nearline": {"completion": {"maxTokens": 7}}})
    assert problems == []
    assert s.completion.max_tokens == 7


def test_bad_values_name_the_key_and_keep_defaults() -> None:
    s, problems = parse_settings(
        {
            "completion": {"maxTokens": "lots", "debounceMs": -5},
            "model": {"ropeScaling": "quadratic", "ropeFreqBase": 0, "contextLength": 1.5},
        }
    )
    keys = {p.key for p in problems}
    assert keys == {
        "completion.maxTokens",
        "completion.debounceMs",
        "model.ropeScaling",
        "model.ropeFreqBase",
        "model.contextLength",
    }
    assert s.completion.max_tokens == 48
    assert s.completion.debounce_ms == 75
    assert s.model.rope_scaling is None
    assert all("nearline." in str(p) for p in problems)
    assert "must be an integer" in next(str(p) for p in problems if p.key == "completion.maxTokens")


def test_unknown_keys_are_reported() -> None:
    s, problems = parse_settings({"completion": {"maxTokenz": 3}, "bogus": {}})
    assert {p.key for p in problems} == {"completion.maxTokenz", "bogus"}
    assert s.completion.max_tokens == 48


def test_non_object_settings() -> None:
    s, problems = parse_settings(["not", "a", "dict"])
    assert len(problems) == 1 and "must be an object" in problems[0].problem
    assert s == Settings()
    _, problems = parse_settings({"completion": 3})
    assert problems[0].key == "completion"


def test_bool_is_not_an_int() -> None:
    s, problems = parse_settings({"completion": {"maxTokens": True}})
    assert problems and s.completion.max_tokens == 48


def test_missing_model_path_is_reported(tmp_path) -> None:
    s, problems = parse_settings({"model": {"path": str(tmp_path / "nope.gguf")}})
    assert problems[0].key == "model.path" and "no such file" in problems[0].problem
    assert s.model.path is None


def test_base_is_not_mutated() -> None:
    base, _ = parse_settings({"completion": {"maxTokens": 10}})
    s, _ = parse_settings({"completion": {"debounceMs": 1}}, base)
    assert base.completion.debounce_ms == 75
    assert s.completion.max_tokens == 10 and s.completion.debounce_ms == 1


def test_round_trip_dict() -> None:
    d = settings_to_dict(Settings())
    assert d["completion"]["maxTokens"] == 48
    assert "ropeFreqBase" in d["model"]
    s, problems = parse_settings(d)
    assert problems == [] and s == Settings()


def test_engine_isolation() -> None:
    assert Settings().engine.isolation == "process"
    s, problems = parse_settings({"engine": {"isolation": "thread"}})
    assert problems == [] and s.engine.isolation == "thread"
    s, problems = parse_settings({"engine.isolation": "fork"})
    assert s.engine.isolation == "process"
    assert [str(p) for p in problems] == [
        "nearline.engine.isolation: must be one of process, thread; got 'fork'; using the default"
    ]


def test_context_composers_and_prefix_share() -> None:
    for name in ("path-distance", "file-level", "ring-buffer", "bm25"):
        s, problems = parse_settings({"context": {"composer": name}})
        assert problems == [] and s.context.composer == name
    s, problems = parse_settings({"context": {"prefixShare": 0.3}})
    assert problems == [] and s.context.prefix_share == 0.3
    s, problems = parse_settings({"context.prefixShare": 1})
    assert problems == [] and s.context.prefix_share == 1.0
    for bad in (0.05, 1.5, float("nan"), "half", True):
        s, problems = parse_settings({"context": {"prefixShare": bad}})
        assert [p.key for p in problems] == ["context.prefixShare"], bad
        assert s.context.prefix_share == 1.0
    _, problems = parse_settings({"context": {"prefixShare": 2}})
    assert "from 0.1 to 1.0" in str(problems[0])
    _, problems = parse_settings({"context": {"composer": "bm-25"}})
    assert "ring-buffer" in str(problems[0]) and "bm25" in str(problems[0])


def test_index_section_names_defaults_and_messages() -> None:
    # The one definition of the index settings (config.IndexSettings, also what the index takes):
    # names, defaults and the messages for bad values are the public surface.
    s, problems = parse_settings(None)
    assert settings_to_dict(s)["index"] == {"exclude": [], "maxFileBytes": 1_000_000, "watch": True}
    s, problems = parse_settings(
        {"index": {"exclude": "docs/", "maxFileBytes": 0, "watch": "yes", "textCacheBytes": 5}}
    )
    assert [str(p) for p in problems] == [
        "nearline.index.exclude: must be a list of strings, got 'docs/'; using the default",
        "nearline.index.maxFileBytes: must be between 1 and 1073741824, got 0; using the default",
        "nearline.index.watch: must be true or false, got 'yes'; using the default",
        # the index's text cache is sized by the server, not a setting
        "nearline.index.textCacheBytes: unknown setting",
    ]
    assert s.index == IndexSettings()
    _, problems = parse_settings({"index.maxFileBytes": 2.5})
    assert [str(p) for p in problems] == [
        "nearline.index.maxFileBytes: must be an integer, got 2.5; using the default"
    ]


def test_index_takes_the_parsed_section(tmp_path) -> None:
    from nearline.workspace.index import WorkspaceIndex

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.py").write_text("x = 1\n")
    (tmp_path / "big.py").write_text("y = 2\n" * 100)
    (tmp_path / "small.py").write_text("z = 3\n")
    s, problems = parse_settings({"index": {"exclude": ["docs/"], "maxFileBytes": 100}})
    assert not problems
    idx = WorkspaceIndex([tmp_path], s.index)
    idx.scan()
    assert sorted(f.rel for f in idx.files()) == ["small.py"]
