"""examples/llm with a tiny, randomly initialised GPT-2 built locally: the real transformers path."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerHandle, free_port, run_server

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import openai

from tests.integration.protocols._tiny_lm import build_tiny_lm

pytestmark = pytest.mark.heavy

LLM = Path(__file__).resolve().parents[3] / "examples" / "llm"
USER = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A copy of examples/llm whose config.yaml points at a tiny model inside the truss."""
    truss = tmp_path_factory.mktemp("llm") / "llm"
    shutil.copytree(LLM, truss)
    build_tiny_lm(truss / "weights")
    config = (truss / "config.yaml").read_text()
    assert "checkpoint: HuggingFaceTB/SmolLM2-135M-Instruct" in config
    (truss / "config.yaml").write_text(config.replace("HuggingFaceTB/SmolLM2-135M-Instruct", "weights"))
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with run_server(truss, env=env, timeout=120) as handle:
        yield handle


@pytest.fixture
def oai(server: ServerHandle) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60) as client:
        yield client


def test_predict_streams_the_same_text_it_returns(server: ServerHandle) -> None:
    body = {"prompt": "the quick brown fox", "max_new_tokens": 12}
    with httpx.stream("POST", server.url + "/v1/models/model:predict", json={**body, "stream": True}) as r:
        chunks = [c for c in r.iter_text() if c]
    whole = httpx.post(server.url + "/v1/models/model:predict", json=body, timeout=60).json()
    assert len(chunks) > 1, "streamed as it was generated"
    assert "".join(chunks) == whole["text"] != ""


def test_chat_completions_through_the_protocol_helpers(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="llm",
        messages=USER,  # type: ignore[arg-type]
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == 8
    assert usage.prompt_tokens > 0

    completion = oai.chat.completions.create(model="llm", messages=USER, max_tokens=8)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == streamed != ""  # greedy decoding: deterministic


def test_closing_the_stream_stops_generation(oai: openai.OpenAI, server: ServerHandle) -> None:
    stream = oai.chat.completions.create(
        model="llm",
        messages=USER,  # type: ignore[arg-type]
        max_tokens=1900,
        stream=True,
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    deadline = time.monotonic() + 10
    while "Generation stopped after" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(x for x in server.log().splitlines() if "Generation stopped after" in x)
    stopped_at = int(line.split("Generation stopped after ")[1].split()[0])
    assert stopped_at < 1900


@pytest.mark.parametrize("network", ["offline", "unreachable"])
def test_weights_that_cannot_be_fetched_fail_fast_and_say_what_to_do(
    tmp_path: Path, network: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No cached checkpoint and no hub: one clear message within seconds (was 99 s and 150 lines)."""
    truss = tmp_path / "llm"
    shutil.copytree(LLM, truss)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "LLM_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)
    env = {"HF_HOME": str(tmp_path / "hf-home")}  # an empty cache
    if network == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    with run_server(truss, env=env, ready=False, timeout=120) as handle:
        assert handle.wait_exit(120) == 1
        log = handle.log()
    expected = "is not in the Hugging Face cache" if network == "offline" else "cannot fetch checkpoint"
    assert f"'HuggingFaceTB/SmolLM2-135M-Instruct' {expected}" in log or expected in log, log
    assert "LLM_CHECKPOINT=/path/to/checkpoint" in log and "model_metadata.checkpoint" in log
    errors = [line for line in log.splitlines() if "Exception while loading model" in line]
    assert errors, log
    trace = log[log.index("Exception while loading model") :]
    assert "site-packages/transformers" not in trace and "site-packages/huggingface_hub" not in trace, trace
