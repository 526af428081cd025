"""A streaming Hugging Face causal LM, served as ``predict`` and as every chat protocol.

``transformers`` generates in a background thread and hands text to a ``TextIteratorStreamer``;
the request's generator reads the streamer. When the client goes away the server closes that
generator, whose ``finally`` sets a ``threading.Event`` that a ``StoppingCriteria`` checks after
every token, so the GPU/CPU work stops within a token.

The checkpoint is ``$LLM_CHECKPOINT`` or ``model_metadata.checkpoint``: a Hugging Face model id or
a directory (relative paths are resolved against this truss).
"""

import logging
import os
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from trestle.protocols import ChatModel, DeltaLike, Finish, GenerationRequest, Message, Usage

logger = logging.getLogger(__name__)
TRUSS_DIR = Path(__file__).resolve().parent.parent
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_HUB_TIMEOUT_SECONDS = 10.0


def resolve_checkpoint(checkpoint: str) -> str:
    """A relative path that exists under the truss is a local checkpoint; anything else is a hub id."""
    path = Path(checkpoint).expanduser()
    if not path.is_absolute() and (TRUSS_DIR / path).exists():
        return str(TRUSS_DIR / path)
    return str(path) if path.exists() else checkpoint


class StopSequences:
    """Holds back just enough text to catch a stop sequence split across chunks."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.keep = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.hit: str | None = None

    def feed(self, text: str) -> str:
        self.pending += text
        for stop in self.stops:
            at = self.pending.find(stop)
            if at >= 0:
                self.hit, out, self.pending = stop, self.pending[:at], ""
                return out
        cut = len(self.pending) - self.keep
        out, self.pending = self.pending[: max(cut, 0)], self.pending[max(cut, 0) :]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class Model(ChatModel):
    def __init__(self, **kwargs: Any) -> None:
        config = kwargs.get("config") or {}
        metadata = config.get("model_metadata") or {}
        checkpoint = os.environ.get("LLM_CHECKPOINT") or metadata.get("checkpoint")
        if not checkpoint:
            raise ValueError("Set model_metadata.checkpoint in config.yaml (or LLM_CHECKPOINT)")
        self._checkpoint = resolve_checkpoint(str(checkpoint))
        self._max_new_tokens = int(metadata.get("max_new_tokens", 256))
        self.default_model_name = str(config.get("model_name") or "llm")
        self._tokenizer: Any = None
        self._model: Any = None

    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        local = Path(self._checkpoint).is_dir() or self._hub_checkpoint_is_cached(self._checkpoint)
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        self._tokenizer = AutoTokenizer.from_pretrained(self._checkpoint, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(self._checkpoint, local_files_only=local)
        self._model = model.to(self._device)
        self._model.eval()

    @staticmethod
    def _hub_checkpoint_is_cached(repo_id: str) -> bool:
        """True when the hub checkpoint is in the local cache; otherwise check the hub answers, quickly.

        Without the check, a machine that cannot reach the hub spends minutes in the hub client's
        retries and ends in a 150-line traceback from inside transformers; this fails in seconds
        with one message that says what to do.
        """
        import huggingface_hub

        if isinstance(huggingface_hub.try_to_load_from_cache(repo_id, "config.json"), str):
            return True
        endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
        how = (
            "Point this example at a local checkpoint instead: set LLM_CHECKPOINT=/path/to/checkpoint "
            "(a directory with config.json, the tokenizer and the weights) or model_metadata.checkpoint in "
            f"config.yaml (a path relative to the truss works), or download it first (`hf download {repo_id}`)."
        )
        offline = any(os.environ.get(name, "") not in ("", "0", "false") for name in _OFFLINE_VARIABLES)
        if offline:
            raise RuntimeError(
                f"checkpoint {repo_id!r} is not in the Hugging Face cache and the hub is off (offline). {how}"
            )
        try:
            huggingface_hub.HfApi(endpoint=endpoint).model_info(repo_id, timeout=_HUB_TIMEOUT_SECONDS)
        except Exception as exc:  # connection refused, DNS, time-out, 401/404: all end the same way
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RuntimeError(f"cannot fetch checkpoint {repo_id!r} from {endpoint}: {reason}. {how}") from None
        return False

    # --- generation ----------------------------------------------------------------------------

    def _pad_token_id(self) -> Any:
        pad = self._tokenizer.pad_token_id
        return pad if pad is not None else self._tokenizer.eos_token_id

    def _prompt(self, messages: list[Message]) -> str:
        turns = [{"role": m.role if m.role != "tool" else "user", "content": m.content} for m in messages]
        if getattr(self._tokenizer, "chat_template", None):
            return str(self._tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True))
        return "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"

    def _generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: list[str] | None = None,
    ) -> Generator[DeltaLike, None, None]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        inputs = self._tokenizer(prompt, return_tensors="pt").to(self._device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        cancelled = threading.Event()
        generated = [0]

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                generated[0] = int(input_ids.shape[1]) - prompt_tokens
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool, device=input_ids.device)

        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        sampling = temperature is not None and temperature > 0
        options: dict[str, Any] = {
            **inputs,
            "max_new_tokens": max_new_tokens,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([Cancelled()]),
            "do_sample": sampling,
            "pad_token_id": self._pad_token_id(),
        }
        if sampling:
            options.update(temperature=temperature, top_p=top_p if top_p is not None else 1.0)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self._model.generate(**options)
            except BaseException as exc:  # surfaced in the request's generator below
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, name="llm-generate", daemon=True)
        thread.start()
        stops = StopSequences(stop or [])
        try:
            yield Usage(prompt_tokens=prompt_tokens)
            for text in streamer:
                out = stops.feed(text)
                if out:
                    yield out
                if stops.hit is not None:
                    cancelled.set()
                    break
            else:
                rest = stops.flush()
                if rest:
                    yield rest
            thread.join()
            if failure:
                raise failure[0]
            yield Usage(completion_tokens=generated[0])
            if stops.hit is not None:
                yield Finish("stop", stop_sequence=stops.hit)
            else:
                yield Finish("length" if generated[0] >= max_new_tokens else "stop")
        finally:
            if thread.is_alive():
                cancelled.set()
                thread.join()
                logger.info("Generation stopped after %d new tokens: the request ended early.", generated[0])

    def generate(self, request: GenerationRequest) -> Iterator[DeltaLike]:
        return self._generate(
            request.prompt if request.prompt is not None else self._prompt(request.messages),
            max_new_tokens=request.max_tokens or self._max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop,
        )

    # --- predict: {"prompt": ..., "stream": bool, "max_new_tokens": n} ----------------------------

    def predict(self, model_input: dict) -> Any:
        deltas = self._generate(
            str(model_input.get("prompt", "")),
            max_new_tokens=int(model_input.get("max_new_tokens", self._max_new_tokens)),
            temperature=model_input.get("temperature"),
        )
        if model_input.get("stream"):
            return self._text(deltas)
        return {"model": self.default_model_name, "text": "".join(self._text(deltas))}

    @staticmethod
    def _text(deltas: Generator[DeltaLike, None, None]) -> Iterator[str]:
        try:
            for delta in deltas:
                if isinstance(delta, str):
                    yield delta
        finally:
            deltas.close()
