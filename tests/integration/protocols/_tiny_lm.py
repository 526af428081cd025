"""Build a tiny, randomly initialised GPT-2 and a word-level tokenizer locally (no download)."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello there, how are you today?",
    "user: assistant: system: weather in Paris is sunny",
] * 20


def build_tiny_lm(directory: Path, *, n_positions: int = 2048) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    # Word-level: decoding joins words with spaces, so TextIteratorStreamer (which releases text at
    # word boundaries) emits about one chunk per generated token.
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(CORPUS, trainer=trainers.WordLevelTrainer(special_tokens=["[UNK]", "<|endoftext|>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(directory)

    torch.manual_seed(0)
    eos = fast.eos_token_id
    config = GPT2Config(
        vocab_size=tokenizer.get_vocab_size(),
        n_positions=n_positions,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    model = GPT2LMHeadModel(config)
    with torch.no_grad():  # never predict end-of-text, so every generation runs to its token budget
        model.lm_head.weight[eos].fill_(0.0)
        model.transformer.wte.weight[eos].fill_(0.0)
    model.save_pretrained(directory)
    return directory
