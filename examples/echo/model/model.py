"""A dependency-free example: echoes its input, or streams it word by word."""

from collections.abc import Iterator
from typing import Any


class Model:
    def __init__(self, **kwargs: Any) -> None:
        self._config = kwargs["config"]

    def load(self) -> None:
        self._name = self._config["model_name"]

    def predict(self, model_input: dict) -> Any:
        if model_input.get("stream"):
            return self._words(str(model_input.get("text", "")))
        return {"model": self._name, "echo": model_input}

    def _words(self, text: str) -> Iterator[str]:
        for word in text.split():
            yield word + " "
