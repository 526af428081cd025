# The chain of docs/15-chains.md: three chainlets, two hops. No `from __future__ import annotations`:
# Chains rejects string annotations.
import logging

import pydantic
import truss_chains as chains

logger = logging.getLogger(__name__)


class Words(pydantic.BaseModel):
    words: list[str]


class Splitter(chains.ChainletBase):
    async def run_remote(self, text: str) -> Words:
        logger.info("splitting %d characters", len(text))
        return Words(words=text.split())


class Counter(chains.ChainletBase):
    async def run_remote(self, words: Words) -> dict[str, int]:
        if not words.words:
            raise ValueError("no words")
        counts: dict[str, int] = {}
        for w in words.words:
            counts[w.lower()] = counts.get(w.lower(), 0) + 1
        return counts


@chains.mark_entrypoint("word-stats")
class WordStats(chains.ChainletBase):
    remote_config = chains.RemoteConfig(compute=chains.Compute(predict_concurrency=4))

    def __init__(
        self,
        splitter: Splitter = chains.depends(Splitter, retries=2),
        counter: Counter = chains.depends(Counter, timeout_sec=30),
    ) -> None:
        self._splitter = splitter
        self._counter = counter

    async def run_remote(self, text: str, top: int = 2) -> tuple[int, list[str]]:
        words = await self._splitter.run_remote(text)
        counts = await self._counter.run_remote(words)
        ranked = sorted(counts, key=lambda w: (-counts[w], w))
        return len(words.words), ranked[:top]
