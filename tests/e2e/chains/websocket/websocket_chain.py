# A websocket entrypoint: each text message is sent to another chainlet, its answer sent back.
import truss_chains as chains


class Shout(chains.ChainletBase):
    async def run_remote(self, text: str) -> str:
        return text.upper() + "!"


@chains.mark_entrypoint("shouter")
class Shouter(chains.ChainletBase):
    def __init__(self, shout: Shout = chains.depends(Shout)) -> None:
        self._shout = shout

    async def run_remote(self, websocket: chains.WebSocketProtocol) -> None:
        while True:
            text = await websocket.receive_text()
            if text == "bye":
                await websocket.close()
                return
            await websocket.send_text(await self._shout.run_remote(text))
