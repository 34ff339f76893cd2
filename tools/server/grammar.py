"""Constrained decoding through llguidance: a response_format (JSON schema, regex, grammar) becomes
a token mask applied before sampling (runtime.generate.Constraint), so the model can only write
text the format accepts, whatever its weights.

JSON is compact (", " and ": " separators, no free whitespace): with every string and number
bounded by the schema, the answer has a bounded length, which a random-weights model then cannot
run past.
"""

from __future__ import annotations

import threading

import numpy as np

from litezoo.tools.server.protocol import bad

_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class Grammars:
  """Compiles response formats for one tokenizer (built on first use: about a second)."""

  def __init__(self, hf_tokenizer, stop_ids: set[int], vocab_size: int):
    self._hf, self._stop_ids, self.vocab_size = hf_tokenizer, sorted(stop_ids), vocab_size
    self._tokenizer = None
    self._lock = threading.Lock()

  def prepare(self) -> None:
    """Builds llguidance's view of the tokenizer now rather than on the first request."""
    self._lltokenizer()

  def _lltokenizer(self):
    with self._lock:
      if self._tokenizer is None:
        import llguidance  # pylint: disable=g-import-not-at-top
        import llguidance.hf  # pylint: disable=g-import-not-at-top
        n_vocab = max(self.vocab_size, len(self._hf))
        try:
          self._tokenizer = llguidance.hf.from_tokenizer(self._hf, n_vocab=n_vocab,
                                                         eos_token=self._stop_ids or None)
        except ValueError:
          # A decoder llguidance does not read (a bare SentencePiece Metaspace): give it every
          # token's bytes instead, which is all the mask needs.
          self._tokenizer = llguidance.LLTokenizer(
              llguidance.TokenizerWrapper(_Pieces(self._hf)), n_vocab=n_vocab,
              eos_token=self._stop_ids or None)
      return self._tokenizer

  def compile(self, response_format: dict) -> str:
    """The llguidance grammar of a parsed response_format (protocol._response_format); raises
    ApiError 400 naming the parameter when the schema, regex or grammar is invalid."""
    import llguidance  # pylint: disable=g-import-not-at-top
    kind = response_format["type"]
    param = {"json_schema": "response_format.json_schema.schema"}.get(kind,
                                                                     f"response_format.{kind}")
    try:
      if kind == "json_schema":
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            response_format["schema"], defaults=_JSON_OPTIONS)
      else:
        grammar = llguidance.grammar_from(kind, response_format[kind])
    except (ValueError, TypeError) as e:
      raise bad(param, f"{param} is invalid: {e}") from e
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
        grammar, self._lltokenizer())
    if is_error:
      raise bad(param, f"{param} is invalid: {' '.join(messages[0].split())[:500]}")
    try:  # the first mask builds the lexer: where a pattern past llguidance's limits shows
      Constraint(self._lltokenizer(), grammar, self.vocab_size).mask(
          np.zeros(self.vocab_size, np.float32))
    except (ValueError, RuntimeError) as e:
      raise bad(param, f"{param} is past the grammar engine's limits "
                f"({' '.join(str(e).split())[:300]}): simplify it") from e
    return grammar

  def constraint(self, grammar: str) -> "Constraint":
    return Constraint(self._lltokenizer(), grammar, self.vocab_size)


class _Pieces:
  """A tokenizer as llguidance.TokenizerWrapper takes it: each token's bytes (SentencePiece's
  "▁" as a space, "<0xNN>" byte pieces as that byte, special tokens marked by a 0xFF byte)."""

  def __init__(self, hf):
    self._hf = hf
    special = set(hf.all_special_ids) | {i for i, t in hf.added_tokens_decoder.items()
                                         if t.special}
    self.eos_token_id = hf.eos_token_id
    self.bos_token_id = hf.bos_token_id
    self.special_token_ids = sorted(special)
    self.tokens = []
    for i in range(len(hf)):
      piece = hf.convert_ids_to_tokens(i) or ""
      if i in special:
        self.tokens.append(b"\xff" + piece.encode())
      elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        self.tokens.append(bytes([int(piece[3:5], 16)]))
      else:
        self.tokens.append(piece.replace("\u2581", " ").encode())

    self._ids = {}
    for i, b in enumerate(self.tokens):
      if b and i not in special:
        self._ids.setdefault(b, i)
    self._longest = max(map(len, self._ids))

  def __call__(self, data: bytes) -> list[int]:
    """Greedy longest-match over the token bytes: exactly `data`, with no space prepended (the
    tokenizer's own encode adds SentencePiece's leading space, which llguidance must not see)."""
    out, i = [], 0
    while i < len(data):
      for n in range(min(self._longest, len(data) - i), 0, -1):
        if data[i:i + n] in self._ids:
          out.append(self._ids[data[i:i + n]])
          i += n
          break
      else:
        i += 1  # a byte no token writes: the model cannot produce it either
    return out


class Constraint:
  """One generation's llguidance matcher as a runtime.generate.Constraint."""

  def __init__(self, tokenizer, grammar: str, vocab_size: int):
    import llguidance  # pylint: disable=g-import-not-at-top
    self._matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    if self._matcher.is_error():
      raise ValueError(self._matcher.get_error())
    self._vocab = vocab_size

  def finished(self) -> bool:
    return self._matcher.is_stopped()

  def mask(self, logits: np.ndarray) -> None:
    bits = np.frombuffer(self._matcher.compute_bitmask(), np.uint8)
    allowed = np.unpackbits(bits, bitorder="little")[:self._vocab].astype(bool)
    if len(allowed) < len(logits):
      allowed = np.concatenate([allowed, np.zeros(len(logits) - len(allowed), bool)])
    if not allowed.any():  # cannot happen for a valid grammar; never sample from nothing
      raise RuntimeError(f"the grammar allows no token: {self._matcher.get_error()}")
    logits[~allowed[:len(logits)]] = -np.inf

  def accept(self, token: int) -> None:
    if not self._matcher.consume_token(token):
      # llguidance stops a lexer that grows past its limits midway ("too many expressions
      # constructed"): the request's pattern, not the server, is at fault.
      said = (self._matcher.get_error() or "no reason given").splitlines()[0][:200]
      raise GrammarLimitError(f"the grammar engine stopped: {said}")


class GrammarLimitError(RuntimeError):
  """A grammar that compiled and then went past llguidance's limits while generating."""

  def accepting(self) -> bool:
    return self._matcher.is_accepting()
