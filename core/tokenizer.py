"""Tokenizers: the model's own (from a GGUF's metadata or a Hugging Face checkpoint directory,
through transformers), or a byte tokenizer for the random test-sized variants."""

import os
import pathlib
from typing import Protocol

from litezoo.core.errors import ZooError


class TokenizerError(ZooError, ValueError):
  pass


class Tokenizer(Protocol):
  chat_template: str | None
  stop_ids: set[int]
  bos_id: int | None

  def encode(self, text: str) -> list[int]:
    ...

  def decode(self, ids: list[int]) -> str:
    ...

  def chat(self, messages: list[dict]) -> list[int]:
    ...


ROLES = ("system", "user", "assistant")


def check_messages(messages: list[dict]) -> None:
  for m in messages:
    if not isinstance(m, dict):
      raise TokenizerError(f"a chat message is a {{'role': ..., 'content': ...}} dict, not {m!r}")
    if m.get("role") not in ROLES:
      raise TokenizerError(f"unknown chat role {m.get('role')!r}; roles: {', '.join(ROLES)}")
    if not isinstance(m.get("content"), str):
      raise TokenizerError(f"the {m['role']} message's content must be text, got "
                           f"{type(m.get('content')).__name__}")


class HFTokenizer:
  """A transformers tokenizer with the model's chat template and stop tokens."""

  def __init__(self, tokenizer, eos_ids: set[int]):
    self._tok = tokenizer
    self.chat_template = getattr(tokenizer, "chat_template", None)
    self.stop_ids = {i for i in eos_ids if i is not None}
    self.bos_id = tokenizer.bos_token_id
    # Llama/Gemma checkpoints prepend BOS to plain text; GPT-2-style BPE models (SmolLM2) do not.
    with_special = tokenizer("a")["input_ids"]
    self._adds_bos = (self.bos_id is not None and bool(with_special)
                      and with_special[0] == self.bos_id)

  def encode(self, text: str) -> list[int]:
    ids = self._tok(text, add_special_tokens=False)["input_ids"]
    return [self.bos_id] + ids if self._adds_bos else ids

  def decode(self, ids: list[int]) -> str:
    return self._tok.decode(ids, skip_special_tokens=True)

  def chat(self, messages: list[dict]) -> list[int]:
    check_messages(messages)
    if not self.chat_template:
      raise TokenizerError("this model has no chat template (it is a base model): use a plain "
                           "--prompt for completion, without --chat")
    return list(self._tok.apply_chat_template(messages, add_generation_prompt=True,
                                              tokenize=True, return_dict=False))

  def save(self, directory: os.PathLike) -> None:
    self._tok.save_pretrained(directory)

  # What bundles for Google's runtimes need (core/bundle.py).
  @property
  def backend(self):
    """The underlying transformers tokenizer."""
    return self._tok

  @property
  def adds_bos(self) -> bool:
    """Whether encode() puts BOS in front of plain text."""
    return self._adds_bos

  @property
  def vocab_size(self) -> int:
    return len(self._tok)

  def token_text(self, token_id: int) -> str:
    return self._tok.convert_ids_to_tokens(token_id)

  def chat_text(self, messages: list[dict]) -> str:
    """The chat template rendered as text, ending with the assistant's generation prompt."""
    check_messages(messages)
    if not self.chat_template:
      raise TokenizerError("this model has no chat template (it is a base model)")
    return self._tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


class ByteTokenizer:
  """UTF-8 bytes as token ids: lets test-sized models with random weights and a 256-token
  vocabulary run through the same generation path as real ones."""

  chat_template = None
  stop_ids: set[int] = set()
  bos_id = None

  def encode(self, text: str) -> list[int]:
    return list(text.encode("utf-8"))

  def decode(self, ids: list[int]) -> str:
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

  def chat(self, messages: list[dict]) -> list[int]:
    return self.encode(self.chat_text(messages))

  # What bundles for Google's runtimes need (core/bundle.py).
  adds_bos = False
  vocab_size = 256

  def token_text(self, token_id: int) -> str:
    return self.decode([token_id])

  def chat_text(self, messages: list[dict]) -> str:
    check_messages(messages)
    return "".join(f"<{m['role']}>{m['content']}\n" for m in messages) + "<assistant>"


def load(checkpoint: os.PathLike, cache: os.PathLike | None = None) -> HFTokenizer:
  """The tokenizer of a checkpoint (GGUF file or HF directory); kept in `cache` once built,
  since building one from GGUF metadata takes seconds."""
  import transformers  # pylint: disable=g-import-not-at-top
  checkpoint = pathlib.Path(checkpoint)
  cached = pathlib.Path(cache) if cache else None
  try:
    if cached is not None and (cached / "tokenizer_config.json").exists():
      tok = transformers.AutoTokenizer.from_pretrained(cached)
    elif checkpoint.suffix == ".gguf":
      tok = transformers.AutoTokenizer.from_pretrained(checkpoint.parent, gguf_file=checkpoint.name)
    else:
      tok = transformers.AutoTokenizer.from_pretrained(checkpoint)
  except (OSError, ValueError) as e:
    raise TokenizerError(f"no tokenizer could be loaded from {checkpoint} ({e})") from e
  if cached is not None and not (cached / "tokenizer_config.json").exists():
    cached.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(cached)
  eos = tok.eos_token_id
  stop = {eos} if isinstance(eos, int) else set(eos or [])
  # Chat models end a turn with their own marker as well (SmolLM2: <|im_end|>, Gemma: <end_of_turn>).
  for marker in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>"):
    token_id = tok.convert_tokens_to_ids(marker)
    if isinstance(token_id, int) and token_id != tok.unk_token_id:
      stop.add(token_id)
  return HFTokenizer(tok, stop)
