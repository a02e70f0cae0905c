"""The remote engine's protocol handling, with scripted HTTP answers (httpx.MockTransport):
stream parsing, stop rules, errors and their messages, backoff, cancel and time limits, the API
key. The same engine runs against real servers in tests/model/test_remote_engine.py and
tests/e2e/test_remote.py."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from nearline.completion.service import CompletionService, Query
from nearline.config import EngineSettings, parse_settings
from nearline.engine.base import GenerationRequest
from nearline.engine.remote import RemoteEngine, normalize_url, remote_options
from nearline.weights.catalog import load_catalog
from nearline.weights.download import ModelError

from .fakes import approx_count

QWEN = load_catalog().get("qwen2.5-coder-0.5b-instruct-q4_k_m")
Handler = Callable[[httpx.Request], Any]


def sse(*items: Any, done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(i).encode() + b"\n\n" for i in items)
    return out + (b"data: [DONE]\n\n" if done else b"")


def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"object": "text_completion", "choices": [{"text": text, "finish_reason": finish}]}


MODELS = {"object": "list", "data": [{"id": "served-model", "object": "model", "owned_by": "x"}]}


class Server:
    """Scripted answers for /v1/completions (and a model list); records every request."""

    def __init__(self, completions: Handler, models: Any = MODELS) -> None:
        self.completions = completions
        self.models = models
        self.requests: list[httpx.Request] = []

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path.endswith("/completions")]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/models"):
            if isinstance(self.models, httpx.Response):
                return self.models
            return httpx.Response(200, json=self.models)
        out = self.completions(request)
        if asyncio.iscoroutine(out):
            out = await out
        return out


def stream_response(body: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


def engine_for(server: Server, **settings: Any) -> RemoteEngine:
    cfg = EngineSettings(backend="openai", url="http://gpu-box:8080", **settings)
    return RemoteEngine(
        remote_options(cfg), QWEN.format, QWEN.id, transport=httpx.MockTransport(server)
    )


def gen(engine: RemoteEngine, text: str = "x = ", cancel: threading.Event | None = None, **kw: Any):
    req = GenerationRequest(segments=[(text, False)], **kw)
    return engine.generate(req, cancel or threading.Event())


# -- settings ------------------------------------------------------------------------------------


def test_engine_settings_parse_and_report_problems_by_name() -> None:
    s, problems = parse_settings(
        {
            "engine": {
                "backend": "openai",
                "url": "http://10.0.0.5:8000/v1",
                "model": "Qwen/Qwen2.5-Coder-7B",
                "apiKeyEnv": "TEAM_KEY",
                "timeoutMs": 5000,
                "connectTimeoutMs": 300,
            }
        }
    )
    assert problems == []
    assert (s.engine.backend, s.engine.url, s.engine.api_key_env) == (
        "openai", "http://10.0.0.5:8000/v1", "TEAM_KEY",
    )  # fmt: skip
    s, problems = parse_settings(
        {
            "engine": {
                "backend": "remote",
                "url": "localhost:8080",
                "apiKeyEnv": "sk-secret-value-123",
                "timeoutMs": 10,
                "model": " ",
            }
        }
    )
    by_key = {p.key: str(p) for p in problems}
    assert set(by_key) == {
        "engine.backend", "engine.url", "engine.apiKeyEnv", "engine.timeoutMs", "engine.model",
    }  # fmt: skip
    assert "local, openai" in by_key["engine.backend"]
    assert "http://" in by_key["engine.url"]
    # A key pasted where the variable's name belongs is never echoed back.
    assert "sk-secret" not in by_key["engine.apiKeyEnv"]
    assert "name of an environment variable" in by_key["engine.apiKeyEnv"]
    assert s.engine == EngineSettings()


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    s, problems = parse_settings({"engine": {"url": "https://bob:hunter2@api.example.com"}})
    assert len(problems) == 1 and "hunter2" not in str(problems[0])
    assert "apiKeyEnv" in str(problems[0])
    assert s.engine.url == EngineSettings().url


def test_urls_are_normalized_to_the_v1_base() -> None:
    for url in (
        "http://h:8080", "http://h:8080/", "http://h:8080/v1", "http://h:8080/v1/",
        " http://h:8080/v1/completions ",
    ):  # fmt: skip
        assert normalize_url(url) == "http://h:8080/v1"
    assert normalize_url("https://x.io/api") == "https://x.io/api/v1"


def test_api_key_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEARLINE_TEST_KEY", raising=False)
    with pytest.raises(ModelError, match="NEARLINE_TEST_KEY"):
        remote_options(EngineSettings(backend="openai", api_key_env="NEARLINE_TEST_KEY"))
    monkeypatch.setenv("NEARLINE_TEST_KEY", "s3cr3t-k3y")
    opts = remote_options(EngineSettings(backend="openai", api_key_env="NEARLINE_TEST_KEY"))
    assert opts.api_key == "s3cr3t-k3y" and "s3cr3t" not in repr(opts)


# -- streaming -----------------------------------------------------------------------------------


def test_streams_a_completion_and_sends_a_greedy_single_line_request() -> None:
    usage = {"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 3}}
    server = Server(
        lambda r: stream_response(sse(chunk(" +"), chunk(" b"), chunk("", "stop"), usage))
    )
    eng = engine_for(server)
    res = gen(eng, "def add(a, b):\n    return a", max_tokens=17)
    assert (res.text, res.stop_reason) == (" + b", "eol")
    assert (res.prompt_tokens, res.generated_tokens) == (21, 3)
    assert 0 < res.first_token_s <= res.total_s
    body = server.bodies()[0]
    assert body["prompt"] == "def add(a, b):\n    return a"
    assert body["temperature"] == 0 and body["max_tokens"] == 17 and body["stream"] is True
    assert body["stop"][0] == "\n" and "<|file_sep|>" in body["stop"]
    assert body["model"] == "served-model"  # learned from the server's model list
    assert body["cache_prompt"] is True
    eng.close()


def test_llama_server_timings_fill_the_cache_numbers() -> None:
    timings = {"cache_n": 90, "prompt_n": 4, "predicted_n": 2, "prompt_ms": 5, "predicted_ms": 7.5}
    final = chunk("", "stop") | {"timings": timings}
    server = Server(lambda r: stream_response(sse(chunk("ok"), final)))
    res = gen(engine_for(server))
    assert (res.reused_tokens, res.evaluated_tokens, res.prompt_tokens) == (90, 4, 94)
    assert res.generated_tokens == 2 and res.extra["server_ms"] == 12.5
    assert server.bodies()[0]["timings_per_token"] is True


def test_the_line_ends_at_a_newline_even_if_the_server_ignores_stop() -> None:
    server = Server(lambda r: stream_response(sse(chunk("foo"), chunk("()\n    bar"), done=False)))
    res = gen(engine_for(server))
    assert (res.text, res.stop_reason) == ("foo()", "eol")


def test_a_control_token_rendered_as_text_ends_the_suggestion() -> None:
    server = Server(lambda r: stream_response(sse(chunk("x + 1<|file_sep|>other.py"))))
    res = gen(engine_for(server))
    assert (res.text, res.stop_reason) == ("x + 1", "stop")


def test_a_server_that_does_not_stream_is_understood() -> None:
    whole = chunk(" + b", "stop") | {"usage": {"prompt_tokens": 9, "completion_tokens": 2}}
    server = Server(lambda r: httpx.Response(200, json=whole))
    res = gen(engine_for(server))
    assert (res.text, res.prompt_tokens) == (" + b", 9)


def test_file_text_is_defused_and_control_runs_are_kept() -> None:
    server = Server(lambda r: stream_response(sse(chunk("1"))))
    eng = engine_for(server)
    segments = [("<|file_sep|>", True), ("a.py\ns = '<|file_sep|><|im_start|>'\n", False)]
    eng.generate(GenerationRequest(segments=segments), threading.Event())
    prompt = server.bodies()[0]["prompt"]
    assert prompt.startswith("<|file_sep|>a.py\n")
    assert prompt.count("<|file_sep|>") == 1 and "<|im_start|>" not in prompt


# -- failures --------------------------------------------------------------------------------------


def test_http_500_gives_one_notice_then_backs_off_then_recovers() -> None:
    answers = [httpx.Response(500, json={"error": {"message": "CUDA out of memory"}})]
    server = Server(lambda r: answers[0])
    eng = engine_for(server)
    first = gen(eng)
    assert first.stop_reason == "error" and first.text == ""
    notice = first.extra["notice"]
    assert "HTTP 500: CUDA out of memory" in notice and "http://gpu-box:8080/v1" in notice
    # Inside the backoff window: no request at all, and no second message.
    sent = len(server.bodies())
    second = gen(eng)
    assert second.stop_reason == "error" and "notice" not in second.extra
    assert len(server.bodies()) == sent
    # Once the window has passed it tries again; still failing: longer wait, still no message.
    eng._retry_at = 0.0
    third = gen(eng)
    assert "notice" not in third.extra and eng.failures == 2
    assert eng._retry_at - time.monotonic() > 0.6  # 0.5 s, then 1 s
    # It answers again: a normal result, and the next outage is news again.
    answers[0] = stream_response(sse(chunk("ok")))
    eng._retry_at = 0.0
    assert gen(eng).text == "ok" and eng.failures == 0
    answers[0] = httpx.Response(503, headers={"retry-after": "7"}, text="busy")
    later = gen(eng)
    assert "HTTP 503: busy" in later.extra["notice"]
    assert eng._retry_at - time.monotonic() > 6  # the server's Retry-After is honoured


def test_connection_refused_is_reported_plainly() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        # What httpx raises for a closed port: the socket error is its cause.
        refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)")
        raise httpx.ConnectError("All connection attempts failed", request=request) from refused

    opts = remote_options(EngineSettings(backend="openai", url="http://127.0.0.1:9"))
    eng = RemoteEngine(opts, QWEN.format, QWEN.id, transport=httpx.MockTransport(refuse))
    res = gen(eng)
    assert res.stop_reason == "error"
    assert "cannot be reached (connection refused); is it running?" in res.extra["notice"]
    assert eng.info()["last_error"] and eng.info()["failures"] == 1


@pytest.mark.parametrize(
    ("response", "words"),
    [
        (stream_response(b"data: <html>Bad Gateway</html>\n\n"), "not JSON"),
        (
            httpx.Response(200, headers={"content-type": "text/html"}, text="<h1>hi</h1>"),
            "not JSON",
        ),
        (stream_response(sse({"id": 1, "object": "weird"})), "no choices"),
        (stream_response(sse({"choices": [{"delta": {"content": "x"}}]})), "/v1/completions"),
        (stream_response(b"data: [DONE]\n\n"), "empty"),
        (stream_response(sse({"error": {"message": "context overflow"}})), "context overflow"),
        (httpx.Response(404, json={"detail": "Not Found"}), "engine.url"),
    ],
)
def test_malformed_answers_become_one_clear_message(response: httpx.Response, words: str) -> None:
    eng = engine_for(Server(lambda r: response))
    res = gen(eng)
    assert res.stop_reason == "error" and res.text == ""
    assert words in res.extra["notice"], res.extra["notice"]


def test_the_key_is_sent_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEARLINE_TEST_KEY", "sk-live-abcdef123456")
    server = Server(
        lambda r: httpx.Response(
            401, json={"error": {"message": "bad key sk-live-abcdef123456 for this org"}}
        )
    )
    eng = engine_for(server, api_key_env="NEARLINE_TEST_KEY")
    res = gen(eng)
    assert server.requests[-1].headers["authorization"] == "Bearer sk-live-abcdef123456"
    notice = res.extra["notice"]
    assert "sk-live" not in notice and "$NEARLINE_TEST_KEY" in notice
    info = json.dumps(eng.info())
    assert "sk-live" not in info and "NEARLINE_TEST_KEY" in info


def test_a_strict_server_gets_the_request_again_without_llama_fields() -> None:
    def strict(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "cache_prompt" in body:
            msg = "Unrecognized request argument supplied: cache_prompt"
            return httpx.Response(400, json={"error": {"message": msg}})
        return stream_response(sse(chunk("fine")))

    server = Server(strict)
    eng = engine_for(server)
    assert gen(eng).text == "fine" and eng.failures == 0
    assert gen(eng).text == "fine"
    assert ["cache_prompt" in b for b in server.bodies()] == [True, False, False]


def test_vllm_gets_no_llama_fields_and_the_configured_model() -> None:
    vllm = {"object": "list", "data": [{"id": "Qwen/Qwen2.5-Coder-7B", "owned_by": "vllm"}]}
    server = Server(lambda r: stream_response(sse(chunk("a"))), models=vllm)
    eng = engine_for(server, model="my-alias")
    gen(eng)
    body = server.bodies()[0]
    assert body["model"] == "my-alias" and "cache_prompt" not in body
    assert eng.info()["server"] == "vllm"


# -- cancel and time limits ----------------------------------------------------------------------


def test_cancel_closes_a_request_still_waiting_for_the_server() -> None:
    closed = threading.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            closed.set()
            raise
        return stream_response(sse(chunk("late")))

    eng = engine_for(Server(slow))
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    res = gen(eng, cancel=cancel)
    assert res.stop_reason == "cancelled" and res.text == ""
    assert closed.is_set()
    assert eng.failures == 0  # a cancel is not the server's fault


def test_the_generation_limit_keeps_what_streamed_so_far() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"data: " + json.dumps(chunk("ab")).encode() + b"\n\n"
            await asyncio.sleep(0.02)

    eng = engine_for(Server(lambda r: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=endless()
    )))  # fmt: skip
    res = gen(eng, timeout_s=0.2)
    assert res.stop_reason == "timeout" and res.text.startswith("abab")
    assert eng.failures == 0


def test_a_server_that_never_answers_hits_engine_timeout() -> None:
    async def mute(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    eng = engine_for(Server(mute), timeout_ms=300)
    res = gen(eng)
    assert res.stop_reason == "error" and "within 0.3 s (engine.timeoutMs)" in res.extra["notice"]


# -- warm-up and the service ----------------------------------------------------------------------


def test_warm_up_reads_the_prompt_and_a_failed_one_is_told_with_the_next_request() -> None:
    server = Server(
        lambda r: stream_response(sse(chunk("x", "length") | {"timings": {"prompt_n": 40}}))
    )
    eng = engine_for(server)
    assert eng.warm([("a = 1\n", False)], threading.Event()) == 40
    assert server.bodies()[-1]["max_tokens"] == 1
    server.completions = lambda r: httpx.Response(502, text="Bad Gateway")
    assert eng.warm([("a = 1\n", False)], threading.Event()) == 0
    res = gen(eng)
    assert "HTTP 502" in res.extra["notice"]
    assert "notice" not in gen(eng).extra


async def test_the_service_shows_a_remote_failure_once() -> None:
    server = Server(lambda r: httpx.Response(500, json={"error": "boom"}))
    settings, _ = parse_settings(
        {
            "engine": {"backend": "openai", "url": "http://gpu-box:8080"},
            "completion": {"debounceMs": 0},
        }
    )
    shown: list[tuple[str, str]] = []
    svc = CompletionService(
        settings,
        lambda s: engine_for(server),
        count_tokens=approx_count,
        on_message=lambda level, text: shown.append((level, text)),
    )
    await svc.start()
    q = Query(uri="file:///t/a.py", text="x = 1\ny = x +", line=1, col=7)
    for _ in range(3):
        out = await svc.complete(q)
        assert out.source == "error" and out.suggestions == []
    assert len(shown) == 1 and shown[0][0] == "error" and "HTTP 500: boom" in shown[0][1]
    assert svc.state == "ready"
    svc.close()


async def test_a_failure_first_seen_by_speculation_is_shown_too() -> None:
    """The next-line speculation runs in the background right after an answer: if the server
    fails there first, the message must not be lost with the discarded speculation."""
    answers = [stream_response(sse(chunk(" + 1")))]
    server = Server(lambda r: answers.pop(0) if answers else httpx.Response(500, text="down"))
    settings, _ = parse_settings(
        {
            "engine": {"backend": "openai", "url": "http://gpu-box:8080"},
            "completion": {"debounceMs": 0, "speculate": True},
        }
    )
    shown: list[str] = []
    svc = CompletionService(
        settings,
        lambda s: engine_for(server),
        count_tokens=approx_count,
        on_message=lambda level, text: shown.append(text),
    )
    await svc.start()
    out = await svc.complete(Query(uri="file:///t/a.py", text="x = 1\ny = x", line=1, col=5))
    assert out.source == "model" and out.suggestions[0].text == " + 1"
    for _ in range(200):
        if any(r["source"] == "speculation" for r in svc.recent):
            break
        await asyncio.sleep(0.01)
    assert len(shown) == 1 and "HTTP 500: down" in shown[0], shown
    svc.close()
