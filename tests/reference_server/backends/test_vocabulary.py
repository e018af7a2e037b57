"""Vocabulary: token ids to exact bytes for Hugging Face tokenizers (the vLLM backend's text assembly)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from reference_server.backends.vocabulary import Vocabulary

# transformers comes with vLLM: these run in `tox -e vllm`
pytestmark = pytest.mark.vllm

TEXTS = ["Hello world", "café au lait", "naïve 日本語 text", "emoji 🦙 and \n newlines\t tabs", "  leading spaces"]


def _byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE with no merges: every byte its own token, as GPT-2's alphabet writes it."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {character: index for index, character in enumerate(sorted(alphabet))}
    vocab["<|end|>"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|end|>")


def _sentencepiece_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style BPE: "▁" for spaces, ASCII letters as tokens, every other byte as <0xNN>."""
    letters = [chr(c) for c in range(33, 127)]
    pieces = ["<unk>", "<s>", "</s>", "\u2581", *letters, *[f"<0x{b:02X}>" for b in range(256)]]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never")
    backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.mark.parametrize("make_tokenizer", [_byte_level_tokenizer, _sentencepiece_tokenizer])
@pytest.mark.parametrize("text", TEXTS)
def test_the_pieces_of_a_tokenization_concatenate_to_the_texts_bytes(
    make_tokenizer: Callable[[], PreTrainedTokenizerFast], text: str
) -> None:
    tokenizer = make_tokenizer()
    vocabulary = Vocabulary.from_tokenizer(tokenizer)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert b"".join(vocabulary.piece(i, special=False) for i in ids) == text.encode("utf-8")


def test_control_tokens_are_hidden_unless_asked_and_end_generation() -> None:
    tokenizer = _byte_level_tokenizer()
    vocabulary = Vocabulary.from_tokenizer(tokenizer, end_of_generation=[5])
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    assert vocabulary.piece(end, special=False) == b""
    assert vocabulary.piece(end, special=True) == b"<|end|>"
    assert vocabulary.key(end) == "<|end|>"
    assert vocabulary.is_end_of_generation(end) and vocabulary.is_end_of_generation(5)
    assert vocabulary.start_token == end  # no BOS: a prompt that tokenizes to nothing starts with EOS
    assert vocabulary.piece(vocabulary.size + 10, special=True) == b""


@pytest.mark.slow
def test_the_embedded_models_tokens_concatenate_to_the_text() -> None:
    from transformers import AutoTokenizer

    from reference_server.backends.hf_export import cached_export

    tokenizer = AutoTokenizer.from_pretrained(str(cached_export()))
    vocabulary = Vocabulary.from_tokenizer(tokenizer)
    for text in [*TEXTS, "<|im_start|>user\nhi<|im_end|>"]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert b"".join(vocabulary.piece(i, special=True) for i in ids) == text.encode("utf-8")
    assert vocabulary.key(tokenizer.convert_tokens_to_ids("<|im_end|>")) == "<|im_end|>"
    assert vocabulary.is_end_of_generation(tokenizer.eos_token_id)
