"""A tiny random causal LM and a real tokenizer trained on the fly, for offline engine tests.

The tokenizer is a byte-level BPE trained on a small corpus, with a ChatML chat template
and its special tokens; the model is a 2-layer Llama of about 100k parameters. Both are
saved in the standard HF layout, so they load through the same code as a Hub model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "system user assistant answer question translate redact triage",
    "the capital of france is paris. the capital of spain is madrid.",
    "red green blue yellow one two three four five six seven eight nine ten",
    "hello world, how are you? i am fine, thank you. good morning and good night.",
    "billing account bug shipping refund login password error outage security",
] * 20


def build_tiny_model(
    folder: Path,
    *,
    vocab_size: int = 400,
    seed: int = 0,
    corpus: Iterable[str] = CORPUS,
    layers: int = 2,
) -> Path:
    """Write a tokenizer and a random tiny Llama to ``folder``; return the folder.

    Train the tokenizer on the data a benchmark uses (``corpus``) to get realistic
    tokens-per-row; the default corpus keeps the test tokenizer small and fast.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<|pad|>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=0.5,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
