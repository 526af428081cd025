# A use_binary edge: the call to Stats travels as msgpack, a numpy array inside a pydantic model.
import numpy as np
import pydantic
import truss_chains as chains
from truss_chains import pydantic_numpy


class Vector(pydantic.BaseModel):
    values: pydantic_numpy.NumpyArrayField


class Stats(chains.ChainletBase):
    async def run_remote(self, vector: Vector) -> Vector:
        return Vector(values=np.cumsum(vector.values.array))


@chains.mark_entrypoint("binary")
class Summer(chains.ChainletBase):
    def __init__(self, stats: Stats = chains.depends(Stats, use_binary=True)) -> None:
        self._stats = stats

    async def run_remote(self, numbers: list[float]) -> list[float]:
        out = await self._stats.run_remote(Vector(values=np.asarray(numbers)))
        return [float(x) for x in out.values.array]
