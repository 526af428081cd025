# A streaming entrypoint: it yields the words another chainlet splits, one line each.
from collections.abc import AsyncIterator

import truss_chains as chains


class Words(chains.ChainletBase):
    async def run_remote(self, text: str) -> list[str]:
        return text.split()


@chains.mark_entrypoint("streamer")
class Streamer(chains.ChainletBase):
    def __init__(self, words: Words = chains.depends(Words)) -> None:
        self._words = words

    async def run_remote(self, text: str) -> AsyncIterator[str]:
        for word in await self._words.run_remote(text):
            yield word + "\n"
