"""Drives a converted .tflite in LiteRT: prefill, decode, KV cache (runtime/decoder.py's Decoder).

Every tool that runs a model (verify, generate, evaluate, serve, benchmark, explore) goes through
this class, so a speed-up or a fix reaches all of them. It imports neither torch nor transformers.

Two backends run the same kernels (XNNPACK) and give the same logits:
- "compiled" (default): LiteRT's CompiledModel. The KV cache lives in tensor buffers bound as both
  input and output of every signature, so a call updates it in place instead of copying every
  layer's cache through numpy; packed weights are kept in an XNNPACK weight cache file, so a second
  start maps them instead of packing again, and all signatures share one packed copy.
- "interpreter": the classic Interpreter with signature runners, kept as the reference the
  benchmark (its zoo-interpreter peer) and tests/runner_test.py compare against.
"""

import contextlib
import copy
import ctypes
import functools
import hashlib
import os
import pathlib
import re
import struct
import tempfile
import time
from importlib import metadata

import numpy as np

BACKENDS = ("compiled", "interpreter")


def kv_sequence_axis(layout: str) -> tuple[int, int]:
  """The sequence axis of K and V in a cache of `layout` (core.spec.KV_LAYOUTS)."""
  return (1, 1) if layout == "default" else (2, 3)


def guess_layout(k_shape, v_shape) -> str:
  """The layout of a bare .tflite (no manifest) from its cache shapes: K and V have one shape in
  the default layout, transposed ones otherwise; refused when a transposed cache is exactly as
  long as a head is wide (both shapes then agree)."""
  if list(k_shape) != list(v_shape):
    return "transposed"
  if k_shape[1] == k_shape[3]:
    raise ValueError(f"cannot tell the KV cache layout of a cache shaped {list(k_shape)} without "
                     "the model's manifest; keep the .manifest.json beside the .tflite")
  return "default"


class Runner:
  """One sequence at a time; the KV cache lives here between calls.

  `position` is how many tokens the cache holds; setting it lower rewinds for free (entries past it
  are hidden by the causal mask and overwritten by later calls); it cannot be set higher.

  Signatures it uses (core.spec.Signatures): prefill_<n> (the last token's logits, or every
  token's in files converted before manifest format 3), verify_<k> (every token's logits), decode,
  decode_w<W> (decode over a cache of only W entries), w<W>_prefill_<n> (prefill into window W)
  and w<W>_verify_<k> (verify in window W). Each window has its own cache buffers; the used prefix
  is copied into the next set when the sequence moves: each prefill chunk goes into the smallest
  window with prefill signatures that holds it padded (else the full cache), so a long prompt's
  first chunks attend over a window's entries, not the full cache's; a verify goes into the
  smallest window with verify signatures that holds the sequence after it, a decode into the
  smallest window longer than the sequence, up to a larger one as it grows. The runner holds only
  the set the sequence is in: a set is made when the sequence enters it and freed when it leaves
  (and on reset), so a session that stays within 256 entries never holds the full cache (float32 K
  and V for every layer and position: 44 MiB for TinyLlama 1.1B at 1024 entries), and one that
  grows to 1,000 tokens ends holding the full cache alone, not every window it passed through. The
  one exception is speculative decoding's round trip at a window's edge: a verify padded past the
  window's end runs in the next set up and the decode after it comes back, so the set left by a
  verify, or by a decode returning from a verify's set, is kept while it can still hold the
  sequence (remaking it on each trip cost the buffers' first run every time).
  """

  def __init__(self, model: str | os.PathLike | bytes, num_threads: int = 2,
               backend: str = "compiled", weight_cache: bool = True,
               kv_layout: str | None = None, use_windows: bool = True):
    """`model` is a .tflite path (its manifest, when beside it, gives the KV layout) or its
    bytes; `kv_layout` overrides; `use_windows=False` decodes over the full cache only. Raises
    ValueError for a file that is not a zoo LLM (artifacts.files.ArtifactError for one that is not
    a LiteRT model or cannot be read: the header is checked before the runtime parses it)."""
    # pylint: disable=g-import-not-at-top
    from litezoo.artifacts import files, manifest
    if isinstance(model, (bytes, bytearray)):
      files.check_tflite_header(bytes(model[:8]), len(model), "the model bytes")
    else:
      files.check_tflite(model, interpreter=False)
      if kv_layout is None:
        found = manifest.find(model)
        kv_layout = found.manifest.signatures.kv_layout if found is not None else None
    if backend == "compiled":
      self._backend = _CompiledBackend(model, num_threads, weight_cache)
    elif backend == "interpreter":
      self._backend = _InterpreterBackend(model, num_threads)
    else:
      raise ValueError(f"unknown runner backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    self.backend = backend
    signatures = self._backend.signatures
    found = lambda pattern: sorted(
        int(m.group(1)) for name in signatures if (m := re.fullmatch(pattern, name)))
    self.prefill_lengths = found(r"prefill_(\d+)")
    self.verify_lengths = found(r"verify_(\d+)")
    self.windows = found(r"decode_w(\d+)") if use_windows else []
    self.prefill_windows = sorted({w for w in found(r"w(\d+)_prefill_\d+") if w in self.windows})
    self.verify_windows = sorted({w for w in found(r"w(\d+)_verify_\d+") if w in self.windows})
    if not self.prefill_lengths or "decode" not in signatures:
      raise ValueError(f"not a zoo LLM: signatures are {sorted(signatures)}, expected "
                       "prefill_<n> and decode")
    cache = self._backend.cache_spec
    self.kv_layout = kv_layout or guess_layout(cache["kv_cache_k_0"][0], cache["kv_cache_v_0"][0])
    k_axis, v_axis = kv_sequence_axis(self.kv_layout)
    self._seq_axes = {n: k_axis if n.startswith("kv_cache_k_") else v_axis for n in cache}
    self.kv_cache_max_len = int(cache["kv_cache_k_0"][0][k_axis])
    self.vocab_size = self._backend.vocab_size
    # Old files (manifest format 2) return every position from prefill.
    self.prefill_all_logits = all(self._backend.rows(f"prefill_{n}") == n
                                  for n in self.prefill_lengths)
    self.reset()

  @property
  def weight_cache_path(self) -> pathlib.Path | None:
    """The XNNPACK weight cache file in use, if any."""
    return getattr(self._backend, "weight_cache_path", None)

  @property
  def scores_all_positions(self) -> bool:
    """True if prefill(all_logits=True) works: prefill returns every position, or the file has
    verify_<k> signatures."""
    return self.prefill_all_logits or bool(self.verify_lengths)

  def share(self) -> "Runner":
    """Another runner on the same loaded model (its weights, packed weights, arena and thread
    pool) with a KV cache of its own, starting empty: how a server keeps several conversations.
    Calls on runners that share a model must not overlap."""
    other = copy.copy(self)
    other._backend = self._backend.share()  # pylint: disable=protected-access
    other.reset()
    return other

  def reset(self) -> None:
    self._home = None  # the cache set holding the sequence: None = the full cache, else a window
    self._spare = _NO_SET  # the other set of a speculative round trip, kept for the way back
    self._verified = False  # whether the last call was a verify
    self._position = 0
    self._release(keep=())  # the next call makes the set it needs, zeroed

  @property
  def position(self) -> int:
    """How many tokens the cache holds."""
    return self._position

  @position.setter
  def position(self, value: int) -> None:
    # Higher would expose entries never written to this set (a window holds only the copied prefix).
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ValueError(f"position must be an integer, got {value!r}")
    value = int(value)
    if not 0 <= value <= self._position:
      raise ValueError(f"position {value} is not a rewind: the cache holds {self._position} "
                       f"tokens; set a position from 0 to {self._position}")
    self._position = value

  def _token_ids(self, tokens) -> list[int]:
    """`tokens` (any iterable of integers) as a list; ValueError naming a token that is not an
    integer id of this model's vocabulary."""
    try:
      ids = list(tokens)
    except TypeError:
      raise ValueError(f"tokens must be a sequence of token ids, got {tokens!r}") from None
    for t in ids:
      if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
        raise ValueError(f"token ids must be integers, got {t!r}: tokenize with this model's "
                         "tokenizer")
    ids = [int(t) for t in ids]
    if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
      raise ValueError(f"token id {min(ids) if min(ids) < 0 else max(ids)} is outside the "
                       f"vocabulary of {self.vocab_size}: tokenize with this model's tokenizer")
    return ids

  @property
  def window(self) -> int | None:
    """The cache holding the sequence: a window's length, or None for the full cache."""
    return self._home

  def _move(self, window: int | None, verify: bool = False) -> None:
    """Makes `window` the sequence's set before a call (a verify when `verify`): copies the first
    `position` entries of every layer's cache into it, then frees every other set but a spare: the
    set left by a verify, or by a decode right after one, while it can still hold the sequence."""
    if window != self._home:
      if self._position:  # an empty sequence has nothing to copy (stale entries are masked)
        self._backend.copy_cache(self._home, window, self._position, self._seq_axes)
      self._spare = self._home if verify or self._verified else _NO_SET
      self._home = window
    self._verified = verify
    keep = {self._home}
    if self._spare is not _NO_SET and self._position < (self._spare or self.kv_cache_max_len):
      keep.add(self._spare)
    self._release(keep)

  def _release(self, keep) -> None:
    """Frees every cache set not in `keep` (windows, None for the full cache)."""
    gone = [window for window in self._backend.caches if window not in keep]
    for window in gone:
      self._backend.drop_cache(window)
    if gone:
      _return_freed_memory()

  def prefill(self, tokens: list[int], all_logits: bool = False) -> np.ndarray:
    """Feeds `tokens` after what is cached; returns the logits of the last one [1, vocab], or of
    every one [len(tokens), vocab] with `all_logits`.

    Uses the smallest signature that fits (prefill_<n>, or w<W>_prefill_<n> in the smallest
    window W that holds the chunk; verify_<k> for all_logits when prefill returns only the last
    row), and several chunks if none does, moving up through the windows as the sequence grows (a
    600-token prompt prefills its first 256 tokens in window 256, the next 256 in window 512 and
    the rest in the full cache). Padding slots get the last real
    token's position (where a last-logits prefill finds that token) and write cache entries past
    the sequence, which the causal mask hides and later calls overwrite. Raises ValueError if the
    tokens do not fit the cache, or all_logits is asked of a file that cannot give them.
    """
    tokens = self._token_ids(tokens)
    if not tokens:
      raise ValueError("prefill needs at least one token")
    return self._prefill(tokens, all_logits)

  def _prefill(self, tokens: list[int], all_logits: bool) -> np.ndarray:
    """prefill() on `tokens` already checked by _token_ids (and not empty)."""
    if self._position + len(tokens) > self.kv_cache_max_len:
      raise ValueError(f"{self._position + len(tokens)} tokens do not fit the KV cache of "
                       f"{self.kv_cache_max_len}")
    kind, lengths, window = "prefill", self.prefill_lengths, None
    if not all_logits:  # the set the sequence ends in: the smallest window that holds it all
      window = next((w for w in self.prefill_windows if self._position + len(tokens) <= w), None)
      if window is not None:
        lengths = [n for n in self.prefill_lengths if n <= window]
    if all_logits and not self.prefill_all_logits:
      if not self.verify_lengths:
        raise ValueError("this model's prefill returns the last token's logits only and it has "
                         "no verify_<k> signature: convert it with --verify_lengths (or "
                         "--prefill_logits=all) to score every position")
      kind, lengths = "verify", self.verify_lengths
      # A window whose room takes the tokens padded to the verify length used: a padded slot
      # past the window's end would have the tail fed one token at a time.
      padded = next((k for k in lengths if k >= len(tokens)), len(tokens))
      window = next((w for w in self.verify_windows if self._position + padded <= w), None)
      if window is not None:
        kind = f"w{window}_verify"
        lengths = [k for k in lengths if k <= window]
    verify = kind.endswith("verify")
    if all_logits:  # a last-logits prefill moves chunk by chunk, below
      self._move(window, verify=verify)
    end = window or self.kv_cache_max_len
    logits = []
    rest = list(tokens)
    while rest:
      # A padded slot past the cache end would make the cache update clamp and shift: only use
      # signatures that fit the room left; near the end, feed tokens one by one through decode.
      usable = [n for n in lengths if n <= end - self._position]
      if not usable and not all_logits and len(rest) > _TAIL_DECODE_STEPS and (
          self._position + self.prefill_lengths[0] <= self.kv_cache_max_len):
        # A tail with no room for a padded chunk in the set the sequence ends in: one padded
        # chunk in a larger set costs less than a decode step per token (the next decode moves
        # back, copying the used prefix).
        usable = self.prefill_lengths[:1]
      if not usable:
        logits.extend(self._decode(t, window, verify=verify)[None] for t in rest)
        break
      fitting = [n for n in usable if n >= len(rest)]
      length = fitting[0] if fitting else usable[-1]
      chunk, rest = rest[:length], rest[length:]
      name = f"{kind}_{length}"
      if not all_logits:
        # A chunk attends over its set's every entry, so an early chunk of a long prompt runs in
        # the smallest window that holds it padded; the move copies the used prefix, which costs
        # far less than attending over the full cache.
        at = next((w for w in self.prefill_windows if self._position + length <= w), None)
        self._move(at)
        name = f"prefill_{length}" if at is None else f"w{at}_prefill_{length}"
      padded = np.zeros((1, length), np.int32)
      padded[0, :len(chunk)] = chunk
      positions = np.full((length,), self._position + len(chunk) - 1, np.int32)
      positions[:len(chunk)] = np.arange(self._position, self._position + len(chunk))
      out = self._backend.run(name, padded, positions, len(chunk))
      if all_logits:
        logits.append(out)
      elif not rest:
        logits.append(out[-1:])
      self._position += len(chunk)
    return np.concatenate(logits)[-1:] if not all_logits else np.concatenate(logits)

  def verify(self, tokens: list[int]) -> np.ndarray:
    """Feeds `tokens` and returns the logits of every one [len(tokens), vocab] (speculative
    decoding scores a draft with one call); the caller rewinds `position` to the accepted ones.
    Runs in the smallest verify window that holds the sequence after the padded call
    (w<W>_verify_<k>), which is where decode runs too, else on the full cache; a decode after a
    verify on the full cache moves back into a window (one copy of the used prefix, which costs
    less than attending over the whole cache at every later step)."""
    tokens = self._token_ids(tokens)
    if not tokens:
      raise ValueError("verify needs at least one token")
    return self._prefill(tokens, all_logits=True)

  def decode(self, token: int) -> np.ndarray:
    """Feeds one token; returns its logits [vocab]."""
    if self._position >= self.kv_cache_max_len:
      raise ValueError(f"the KV cache of {self.kv_cache_max_len} tokens is full")
    (token,) = self._token_ids((token,))
    return self._decode(token, next((w for w in self.windows if w > self._position), None))

  def _decode(self, token: int, window: int | None, verify: bool = False) -> np.ndarray:
    self._move(window, verify)
    out = self._backend.run("decode" if window is None else f"decode_w{window}",
                            np.array([[token]], np.int32), np.array([self._position], np.int32), 1)
    self._position += 1
    return out[0]


_NO_SET = object()  # Runner._spare when there is none (None names the full cache)
# A prefill tail of at most this many tokens that no padded signature fits goes through decode,
# token by token; a longer one runs as one padded chunk in a larger set. The break-even is about
# 5 tokens on TinyLlama 1.1B (a decode step 40 ms, the chunk with both moves 0.2 s) and 8 on
# SmolLM2 135M (6.5 ms against 50-70 ms; docs/speed.md, 2026-12-07).
_TAIL_DECODE_STEPS = 4


@functools.cache
def _malloc_trim():
  """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
  try:
    return ctypes.CDLL(None).malloc_trim
  except (OSError, AttributeError):
    return None


def _return_freed_memory() -> None:
  """Gives freed cache sets' pages back to the OS. glibc keeps freed blocks of this size (0.5 MiB
  per layer's K or V in a 768-entry window of SmolLM2) in its heap for reuse, where they still
  count as resident; malloc_trim(0) releases them."""
  trim = _malloc_trim()
  if trim is not None:
    trim(0)


def _copy_prefix(src: np.ndarray, dst_shape, n: int, axis: int) -> np.ndarray:
  """A zero array of `dst_shape` holding the first `n` entries of `src` along `axis`."""
  out = np.zeros(dst_shape, src.dtype)
  index = (slice(None),) * axis + (slice(0, n),)
  out[index] = src[index]
  return out


def _window_of(signature: str) -> int | None:
  """The cache a signature runs on: a window's length, or None for the full cache."""
  m = re.fullmatch(r"decode_w(\d+)|w(\d+)_(?:prefill|verify)_\d+", signature)
  return int(m.group(1) or m.group(2)) if m else None


class _InterpreterBackend:
  """The reference: signature runners, which copy every KV-cache tensor in and out per call."""

  def __init__(self, model, num_threads: int):
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
    if isinstance(model, (bytes, bytearray)):
      self.interpreter = litert.Interpreter(model_content=bytes(model), num_threads=num_threads)
    else:
      self.interpreter = litert.Interpreter(model_path=str(model), num_threads=num_threads)
    self.signatures = self.interpreter.get_signature_list()
    self._runners = {name: self.interpreter.get_signature_runner(name) for name in self.signatures}
    self.cache_spec, self._specs = {}, {}
    for name, runner in self._runners.items():
      if name == "decode" or _window_of(name) is not None:
        spec = {n: (d["shape"], d["dtype"]) for n, d in sorted(runner.get_input_details().items())
                if n.startswith("kv_cache_")}
        self._specs[_window_of(name)] = spec
    self.cache_spec = self._specs.get(None, {})
    self.caches = {}  # window -> {name: array}, each made on first use
    if "decode" in self._runners:
      self.vocab_size = int(self._runners["decode"].get_output_details()["logits"]["shape"][-1])

  def rows(self, signature: str) -> int:
    return int(self._runners[signature].get_output_details()["logits"]["shape"][1])

  def share(self) -> "_InterpreterBackend":
    other = copy.copy(self)  # the caches are replaced, not updated, by every call
    other.caches = {}  # its own sets, each made on first use
    return other

  def drop_cache(self, window) -> None:
    del self.caches[window]

  def _cache(self, window):
    if window not in self.caches:
      self.caches[window] = {n: np.zeros(shape, dtype)
                             for n, (shape, dtype) in self._specs[window].items()}
    return self.caches[window]

  def copy_cache(self, src, dst, n: int, seq_axes) -> None:
    self.caches[dst] = {name: _copy_prefix(array, self._specs[dst][name][0], n, seq_axes[name])
                        for name, array in self._cache(src).items()}

  def run(self, signature: str, tokens: np.ndarray, positions: np.ndarray, rows: int):
    cache = self._cache(_window_of(signature))
    out = self._runners[signature](tokens=tokens, input_pos=positions, **cache)
    for name in cache:
      cache[name] = out[name]
    logits = out["logits"][0]
    return logits[:rows] if len(logits) > 1 else logits


class _CompiledBackend:
  """CompiledModel with tensor buffers made once. The KV buffers (one set for the full cache, one
  per decode window, each made when first used) are bound as both input and output of every
  signature running on them, so a call updates them in place. (TensorBuffer.create_from_host_memory
  would let numpy own them and a window be a view, but it makes 1-D buffers, which run_by_name
  refuses: "Cannot auto-resize tensor kv_cache_k_0: no dims_signature exists"; so a move copies
  through read and write.)"""

  def __init__(self, model, num_threads: int, weight_cache: bool):
    from ai_edge_litert import compiled_model, options  # pylint: disable=g-import-not-at-top
    env = _environment()
    if isinstance(model, (bytes, bytearray)):
      self._model_bytes = bytes(model)  # kept alive: the runtime may read it in place
      digest = hashlib.sha256(self._model_bytes).hexdigest()
      create = lambda opts: compiled_model.CompiledModel.from_buffer(
          self._model_bytes, environment=env, options=opts)
    else:
      digest = None
      create = lambda opts: compiled_model.CompiledModel.from_file(
          str(model), environment=env, options=opts)

    def compile_with(cache_path: str):
      return create(options.Options(cpu_options=options.CpuOptions(
          num_threads=num_threads, xnnpack_weight_cache_path=cache_path)))

    self.weight_cache_path = None
    if weight_cache:
      self.model, self.weight_cache_path = _compile_with_file_cache(
          compile_with, digest or _model_sha256(model))
    else:
      # Still dedupes the packed weights the signatures share, in memory.
      self.model = compile_with(":memory")

    self.signatures = self.model.get_signature_list()
    self.cache_spec = {}
    if "decode" not in self.signatures:
      return  # not a zoo LLM: Runner says so
    self._make_buffers()

  def share(self) -> "_CompiledBackend":
    """The same compiled model with buffers of its own."""
    other = copy.copy(self)
    other._make_buffers()  # pylint: disable=protected-access
    return other

  def _make_buffers(self) -> None:
    # Feeding a signature's cache output back as its input is safe: each cache input is read only
    # by the DYNAMIC_UPDATE_SLICE that writes the output, and tests/runner_test.py checks every
    # step against the interpreter.
    self._specs, self.caches = {}, {}
    for name in self.signatures:
      window = _window_of(name)
      if (name == "decode" or window is not None) and window not in self._specs:
        inputs = self.model.get_input_tensor_details(name)
        self._specs[window] = {n: (tuple(d["shape"]), np.dtype(d["dtype"]))
                               for n, d in sorted(inputs.items()) if n.startswith("kv_cache_")}
    self.cache_spec = self._specs[None]
    self._io, self._rows = {}, {}
    for name in self.signatures:
      self._rows[name] = int(self.model.get_output_tensor_details(name)["logits"]["shape"][1])
    self.vocab_size = int(self.model.get_output_tensor_details("decode")["logits"]["shape"][-1])

  def _cache(self, window, zeros: bool = True) -> dict:
    """The cache set `window`, made (zeroed unless the caller writes it whole) on first use."""
    if window not in self.caches:
      name = "decode" if window is None else f"decode_w{window}"
      self.caches[window] = {n: self.model.create_input_buffer_by_name(name, n)
                             for n in self._specs[window]}
      if zeros:
        for n, buffer in self.caches[window].items():
          buffer.write(np.zeros(*self._specs[window][n]))
    return self.caches[window]

  def _bound(self, signature: str) -> tuple[dict, dict]:
    if signature not in self._io:
      cache = self._cache(_window_of(signature))
      self._io[signature] = (
          {"tokens": self.model.create_input_buffer_by_name(signature, "tokens"),
           "input_pos": self.model.create_input_buffer_by_name(signature, "input_pos"), **cache},
          {"logits": self.model.create_output_buffer_by_name(signature, "logits"), **cache})
    return self._io[signature]

  def rows(self, signature: str) -> int:
    return self._rows[signature]

  def drop_cache(self, window) -> None:
    """Frees the cache set `window` with the I/O buffers bound to it."""
    for buffer in self.caches.pop(window).values():
      buffer.destroy()
    for signature in [s for s in self._io if _window_of(s) == window]:
      inputs, outputs = self._io.pop(signature)
      for buffer in (inputs["tokens"], inputs["input_pos"], outputs["logits"]):
        buffer.destroy()

  def copy_cache(self, src, dst, n: int, seq_axes) -> None:
    source = self._cache(src)
    target = self._cache(dst, zeros=False)  # written whole below
    for name, buffer in source.items():
      shape, dtype = self._specs[src][name]
      data = buffer.read(int(np.prod(shape)), dtype).reshape(shape)
      target[name].write(_copy_prefix(data, self._specs[dst][name][0], n, seq_axes[name]))

  def run(self, signature: str, tokens: np.ndarray, positions: np.ndarray, rows: int):
    inputs, outputs = self._bound(signature)
    inputs["tokens"].write(tokens)
    inputs["input_pos"].write(positions)
    self.model.run_by_name(signature, inputs, outputs)
    # Only the first `rows` rows are real tokens (a last-logits prefill has one): read just those.
    rows = min(rows, self._rows[signature])
    return outputs["logits"].read(rows * self.vocab_size, np.float32).reshape(rows, self.vocab_size)


@functools.cache
def _environment():
  """One LiteRT environment per process: making one probes for accelerators (~0.3 s)."""
  from ai_edge_litert import environment  # pylint: disable=g-import-not-at-top
  return environment.Environment.create(options=environment.EnvironmentOptions(
      runtime_path=os.path.dirname(os.path.abspath(environment.__file__))))


# --- XNNPACK weight cache -------------------------------------------------------------------------
#
# XNNPACK writes the cache file in place (open with O_TRUNC, then append), and rebuilds it in place
# when it cannot load it: a second process doing that would truncate a file the first one has
# mapped. So the zoo only ever hands XNNPACK a file it checked complete, or a fresh private temp
# file that it renames into place once complete (the rename leaves mapped inodes alone, and two
# processes racing both publish a valid file).

_STALE_PARTIAL_SECONDS = 3600


def weight_cache_dir() -> pathlib.Path:
  from litezoo.artifacts import files  # pylint: disable=g-import-not-at-top
  return files.cache_root() / "xnnpack"


def weight_cache_file(model_sha256: str) -> pathlib.Path:
  """Keyed by the model's bytes and the runtime version, whose packing may differ."""
  return weight_cache_dir() / f"{model_sha256}.litert-{metadata.version('ai-edge-litert')}.xnnpack"


def _model_sha256(path) -> str:
  """The file's sha256, hashed once per change of the file (artifacts/files.sha256_stamped)."""
  from litezoo.artifacts import files  # pylint: disable=g-import-not-at-top
  return files.sha256_stamped(path)


def is_complete_weight_cache(path: str | os.PathLike) -> bool:
  """True if `path` is a finished cache file: XNNPACK writes its header (version, buffer list
  offset, buffer list size, as little-endian uint64) last, over a zero placeholder."""
  try:
    with open(path, "rb") as f:
      header = f.read(24)
      size = os.fstat(f.fileno()).st_size
  except OSError:
    return False
  if len(header) < 24:
    return False
  version, offset, length = struct.unpack("<3Q", header)
  return version == 4 and offset > 0 and offset + length == size  # the layout of version 4


def _compile_with_file_cache(compile_with, model_sha256: str):
  """Compiles with the weight cache of `model_sha256`, building it first if needed.

  Returns (compiled model, cache file or None if the cache directory is not usable)."""
  final = weight_cache_file(model_sha256)
  if is_complete_weight_cache(final):
    return compile_with(str(final)), final
  try:
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(final)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial")
    os.close(fd)
  except OSError:
    return compile_with(":memory"), None
  tmp = pathlib.Path(tmp)
  try:
    model = compile_with(str(tmp))  # packs every signature's weights now, into `tmp`
    if not is_complete_weight_cache(tmp):  # e.g. the disk filled up: XNNPACK carried on without
      return model, None
    os.chmod(tmp, 0o644)
    os.replace(tmp, final)
    return model, final
  finally:
    tmp.unlink(missing_ok=True)


def _remove_stale_partials(final: pathlib.Path) -> None:
  """Temp files left by a process killed while packing (packing takes seconds, not an hour)."""
  for partial in final.parent.glob(f".{final.name}.*.partial"):
    with contextlib.suppress(OSError):
      if time.time() - partial.stat().st_mtime > _STALE_PARTIAL_SECONDS:
        partial.unlink()
