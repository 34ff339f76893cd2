"""The model's own tokenizer (from a GGUF's metadata or a Hugging Face checkpoint directory,
through transformers), with its chat template and the tokens that end a reply.

Stop tokens come from the checkpoint: its EOS tokens (tokenizer and generation_config.json) and the
special token that closes an assistant turn in its chat template (ChatML's <|im_end|>, Gemma's
<end_of_turn>, Llama 3's <|eot_id|>), read off a render of the template: no list of markers.
"""

import json
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


def utf8(text: str) -> str:
  """`text`, or TokenizerError when it holds bytes that were not UTF-8: Python reads such bytes
  in argv and stdin as lone surrogates, which the tokenizer library refuses with a TypeError."""
  try:
    text.encode("utf-8")
  except UnicodeEncodeError as e:
    raw = text[e.start].encode("utf-8", "surrogateescape")
    raise TokenizerError(f"the text is not UTF-8 (byte 0x{raw.hex()} at character {e.start}): "
                         "give UTF-8 text") from e
  return text


ROLES = ("system", "user", "assistant")
_SAVED = ".complete"


def is_saved(directory: os.PathLike) -> bool:
  """True if `load` will read the tokenizer from `directory` instead of building it."""
  return (pathlib.Path(directory) / _SAVED).exists()


def _save(tok, directory: pathlib.Path) -> None:
  """Saves `tok` whole or not at all (a scratch directory renamed into place)."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  directory.parent.mkdir(parents=True, exist_ok=True)
  scratch = pathlib.Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
  try:
    tok.save_pretrained(scratch)
    (scratch / _SAVED).write_text("complete\n")
    shutil.rmtree(directory, ignore_errors=True)
    os.rename(scratch, directory)
  except OSError:
    pass  # another process saved it first, or the cache is read-only: nothing is lost
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


def check_messages(messages: list[dict]) -> None:
  for m in messages:
    if not isinstance(m, dict):
      raise TokenizerError(f"a chat message is a {{'role': ..., 'content': ...}} dict, not {m!r}")
    if m.get("role") not in ROLES:
      raise TokenizerError(f"unknown chat role {m.get('role')!r}; roles: {', '.join(ROLES)}")
    if not isinstance(m.get("content"), str):
      raise TokenizerError(f"the {m['role']} message's content must be text, got "
                           f"{type(m.get('content')).__name__}")
    utf8(m["content"])  # here, a bad byte's position is in the message, not the rendered chat


class HFTokenizer:
  """A transformers tokenizer with the model's chat template and stop tokens."""

  def __init__(self, tokenizer, eos_ids: set[int]):
    self._tok = tokenizer
    self.chat_template = getattr(tokenizer, "chat_template", None)
    self.stop_ids = {i for i in eos_ids if i is not None} | self._turn_end_ids()
    self.bos_id = tokenizer.bos_token_id
    # Llama/Gemma checkpoints prepend BOS to plain text; GPT-2-style BPE models (SmolLM2) do not.
    with_special = tokenizer("a")["input_ids"]
    self._adds_bos = (self.bos_id is not None and bool(with_special)
                      and with_special[0] == self.bos_id)

  def encode(self, text: str) -> list[int]:
    ids = self._tok(utf8(text), add_special_tokens=False)["input_ids"]
    return [self.bos_id] + ids if self._adds_bos else ids

  def decode(self, ids: list[int]) -> str:
    return self._tok.decode(ids, skip_special_tokens=True)

  def chat(self, messages: list[dict]) -> list[int]:
    """The conversation rendered by the model's chat template, ending with the assistant's
    generation prompt, as token ids. Raises TokenizerError (one line) when the model has no
    template or its template refuses the conversation."""
    return self.encode_chat_text(self.chat_text(messages))

  def encode_chat_text(self, text: str) -> list[int]:
    # The template writes its own special tokens (BOS included): nothing is added.
    return self._tok(utf8(text), add_special_tokens=False)["input_ids"]

  def _render(self, messages: list[dict], generation_prompt: bool) -> str:
    import jinja2  # pylint: disable=g-import-not-at-top
    try:
      return self._tok.apply_chat_template(messages, add_generation_prompt=generation_prompt,
                                           tokenize=False)
    except (jinja2.TemplateSyntaxError, jinja2.UndefinedError) as e:
      # The template's own fault (it refuses a conversation with raise_exception instead).
      where = f" (line {e.lineno})" if getattr(e, "lineno", None) else ""
      raise TokenizerError(
          f"the model's chat template is broken{where}: {' '.join(str(e).split())}; fix the "
          "template (chat_template.jinja or tokenizer_config.json's chat_template)"
      ) from e
    except (jinja2.TemplateError, ValueError, TypeError, KeyError) as e:
      roles = ", ".join(sorted({m["role"] for m in messages}))
      raise TokenizerError(
          f"the model's chat template refuses this conversation (roles: {roles}): "
          f"{' '.join(str(e).split()) or type(e).__name__}; drop what it objects to (e.g. "
          "--system, which some templates do not take)") from e

  def _turn_end_ids(self) -> set[int]:
    """The special tokens right after an assistant reply in a render of the chat template."""
    if not self.chat_template:
      return set()
    reply = "\x02reply"
    try:
      text = self._render([{"role": "user", "content": "\x01hi"},
                           {"role": "assistant", "content": reply}], generation_prompt=False)
    except TokenizerError:
      return set()
    if reply not in text:
      return set()
    after = text[text.index(reply) + len(reply):]
    special = set(self._tok.all_special_ids) | {
        i for i, t in self._tok.added_tokens_decoder.items() if t.special}
    ids = self._tok(after, add_special_tokens=False)["input_ids"]
    return {i for i in ids[:2] if i in special}

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
      raise TokenizerError("this model has no chat template (it is a base model): use a plain "
                           "prompt for completion, without --chat, --system or messages")
    return self._render(messages, generation_prompt=True)


# The files that hold a Hugging Face tokenizer's vocabulary: any checkpoint with a tokenizer has
# one (tokenizer_config.json alone only configures one).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model",
                   "tokenizer.tiktoken")


def load(checkpoint: os.PathLike, cache: os.PathLike | None = None) -> HFTokenizer:
  """The tokenizer of a checkpoint (GGUF file or HF directory), with its chat template and stop
  tokens. Built once with transformers' AutoTokenizer and kept in `cache` (building one from GGUF
  metadata takes seconds); later loads read the saved fast tokenizer, which imports no torch.
  Raises TokenizerError when the checkpoint has no usable tokenizer."""
  import transformers  # pylint: disable=g-import-not-at-top
  checkpoint = pathlib.Path(checkpoint)
  cached = pathlib.Path(cache) if cache else None
  saved = cached is not None and (cached / _SAVED).exists()
  if not saved and checkpoint.is_dir() and not any((checkpoint / n).exists()
                                                   for n in TOKENIZER_FILES):
    # transformers would blame a missing sentencepiece or tiktoken, which are not the problem
    raise TokenizerError(f"{checkpoint} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}): "
                         "copy the model's tokenizer files beside its weights")
  try:
    if saved:
      tok = transformers.PreTrainedTokenizerFast.from_pretrained(cached)
    else:
      if checkpoint.suffix == ".gguf":
        tok = transformers.AutoTokenizer.from_pretrained(checkpoint.parent,
                                                         gguf_file=checkpoint.name)
      else:
        tok = transformers.AutoTokenizer.from_pretrained(checkpoint)
      if cached is not None:
        _save(tok, cached)
  except (OSError, ValueError, KeyError) as e:
    reason = " ".join(str(e).split())
    reason = reason if len(reason) <= 300 else reason[:299] + "…"
    raise TokenizerError(f"no tokenizer could be loaded from {checkpoint} ({reason})") from e
  eos = tok.eos_token_id
  stop = {eos} if isinstance(eos, int) else set(eos or [])
  generation = checkpoint / "generation_config.json" if checkpoint.is_dir() else None
  if generation is not None and generation.is_file():
    with_eos = json.loads(generation.read_text()).get("eos_token_id")
    stop |= {with_eos} if isinstance(with_eos, int) else set(with_eos or [])
  return HFTokenizer(tok, stop)
