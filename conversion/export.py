"""Exports a re-authored model to a multi-signature .tflite, then quantizes the file.

Two stages keep memory low (see shared/TOOLCHAIN.md): the float conversion runs with
`lightweight_conversion=True` and writes a file; the model is then freed and ai-edge-quantizer
quantizes that file. Converting and quantizing in one call peaks above 13 GB for TinyLlama 1.1B.
"""

import contextlib
import os
import pathlib
import signal
import sys
import time
import traceback

import torch
from torch import nn

from litezoo.conversion import merge
from litezoo.conversion.litert import converter, export_config, kv_cache
from litezoo.core.errors import ZooError
from litezoo.core.spec import Signatures


def export_float(model: nn.Module, signatures: Signatures, path: str) -> dict:
  """Writes `model` as float32 .tflite with the signatures of `signatures` (core/spec.py).

  Inputs: tokens [1, n] int32, input_pos [n] int32, kv_cache_{k,v}_<layer> in the signatures'
  layout (decode_w<W>, w<W>_prefill_<n> and w<W>_verify_<k>: W entries long); outputs: logits [1, rows, vocab] float32 and the updated
  cache. rows is n, except for prefill_<n> with prefill_logits="last": 1, the logits of the token
  at the first maximum of input_pos (the runner gives padding slots the last real token's
  position). The mask comes from the model's own mask cache, cut to the cache's length.

  Four or more signatures are converted in two groups, each its own litert-torch conversion,
  and merged (conversion/merge.py): in two processes at once where the machine has two cores
  and the memory (`_second_process`), else one after the other. The bytes are the same either
  way. Returns what the manifest records of it: {"export_processes": 1 or 2, and with 2
  "export_child_peak_rss_bytes"}.
  """
  signatures.validate()
  config = model.config
  layout = kv_layout(signatures, config)
  cfg = export_config.ExportConfig(output_logits_on_prefill=True, kvcache_layout=layout)
  every_row = converter_module(model, cfg)
  last_row = converter_module(model, cfg, last_logits=True)
  prefill = last_row if signatures.prefill_logits == "last" else every_row
  entries = []  # (name, module, tokens, cache entries), in the file's signature order

  def add(name: str, module: nn.Module, length: int, cache_len: int) -> None:
    entries.append((name, module, length, cache_len))

  full = signatures.kv_cache_max_len
  for length in sorted(signatures.prefill_seq_lens):
    add(f"prefill_{length}", prefill, length, full)
  for length in sorted(signatures.verify_lengths):
    add(f"verify_{length}", every_row, length, full)
  add("decode", every_row, 1, full)
  for window in sorted(signatures.decode_windows):
    add(f"decode_w{window}", every_row, 1, window)
  for window in sorted(signatures.prefill_windows):
    for length in sorted(n for n in signatures.prefill_seq_lens if n <= window):
      add(f"w{window}_prefill_{length}", prefill, length, window)
  for window in sorted(signatures.verify_windows):
    for length in sorted(k for k in signatures.verify_lengths if k <= window):
      add(f"w{window}_verify_{length}", every_row, length, window)

  def convert(group, out: str) -> None:
    conv = converter.Converter()
    for name, module, length, cache_len in group:
      conv.add_signature(name, module, sample_kwargs={
          "tokens": torch.zeros((1, length), dtype=torch.int32),
          "input_pos": torch.arange(0, length, dtype=torch.int32),
          "kv_cache": kv_cache.KVCache.from_model_config(cache_len, config, kv_layout=layout),
      })
    global _LOWERED
    _LOWERED = True  # before the call: a failed one may have started MLIR's threads too
    conv.convert(lightweight_conversion=True).export(out)
    _release_export_graph()

  head = model.lm_head
  model.lm_head = _LastRowHead(head)  # for the trace only: the caller's model is left as it was
  try:
    if len(entries) < _SPLIT_FROM:
      convert(entries, path)
      return {"export_processes": 1}
    half = (len(entries) + 1) // 2
    try:
      return _in_two(convert, entries[:half], entries[half:], path)
    except merge.MergeError:  # a graph the merge does not know: one conversion, as before
      convert(entries, path)
      return {"export_processes": 1}
  finally:
    model.lm_head = head
    _release_export_graph()


_SPLIT_FROM = 4  # signatures: fewer are converted in one piece (a split would not pay)
_LOWERED = False  # whether this process has run litert-torch's lowering (JAX, MLIR) yet


def _in_two(convert, first, second, path: str) -> dict:
  """`convert`s the two groups into temp files beside `path` (the second in a forked process
  when `_second_process` allows it) and merges them into `path`."""
  parts = [f"{path}.part{i}" for i in (1, 2)]
  error = parts[1] + ".error"
  info = {"export_processes": 1}
  try:
    if _second_process():
      pid = os.fork()
      if pid == 0:
        _child(convert, second, parts[1], error)  # never returns
      try:
        start = time.monotonic()
        convert(first, parts[0])
        # The groups take about as long: a child far slower than that is stuck, not working.
        status, usage = _wait(pid, deadline=time.monotonic() + 3 * (time.monotonic() - start) + 60)
      except BaseException:
        _stop(pid)
        raise
      if status == 0:
        info = {"export_processes": 2, "export_child_peak_rss_bytes": usage.ru_maxrss * 1024}
      else:  # killed (out of memory?), failed or stuck: here, where a failure shows its traceback
        convert(second, parts[1])
    else:
      convert(first, parts[0])
      convert(second, parts[1])
    merge.merge(pathlib.Path(parts[0]), pathlib.Path(parts[1]), pathlib.Path(path))
    return info
  finally:
    for part in (*parts, error):
      pathlib.Path(part).unlink(missing_ok=True)


def _wait(pid: int, deadline: float):
  """(wait status, rusage) of the child `pid`, or (None, None) after stopping it at `deadline`."""
  while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
      return status, usage
    if time.monotonic() > deadline:
      _stop(pid)
      return None, None
    time.sleep(0.2)


def _stop(pid: int) -> None:
  with contextlib.suppress(ProcessLookupError, ChildProcessError):
    os.kill(pid, signal.SIGKILL)  # its temp files are the parent's to remove
    os.waitpid(pid, 0)


def _child(convert, group, out: str, error: str) -> None:
  """The forked process: converts `group` into `out` and exits, 0 on success; never returns,
  and never runs the parent's cleanup (its temp files and locks are the parent's)."""
  code = 1
  try:
    # New streams: a lock another thread of the parent held at the fork would stay held here.
    stream = open(error, "w", encoding="utf-8")  # pylint: disable=consider-using-with
    sys.stdout = sys.stderr = stream
    torch.set_num_threads(1)  # the parent's OpenMP pool does not exist in this process
    convert(group, out)
    code = 0
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
  finally:
    with contextlib.suppress(BaseException):
      sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


def _second_process() -> bool:
  """Whether the second group may convert in a forked process: a POSIX fork, a process that
  has not lowered a model yet (the thread pools of JAX's backend and of MLIR's contexts do not
  survive a fork: a child reusing them waits forever; so the first conversion of a tool's run
  is split across processes, and later ones in the same process run one after the other), two
  cores this process may run on, memory for a second export (MemAvailable over twice this
  process's RSS: the weights are shared until written, the export's own memory is not), and
  not turned off with LITEZOO_EXPORT_PROCESSES=1."""
  if os.environ.get("LITEZOO_EXPORT_PROCESSES", "") == "1" or not hasattr(os, "fork"):
    return False
  bridge = sys.modules.get("jax._src.xla_bridge")
  if _LOWERED or getattr(bridge, "_backends", None):
    return False
  if len(os.sched_getaffinity(0)) < 2:
    return False
  try:
    available = _proc_bytes("/proc/meminfo", "MemAvailable")
    rss = _proc_bytes("/proc/self/status", "VmRSS")
  except (OSError, ValueError):
    return False
  return available > 2 * rss


def _proc_bytes(path: str, field: str) -> int:
  """A "Field: N kB" line of /proc/meminfo or /proc/self/status, in bytes."""
  with open(path, encoding="ascii") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024
  raise ValueError(f"no {field} in {path}")


def kv_layout(signatures: Signatures, config):
  """litert-torch's layout constant for `signatures.kv_layout`."""
  if signatures.kv_layout == "default":
    return kv_cache.KV_LAYOUT_DEFAULT
  return kv_cache.KV_LAYOUT_TRANSPOSED


def _release_export_graph() -> None:
  """Drops torch.export's module-level map of the last traced graph.

  torch 2.13 keeps it (`proxy_tensor._FAKE_TENSOR_ID_TO_PROXY_MAP_FOR_EXPORT`) until the next
  export, and through the graph it keeps every weight alive: without this, freeing a 1.1B model
  after export frees nothing, and quantizing next peaks at 7.6 GiB instead of staying under 6.
  """
  from torch.fx.experimental import proxy_tensor  # pylint: disable=g-import-not-at-top
  getattr(proxy_tensor, "_FAKE_TENSOR_ID_TO_PROXY_MAP_FOR_EXPORT", {}).clear()


class _LastRowHead(nn.Module):
  """The LM head applied to the one row `index` of its input [1, T, dim] when set (while a
  last-logits prefill is traced: the head then costs one row instead of T), else to every row.
  Installed around the model's own head, so a tied weight stays tied."""

  def __init__(self, head: nn.Module):
    super().__init__()
    self.head = head
    self.index = None  # int32 [1], or None

  @property
  def weight(self):
    return self.head.weight

  def forward(self, x):
    if self.index is not None:
      x = torch.index_select(x, 1, self.index)
    return self.head(x)


class _WithExportConfig(nn.Module):
  """Binds the (non-tensor) export config so torch.export only sees tensor arguments.

  last_logits: the logits of the token at the first maximum of input_pos only, [1, 1, vocab]; the
  head gathers that row (an ARG_MAX and a GATHER in the graph). Padding slots carry the last real
  token's position: their cache writes land past the sequence, hidden by the causal mask as
  before, and the first maximum is the last real token whatever the padding.
  """

  def __init__(self, model: nn.Module, config, last_logits: bool = False):
    super().__init__()
    self.model = model
    self.export_config = config
    self.last_logits = last_logits

  def forward(self, tokens, input_pos, kv_cache):  # pylint: disable=redefined-outer-name
    head = self.model.lm_head
    if self.last_logits and isinstance(head, _LastRowHead):
      head.index = torch.argmax(input_pos).reshape(1).to(torch.int32)
    try:
      return self.model(tokens, input_pos, kv_cache, export_config=self.export_config)
    finally:
      if isinstance(head, _LastRowHead):
        head.index = None


def converter_module(model: nn.Module, config, last_logits: bool = False) -> nn.Module:
  return _WithExportConfig(model, config, last_logits).eval()


def quantize_file(src: str, recipe: list[dict], hessians: dict | None = None) -> bytearray:
  """Quantizes the float .tflite at `src` with an ai-edge-quantizer recipe (quant.recipes.resolve).

  `hessians` (conversion/gptq.py `hessians`) feed the recipe's gptq entries. The result has each
  distinct flatbuffer vector written once (conversion/compact.py: the signatures' copies of every
  weight's per-channel scales and zero points become one). Raises
  QuantizeError when the recipe cannot apply (e.g. a block size not dividing a weight, a gptq
  entry without statistics for a weight).
  """
  from ai_edge_quantizer import quantizer  # pylint: disable=g-import-not-at-top
  from litezoo.conversion import compact, gptq, int4_levels  # pylint: disable=g-import-not-at-top
  int4_levels.register()
  try:
    with gptq.calibrated(hessians or {}):
      result = quantizer.Quantizer(src, recipe).quantize()
  except ValueError as e:  # e.g. a weight dimension the block size does not divide
    raise QuantizeError(f"the recipe cannot be applied to this model: {e}") from e
  return compact.share_vectors(result.quantized_model)


class QuantizeError(ZooError, ValueError):
  pass
