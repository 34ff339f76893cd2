"""Text generation on the LiteRT runner: prefill, decode through the KV cache, sampling, stops,
and speculative decoding (greedy or sampled) with drafts from the context (prompt lookup) or
from a smaller model."""

import dataclasses
import math
import time
from typing import Callable, Protocol

import numpy as np

from litezoo.core.errors import ZooError
from litezoo.runtime.decoder import Decoder


class GenerationError(ZooError, ValueError):
  pass


class ContextTooLongError(GenerationError):
  """A prompt (with the conversation before it) longer than the KV cache."""


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Greedy at temperature 0; otherwise temperature, then top-k, then top-p (nucleus)."""

  temperature: float = 0.0
  top_k: int = 0  # 0: no limit
  top_p: float = 1.0
  seed: int = 0

  def validate(self) -> None:
    if not math.isfinite(self.temperature) or self.temperature < 0:  # nan and inf are no scale
      raise GenerationError(f"temperature must be a finite number >= 0, got {self.temperature}")
    if self.top_k < 0:
      raise GenerationError(f"top_k must be >= 0 (0: off), got {self.top_k}")
    if not 0 < self.top_p <= 1:
      raise GenerationError(f"top_p must be in (0, 1], got {self.top_p}")
    if self.seed < 0:  # numpy's generators take non-negative seeds only
      raise GenerationError(f"sampling_seed must be 0 or more, got {self.seed}")


def check_fits(tokens: int, capacity: int, conversation: bool = False) -> None:
  """Raises GenerationError when a context of `tokens` cannot be prefilled into a KV cache of
  `capacity` entries. A prompt may fill the cache: prefill's last logits still give one token,
  never fed back. Tools call it before converting, so a prompt that cannot fit costs no minutes.
  Raises ContextTooLongError."""
  if tokens > capacity:
    what, fix = (("the prompt and conversation take", "shorten it, start over") if conversation
                 else ("the prompt takes", "shorten it"))
    raise ContextTooLongError(
        f"{what} {tokens} tokens, but the KV cache holds {capacity}: {fix}, or convert "
        "with a larger --kv_cache_max_len")


def distribution(logits: np.ndarray, sampling: Sampling) -> tuple[np.ndarray, np.ndarray]:
  """The tokens sampling can pick and their probabilities (float64, summing to 1): softmax of
  `logits` ([vocab]) / temperature, cut to top_k, then to the smallest head whose mass reaches
  top_p, most likely first; with neither cut, every token in vocabulary order (sorting 50k-256k
  logits per token would cost more than the draw). Sampling only: at temperature 0 there is
  nothing to sample."""
  z = logits.astype(np.float64)
  # Shifted before the division (so exp never overflows): at a tiny temperature (1e-320) the
  # quotients of unshifted logits overflow to inf, and inf - inf is nan; shifted, they are 0 for
  # the largest and at most -inf for the rest.
  z = (z - z.max()) / sampling.temperature
  if not sampling.top_k and sampling.top_p >= 1:
    probs = np.exp(z)
    return np.arange(len(z)), probs / probs.sum()
  order = np.argsort(-z)
  if sampling.top_k:
    order = order[:sampling.top_k]
  probs = np.exp(z[order])
  probs /= probs.sum()
  if sampling.top_p < 1:
    keep = int(np.searchsorted(np.cumsum(probs), sampling.top_p) + 1)
    order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
  return order, probs


def _dense(order: np.ndarray, probs: np.ndarray, vocab: int) -> np.ndarray:
  """`distribution`'s probabilities over the whole vocabulary ([vocab] float64, 0 where cut)."""
  dense = np.zeros(vocab)
  dense[order] = probs
  return dense


def sample(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> int:
  """The next token: argmax at temperature 0, else a draw from `distribution`."""
  if sampling.temperature == 0:
    return int(np.argmax(logits))
  order, probs = distribution(logits, sampling)
  return int(order[rng.choice(len(order), p=probs)])


def speculative_sample(rows: np.ndarray, draft: list[int], sampling: Sampling,
                       rng: np.random.Generator,
                       draft_dists: list[np.ndarray] | None = None) -> list[int]:
  """Speculative sampling: draft token i (proposed with probability q_i) is kept with probability
  min(1, p_i(token) / q_i(token)), where p_i is `distribution` of `rows[i]`; the first one refused
  is replaced by a draw from the residual max(0, p_i - q_i), renormalized; if all are kept, one
  more token is drawn from the last row. Every token then follows the target's own distribution,
  as plain sampling's do (Leviathan et al., "Fast Inference from Transformers via Speculative
  Decoding", 2023; Chen et al., "Accelerating Large Language Model Decoding with Speculative
  Sampling", 2023).

  rows: [len(draft) + 1, vocab] float32 logits, row i scoring the token after draft[:i].
  draft_dists: q_i over the vocabulary ([vocab] each); None for drafts proposed with certainty
  (prompt lookup: q_i a point mass, so a token is kept with probability p_i(token) and the
  residual is p_i without it). Returns the kept draft tokens followed by one sampled token.
  """
  out: list[int] = []
  for i, (row, token) in enumerate(zip(rows, draft)):
    p = _dense(*distribution(row, sampling), len(row))
    q = draft_dists[i] if draft_dists is not None else None
    q_token = 1.0 if q is None else float(q[token])
    if q_token > 0 and rng.random() * q_token < p[token]:
      out.append(token)
      continue
    if q is None:
      residual = p
      residual[token] = 0.0
    else:
      residual = np.maximum(p - q, 0.0)
    total = residual.sum()
    # total is 0 only if p == q (then nothing is refused): guard against rounding all the same.
    residual = residual / total if total > 0 else p
    out.append(int(rng.choice(len(residual), p=residual)))
    return out
  return out + [sample(rows[len(draft)], sampling, rng)]


class Constraint(Protocol):
  """Limits which tokens may come next (constrained decoding: a grammar, a JSON schema).

  Session.generate asks `finished()` before each token (True: only a stop can follow, and
  generation ends as at a stop token), lets `mask` forbid tokens, then reports the sampled one to
  `accept`. Stop tokens are the constraint's to allow: a grammar allows them once it is complete.
  """

  def finished(self) -> bool:
    ...

  def mask(self, logits: np.ndarray) -> None:
    """Sets the logits ([vocab] float32) of every forbidden token to -inf, in place."""
    ...

  def accept(self, token: int) -> None:
    ...


@dataclasses.dataclass(frozen=True)
class PromptLookup:
  """Speculative decoding with drafts from the context itself (prompt lookup): the tokens that
  followed the latest earlier occurrence of the context's last n-gram (n from ngram_max down to
  ngram_min) are scored in one verify_<k> call, and as many as the model agrees with are kept.
  Method: Saxena, "Prompt Lookup Decoding" (2023), github.com/apoorvumang/prompt-lookup-decoding;
  verification as in Leviathan et al., "Fast Inference from Transformers via Speculative
  Decoding" (2023), greedy case. ngram_min=2 by default: one-token matches rarely continue
  (measured in docs/speed.md)."""

  draft_tokens: int = 0  # 0: the longest verify signature's k - 1; more is refused
  ngram_max: int = 3
  ngram_min: int = 2

  def validate(self, target: Decoder | None = None) -> None:
    del target
    if self.draft_tokens < 0 or not 1 <= self.ngram_min <= self.ngram_max:
      raise GenerationError(f"prompt lookup needs draft_tokens >= 0 and 1 <= ngram_min <= "
                            f"ngram_max, got {self}")

  def propose(self, history: list[int], max_draft: int, sampling: Sampling,
              rng: np.random.Generator) -> tuple[list[int], None]:
    """At most `max_draft` tokens to score after `history`; None: each one proposed with
    certainty (a point-mass draft distribution)."""
    del sampling, rng
    return prompt_lookup(history, max_draft, self.ngram_max, self.ngram_min), None


def shared_prefix(a: list[int], b: list[int]) -> int:
  """How many tokens `a` and `b` share from the start (what a KV cache holding `a` can keep)."""
  n = 0
  for x, y in zip(a, b):
    if x != y:
      break
    n += 1
  return n


def prompt_lookup(history: list[int], max_draft: int, ngram_max: int = 3,
                  ngram_min: int = 1) -> list[int]:
  """The `max_draft` tokens that followed the latest earlier occurrence of the longest suffix
  n-gram of `history` (n from ngram_max down to ngram_min), copied as an overlapping copy does:
  where the continuation reaches the end of `history`, it goes on with the tokens it drafted
  (text that repeats every few tokens is drafted whole, not a few tokens at a time); [] if there
  is no occurrence."""
  h = np.asarray(history, np.int64)
  size = len(h)
  if max_draft <= 0:
    return []
  for n in range(ngram_max, ngram_min - 1, -1):
    if size <= n:
      continue
    # Starts i of h[i:i+n] == the last n tokens, with at least one token after the match.
    windows = np.lib.stride_tricks.sliding_window_view(h[:size - 1], n)
    hits = np.flatnonzero((windows == h[size - n:]).all(axis=1))
    if len(hits):
      start = int(hits[-1]) + n
      extended = h.tolist()
      for j in range(max_draft):  # start + j is always behind the end: an overlapping copy
        extended.append(extended[start + j])
      return extended[size:]
  return []


class DraftModel:
  """Speculative decoding with drafts from a smaller model that shares the target's tokenizer:
  it decodes `draft_tokens` tokens (greedy, or sampled with the request's settings), which the
  target scores in one verify_<k> call. The draft's own KV cache follows the target's history:
  only what it has not seen is fed before each draft. Method: Leviathan et al., "Fast Inference
  from Transformers via Speculative Decoding" (2023); Chen et al., "Accelerating Large Language
  Model Decoding with Speculative Sampling" (2023).

  runner: the draft model's Decoder (a Runner of its own); draft_tokens 0: the target's longest
  verify_<k> minus one.
  """

  def __init__(self, runner: Decoder, draft_tokens: int = 0):
    self.runner, self.draft_tokens = runner, draft_tokens
    self.history: list[int] = []  # what the draft's cache holds, in order

  def validate(self, target: Decoder | None = None) -> None:
    if self.draft_tokens < 0:
      raise GenerationError(f"draft_tokens must be >= 0, got {self.draft_tokens}")
    if target is not None and self.runner.kv_cache_max_len < target.kv_cache_max_len:
      raise GenerationError(
          f"the draft model's KV cache holds {self.runner.kv_cache_max_len} tokens, fewer than "
          f"the target's {target.kv_cache_max_len}: convert the draft with "
          f"--kv_cache_max_len={target.kv_cache_max_len}")

  def propose(self, history: list[int], max_draft: int, sampling: Sampling,
              rng: np.random.Generator) -> tuple[list[int], list[np.ndarray] | None]:
    """`max_draft` tokens after `history` and, sampling, the draft's distribution over the
    vocabulary at each ([vocab] float64 each; None when greedy)."""
    if max_draft <= 0:
      return [], None
    common = min(shared_prefix(self.history, history), len(history) - 1)  # feed one at least
    self.runner.position = common  # rewinding is free: later entries are masked and overwritten
    fed = history[common:]
    try:
      logits = (self.runner.decode(fed[0]) if len(fed) == 1 else self.runner.prefill(fed)[-1])
    except BaseException:
      self.history = self.history[:common]
      raise
    self.history = list(history)
    draft: list[int] = []
    dists: list[np.ndarray] = []
    while True:
      if sampling.temperature == 0:
        draft.append(int(np.argmax(logits)))
      else:
        order, probs = distribution(logits, sampling)
        dists.append(_dense(order, probs, len(logits)))
        draft.append(int(order[rng.choice(len(order), p=probs)]))
      if len(draft) == max_draft:
        return draft, (dists if sampling.temperature else None)
      logits = self.runner.decode(draft[-1])
      self.history.append(draft[-1])


MAX_BACKOFF = 32  # most plain decode steps between a refused draft and the next one


@dataclasses.dataclass
class Stats:
  prompt_tokens: int = 0
  prefill_seconds: float = 0.0
  generated_tokens: int = 0
  decode_seconds: float = 0.0
  stopped_by: str = ""
  # Speculative decoding: draft tokens scored, and how many of them the model agreed with.
  verify_calls: int = 0
  decode_calls: int = 0  # plain decode steps (the model calls after prefill are these + verify)
  drafted: int = 0
  accepted: int = 0

  @property
  def acceptance(self) -> float:
    return self.accepted / self.drafted if self.drafted else 0.0

  @property
  def prefill_tps(self) -> float:
    return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds else 0.0

  @property
  def decode_tps(self) -> float:
    # The first new token comes from prefill's logits: decode produced the rest.
    steps = max(self.generated_tokens - 1, 0)
    return steps / self.decode_seconds if self.decode_seconds else 0.0

  def line(self) -> str:
    calls = "verify call" if self.verify_calls == 1 else "verify calls"
    spec = (f"; {self.verify_calls} {calls}, {self.accepted}/{self.drafted} draft tokens "
            f"accepted" if self.verify_calls else "")
    if self.generated_tokens > 1:
      decode = f"decode {self.generated_tokens} tokens at {self.decode_tps:.1f} tok/s"
    else:  # no decode step ran: a rate would read 0.0 tok/s
      decode = ("1 token, from the prefill's logits (no decode step)" if self.generated_tokens
                else "no token")
    return (f"prefill {self.prompt_tokens} tokens at {self.prefill_tps:.1f} tok/s, {decode} "
            f"({self.stopped_by}{spec})")


class Session:
  """A conversation with one model: what has been fed stays in the KV cache between turns."""

  def __init__(self, runner: Decoder, stop_ids: set[int]):
    self.runner = runner
    self.stop_ids = set(stop_ids)
    self.history: list[int] = []  # every token in the cache, in order

  def reset(self) -> None:
    self.runner.reset()
    self.history = []

  def generate(self, context: list[int], max_new_tokens: int, sampling: Sampling = Sampling(),
               on_token: Callable[[int], bool | None] = lambda _: None, *,
               speculative: PromptLookup | DraftModel | None = None,
               constraint: Constraint | None = None) -> tuple[list[int], Stats]:
    """Continues from `context`, the whole token sequence so far (the cache keeps the part that
    was already fed: only what follows the common prefix is prefilled).

    `on_token` sees each new token; returning True ends generation after it (a stop string the
    caller found); an exception it raises ends generation too and propagates, the cache still
    holding `history` exactly (how a server cancels). `constraint` limits the tokens sampled.

    With `speculative` (the runner needs verify_<k> signatures), drafts (from the context, or
    from a smaller model) are scored k tokens per call. Greedy, the tokens are exactly those of
    plain greedy decoding, since each one kept is the argmax of the logits the model computed for
    its position; sampling, drafts are kept or replaced by speculative sampling
    (`speculative_sample`), so the tokens follow the same distribution as plain sampling's (not
    the same draws for a seed). Raises GenerationError for options that cannot apply.
    """
    sampling.validate()
    if max_new_tokens <= 0:
      raise GenerationError(f"max_new_tokens must be positive, got {max_new_tokens}")
    if not context:
      raise GenerationError("the prompt is empty")
    draft_len = self._draft_len(speculative)
    if draft_len and constraint is not None:
      raise GenerationError("speculative decoding and constrained decoding do not combine here: "
                            "drop one")
    capacity = self.runner.kv_cache_max_len
    check_fits(len(context), capacity, conversation=bool(self.history))
    common = min(shared_prefix(self.history, context), len(context) - 1)  # feed one at least
    # Rewinding is free: entries past the position are hidden by the mask and overwritten.
    self.runner.position = common
    self.history = list(context)
    rng = np.random.default_rng(sampling.seed)
    stats = Stats(prompt_tokens=len(context) - common)
    start = time.perf_counter()
    try:
      logits = self.runner.prefill(context[common:])[-1]
    except BaseException:
      # Only the common prefix is still known to be in the cache; the next call refeeds the rest.
      self.history = self.history[:common]
      raise
    stats.prefill_seconds = time.perf_counter() - start
    out: list[int] = []
    start = time.perf_counter()
    # Tokens to emit (None: the constraint is complete); the last one is not in the cache yet.
    new = self._sample(logits, sampling, rng, constraint)
    wait = failures = 0  # speculation's backoff: plain steps before the next draft
    while True:
      stop = self._emit(new, out, max_new_tokens, on_token, constraint)
      if stop:
        stats.stopped_by = stop
        break
      if self.runner.position >= capacity:
        stats.stopped_by = "KV cache full"
        break
      pending = out[-1]
      draft = []
      dists = None
      if draft_len and not wait:
        room = min(draft_len, capacity - self.runner.position - 1, max_new_tokens - len(out))
        draft, dists = speculative.propose(self.history + [pending], room, sampling, rng)
      if not draft:
        wait = max(wait - 1, 0)
        stats.decode_calls += 1
        logits = self.runner.decode(pending)
        self.history.append(pending)
        new = self._sample(logits, sampling, rng, constraint)
        continue
      base = self.runner.position
      rows = self.runner.verify([pending] + draft)
      if sampling.temperature == 0:
        best = rows.argmax(axis=-1)
        accepted = 0
        while accepted < len(draft) and int(best[accepted]) == draft[accepted]:
          accepted += 1
        new = draft[:accepted] + [int(best[accepted])]
      else:
        new = speculative_sample(rows, draft, sampling, rng, dists)
        accepted = len(new) - 1
      stats.verify_calls += 1
      stats.drafted += len(draft)
      stats.accepted += accepted
      # A refused draft cost more than a decode step: after each one in a row, draft again only
      # after 2, 4, ... MAX_BACKOFF plain steps (free text rarely repeats its context).
      failures = 0 if accepted else failures + 1
      wait = min(1 << failures, MAX_BACKOFF) if failures else 0
      # The pending token and the accepted drafts stay in the cache; the rest is rewound.
      self.runner.position = base + 1 + accepted
      self.history += [pending] + draft[:accepted]
    stats.decode_seconds = time.perf_counter() - start
    stats.generated_tokens = len(out)
    return out, stats

  def _draft_len(self, speculative: PromptLookup | DraftModel | None) -> int:
    """Draft tokens per verify call (0: no speculation); refuses what cannot apply."""
    if speculative is None:
      return 0
    speculative.validate(self.runner)
    lengths = getattr(self.runner, "verify_lengths", None)
    if not lengths:
      raise GenerationError("speculative decoding needs verify_<k> signatures, which this model "
                            "has none of: convert it with --verify_lengths=8")
    longest = max(lengths) - 1
    if speculative.draft_tokens > longest:
      raise GenerationError(
          f"draft_tokens={speculative.draft_tokens} is more than verify_{longest + 1} scores "
          f"after the pending token ({longest}): ask for at most {longest}, or convert with a "
          "longer --verify_lengths")
    return speculative.draft_tokens or longest

  @staticmethod
  def _sample(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator,
              constraint: Constraint | None) -> list[int] | None:
    """The next token as a one-token list, or None when the constraint allows only a stop."""
    if constraint is not None:
      if constraint.finished():
        return None
      logits = np.array(logits, np.float32)  # the runner's buffer is not ours to write
      constraint.mask(logits)
    return [sample(logits, sampling, rng)]

  def _emit(self, new: list[int] | None, out: list[int], max_new_tokens: int,
            on_token: Callable[[int], bool | None], constraint: Constraint | None) -> str:
    """Appends `new` to `out` up to a stop token, the caller's stop or the limit; returns why it
    stopped, or ""."""
    if new is None:
      return "constraint complete"
    for token in new:
      if token in self.stop_ids:
        return "stop token"
      if constraint is not None:
        constraint.accept(token)
      out.append(token)
      if on_token(token):
        return "caller"
      if len(out) >= max_new_tokens:
        return "max_new_tokens"
    return ""


class Chat:
  """A conversation through a chat template, its tokens kept in the session's KV cache.

  A turn that fails (a message the template refuses, a conversation longer than the cache, an
  interrupted prefill) leaves the conversation exactly as it was before that turn.
  """

  def __init__(self, session: Session, tokenizer, system: str | None = None):
    self.session, self.tokenizer = session, tokenizer
    self.system = system
    self.messages: list[dict] = [] if system is None else [{"role": "system", "content": system}]

  def reset(self) -> None:
    """Forgets every turn (the system message stays)."""
    self.session.reset()
    self.messages = self.messages[:1] if self.system is not None else []

  def send(self, text: str, max_new_tokens: int, sampling: Sampling = Sampling(),
           on_token: Callable[[int], None] = lambda _: None,
           speculative: PromptLookup | None = None) -> tuple[str, Stats]:
    """Adds the user's `text`, generates the reply; returns (reply text, stats)."""
    messages = [*self.messages, {"role": "user", "content": text}]
    context = self.tokenizer.chat(messages)  # raises before anything changes
    out, stats = self.session.generate(context, max_new_tokens, sampling, on_token,
                                       speculative=speculative)
    reply = self.tokenizer.decode(out)
    self.messages = [*messages, {"role": "assistant", "content": reply}]
    return reply, stats


class TextStream:
  """Turns token ids into printable text as they come, never splitting a UTF-8 character."""

  def __init__(self, decode: Callable[[list[int]], str], write: Callable[[str], None]):
    self.decode, self.write = decode, write
    self.ids: list[int] = []
    self.printed = ""

  def __call__(self, token: int) -> None:
    self.ids.append(token)
    text = self.decode(self.ids)
    if text.endswith("\ufffd"):
      return  # half of a multi-byte character: wait for the rest
    self.write(text[len(self.printed):])
    self.printed = text
