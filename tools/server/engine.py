"""One model instance serving up to `slots` requests at once, in turns, from a bounded queue.

The model keeps `slots` KV caches (one runner each, all sharing one loaded model: its weights,
arena and thread pool; runner.Runner.share). A dispatcher thread takes jobs in arrival order and
starts each on a free slot, the one whose cached tokens share the longest prefix with its
prompt, so the next turn of a conversation prefills only what is new even when other
conversations ran in between (as llama-server's slots do). The running jobs take turns on the model (`Turns`): one model call
each (a prompt's prefill, or one decode step), in arrival order, so a new request's first token
waits for one step of each running reply, not for the replies to finish. Calls never overlap:
each already uses every thread it is given, and the weights are read once per step either way.

Cancelling a job (its client went away) removes it from the queue, or stops its generation at
its next turn.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import threading
import time
import traceback
from typing import Callable

from litezoo.runtime import generate
from litezoo.tools.server.grammar import GrammarLimitError


class QueueFull(Exception):
  """Raised by Engine.submit when max_queue jobs wait already; `retry_after` in seconds."""

  def __init__(self, retry_after: int):
    super().__init__(f"the queue is full; retry after {retry_after} s")
    self.retry_after = retry_after


class Cancelled(Exception):
  """A job's end when its client went away (raised inside generation at the next token)."""


@dataclasses.dataclass
class Result:
  """A finished job: its text (cut at a stop string), why it ended, token counts, timings."""

  text: str
  finish_reason: str  # "stop" or "length"
  prompt_tokens: int
  cached_tokens: int
  completion_tokens: int
  queue_seconds: float
  first_token_seconds: float  # from the start of its generation
  generation_seconds: float


class TextAssembler:
  """Decoded text as tokens arrive, cut at the first stop string, never splitting a UTF-8
  character, and holding back any tail that may be the start of a stop string."""

  def __init__(self, decode: Callable[[list[int]], str], stops: list[str]):
    self.decode, self.stops = decode, stops
    self.ids: list[int] = []
    self.text = ""
    self.sent = 0
    self.stopped = False

  def add(self, token: int) -> str:
    """The new text that is safe to send; sets `stopped` when a stop string appeared."""
    self.ids.append(token)
    text = self.decode(self.ids)
    if text.endswith("\ufffd"):
      return ""  # half of a multi-byte character: wait for the rest
    self.text = text
    if self.stops:
      start = max(0, self.sent - max(map(len, self.stops)))
      found = [i for i in (text.find(s, start) for s in self.stops) if i >= 0]
      if found:
        self.text, self.stopped = text[:min(found)], True
        return self._take(len(self.text))
      return self._take(len(text) - max(_held(text, s) for s in self.stops))
    return self._take(len(text))

  def _take(self, end: int) -> str:
    end = max(end, self.sent)
    chunk, self.sent = self.text[self.sent:end], end
    return chunk

  def flush(self) -> str:
    """What is left to send once generation ended without a stop string."""
    if not self.stopped:
      # A reply cut by max_tokens in the middle of a multi-byte character: its first bytes
      # decode as U+FFFD, which is not text the model wrote.
      self.text = self.decode(self.ids).rstrip("\ufffd")
    return self._take(len(self.text))


def _held(text: str, stop: str) -> int:
  """How many characters at the end of `text` could be the start of `stop` (held back until the
  next token says): the longest k < len(stop) with text ending in stop[:k]. Each candidate start
  is tried once, and a mismatch usually ends at its first character."""
  tail = text[max(0, len(text) - len(stop) + 1):] if len(stop) > 1 else ""
  for i in range(len(tail)):
    if stop.startswith(tail[i:]):
      return len(tail) - i
  return 0


class Turns:
  """Hands the model to one job at a time, first come first served: a job holds its turn while
  it calls the model and passes it on after each token (`yield_turn`) when others wait."""

  def __init__(self):
    self._cond = threading.Condition()
    self._waiting: collections.deque[object] = collections.deque()
    self._held = False

  def take(self) -> None:
    """Blocks until it is this thread's turn."""
    me = object()
    with self._cond:
      self._waiting.append(me)
      while self._held or self._waiting[0] is not me:
        self._cond.wait()
      self._waiting.popleft()
      self._held = True

  def give(self) -> None:
    with self._cond:
      self._held = False
      self._cond.notify_all()

  def yield_turn(self) -> None:
    """Lets every job that waits have its turn first (returns at once if none waits)."""
    with self._cond:
      if not self._waiting:
        return
    self.give()
    self.take()


class Job:
  """One request on its way through the engine; its handler reads `events`:
  ("text", str) while streaming, then ("done", Result) or ("error", Exception)."""

  def __init__(self, context: list[int], max_tokens: int | None, sampling: generate.Sampling,
               stops: list[str], grammar: str | None, stream: bool):
    self.context, self.max_tokens, self.sampling = context, max_tokens, sampling
    self.stops, self.grammar, self.stream = stops, grammar, stream
    self.loop = asyncio.get_running_loop()
    self.events: asyncio.Queue = asyncio.Queue()
    self.cancelled = threading.Event()
    self.submitted = time.perf_counter()

  def emit(self, kind: str, value) -> None:
    self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))


class Engine:
  """The dispatcher thread, its queue and the slots. `make_session()` gives a Session on a fresh
  runner."""

  def __init__(self, make_session: Callable[[], generate.Session], decode, slots: int,
               max_queue: int, grammars=None, log: Callable[[str], None] = print,
               prefix_reuse: bool = True, speculative: generate.PromptLookup | None = None):
    self.prefix_reuse = prefix_reuse
    # Speculative decoding for every request but constrained ones (a grammar would have to
    # judge each draft token before the model scores it).
    self.speculative = speculative
    self._sessions = [make_session() for _ in range(slots)]
    self._used = [0.0] * slots  # last use, for least-recently-used among equal prefixes
    self._busy = [False] * slots
    self._turns = Turns()
    self._threads: list[threading.Thread] = []
    self.capacity = self._sessions[0].runner.kv_cache_max_len
    self._decode, self._grammars, self._log = decode, grammars, log
    self.max_queue = max_queue
    self._queue: collections.deque[Job] = collections.deque()
    self._cond = threading.Condition()
    self._stopping = False
    self.counts = collections.Counter()
    self.max_queued_seen = 0
    self._recent: collections.deque[float] = collections.deque(maxlen=16)
    self._thread = threading.Thread(target=self._dispatch, name="litezoo-engine", daemon=True)
    self._thread.start()

  def room(self, prompt_tokens: int) -> int:
    """The most tokens a reply to a prompt of `prompt_tokens` can have: the KV cache takes the
    prompt and every new token but the last, which is never fed back (a prompt of 1020 in a
    cache of 1024: 5 tokens, as Session.generate stops)."""
    return self.capacity - prompt_tokens + 1

  # --- the handlers' side (event loop thread) ---------------------------------------------------

  def submit(self, job: Job) -> None:
    """Queues `job`; raises QueueFull (with a Retry-After estimate in seconds) when max_queue
    jobs already wait, or when the engine is stopping."""
    with self._cond:
      # Queued jobs that a free slot is about to take do not wait: only the rest count.
      if self._stopping or self._waiting(extra=1) > self.max_queue:
        self.counts["rejected"] += 1
        raise QueueFull(self._retry_after())
      self._queue.append(job)
      self.max_queued_seen = max(self.max_queued_seen, self._waiting())
      self._cond.notify()

  def _waiting(self, extra: int = 0) -> int:
    """Jobs that wait for a slot, with `extra` more queued (lock held)."""
    return max(0, len(self._queue) + extra - self._busy.count(False))

  def cancel(self, job: Job) -> None:
    """Forgets a waiting job, or stops a running one at its next token (idempotent)."""
    with self._cond:
      if job.cancelled.is_set():
        return
      job.cancelled.set()
      if job in self._queue:
        self._queue.remove(job)
        self.counts["cancelled"] += 1

  def status(self) -> dict:
    with self._cond:
      return {"queued": self._waiting(), "running": sum(self._busy),
              "max_queue": self.max_queue, "max_queued_seen": self.max_queued_seen,
              "slots": len(self._sessions), **{k: self.counts[k] for k in
                                               ("served", "cancelled", "rejected", "errors")},
              **({"speculative": {k: self.counts[k] for k in
                                  ("verify_calls", "drafted", "accepted")}}
                 if self.speculative else {})}

  def stop(self) -> None:
    """Finishes the running jobs and every queued one, then ends the dispatcher."""
    with self._cond:
      self._stopping = True
      self._cond.notify_all()
    self._thread.join()

  def _retry_after(self) -> int:
    per_job = sum(self._recent) / len(self._recent) if self._recent else 1.0
    return max(1, math.ceil(per_job * (self._waiting() + 1) / len(self._sessions)))

  # --- the dispatcher and the jobs' threads -----------------------------------------------------

  def _dispatch(self) -> None:
    while True:
      with self._cond:
        while not (self._queue and not all(self._busy)) and not (self._stopping
                                                                 and not self._queue):
          self._cond.wait()
        if not self._queue:  # stopping, nothing left to start
          break
        job = self._queue.popleft()
        slot = self._slot(job.context)
        self._busy[slot] = True
        self._used[slot] = time.perf_counter()
      thread = threading.Thread(target=self._run_on, args=(job, slot), daemon=True,
                                name=f"litezoo-slot-{slot}")
      self._threads = [t for t in self._threads if t.is_alive()] + [thread]
      thread.start()
    for thread in self._threads:
      thread.join()

  def _slot(self, context: list[int]) -> int:
    """The free slot whose cache shares the longest prefix with `context` (least recently used
    among equals); called with the lock held and a slot free."""
    return max((i for i, busy in enumerate(self._busy) if not busy),
               key=lambda i: (generate.shared_prefix(self._sessions[i].history, context),
                              -self._used[i]))

  def _run_on(self, job: Job, slot: int) -> None:
    self._turns.take()
    try:
      self._run(job, self._sessions[slot])
    finally:
      self._turns.give()
      with self._cond:
        self._busy[slot] = False
        self._cond.notify_all()

  def _run(self, job: Job, session: generate.Session) -> None:
    started = time.perf_counter()
    if not self.prefix_reuse:
      session.reset()  # for measuring what reuse saves: every prompt prefilled whole
    text = TextAssembler(self._decode, job.stops)
    first: list[float] = []

    def on_token(token: int) -> bool:
      if job.cancelled.is_set():
        raise Cancelled()
      if not first:
        first.append(time.perf_counter() - started)
      chunk = text.add(token)
      if chunk and job.stream:
        job.emit("text", chunk)
      self._turns.yield_turn()  # one step each: the other running jobs and a new one's prefill
      if job.cancelled.is_set():
        raise Cancelled()
      return text.stopped

    try:
      if job.cancelled.is_set():  # its client left while it waited for its turn
        raise Cancelled()
      constraint = (self._grammars.constraint(job.grammar) if job.grammar is not None
                    else None)
      # Left out (chat): up to the cache's end, the very bound an explicit limit is checked
      # against (app._context), so both stop at the same token.
      max_new = job.max_tokens or self.room(len(job.context))
      out, stats = session.generate(job.context, max_new, job.sampling, on_token,
                                    constraint=constraint,
                                    speculative=self.speculative if constraint is None else None)
    except Cancelled:
      with self._cond:
        self.counts["cancelled"] += 1
      job.emit("error", Cancelled())
      return
    except Exception as e:  # pylint: disable=broad-except
      with self._cond:
        self.counts["errors"] += 1
      if isinstance(e, GrammarLimitError):  # the request's pattern: one line, no trace
        self._log(f"serve: a response_format went past the grammar engine's limits: {e}")
      else:
        self._log(f"serve: generation failed:\n{traceback.format_exc().rstrip()}")
      job.emit("error", e)
      return
    tail = text.flush()
    if tail and job.stream:
      job.emit("text", tail)
    elapsed = time.perf_counter() - started
    self._recent.append(elapsed)
    with self._cond:
      self.counts["served"] += 1
      self.counts.update(verify_calls=stats.verify_calls, drafted=stats.drafted,
                         accepted=stats.accepted)
    job.emit("done", Result(
        text=text.text,
        finish_reason="length" if stats.stopped_by in ("max_new_tokens", "KV cache full")
        else "stop",
        prompt_tokens=len(job.context), cached_tokens=len(job.context) - stats.prompt_tokens,
        completion_tokens=len(out), queue_seconds=started - job.submitted,
        first_token_seconds=first[0] if first else elapsed, generation_seconds=elapsed))
