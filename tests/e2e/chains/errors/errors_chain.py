# A user HTTPException raised two chainlets down: its status reaches the client.
import fastapi
import truss_chains as chains


class Leaf(chains.ChainletBase):
    async def run_remote(self, status: int) -> str:
        if status >= 400:
            raise fastapi.HTTPException(status_code=status, detail=f"leaf says {status}")
        return "fine"


class Middle(chains.ChainletBase):
    def __init__(self, leaf: Leaf = chains.depends(Leaf)) -> None:
        self._leaf = leaf

    async def run_remote(self, status: int) -> str:
        return await self._leaf.run_remote(status)


@chains.mark_entrypoint("errors")
class Entry(chains.ChainletBase):
    def __init__(self, middle: Middle = chains.depends(Middle)) -> None:
        self._middle = middle

    async def run_remote(self, status: int) -> str:
        return await self._middle.run_remote(status)
