"""What attention costs per decode step as the window grows, without the rest of the model.

    python docs/bench/decode-depth-2026-12-06/attention.py {update,qk,full} [--inplace]

22 layers of TinyLlama's decode attention (4 KV heads, 8 queries each, head dim 64, the zoo's
transposed layout: K [1, 4, S, 64], V [1, 4, 64, S]), converted with litert-torch and run in
LiteRT's CompiledModel on 2 threads, at windows S = 256 and 768: `update` writes the new entry
into each cache (DYNAMIC_UPDATE_SLICE), `qk` adds q.K^T, `full` adds the softmax and p.V (the
ops litert-torch's transposed SDPA emits, bmm_4d as BATCH_MATMUL). `--inplace` binds each cache
output to its input buffer, as runtime/runner.py does. Prints ms per call (50 calls after 5).
"""
import os
import sys
import tempfile
import time

import torch

from litezoo.conversion.litert import converter
from litezoo.runtime.runner import _environment  # one LiteRT environment per process
from litert_torch.generative.custom_ops import bmm_4d
from litert_torch.generative.custom_ops import dynamic_update_slice as dus

LAYERS, KV_HEADS, GROUP, HEAD_DIM = 22, 4, 8, 64


class Attention(torch.nn.Module):

  def __init__(self, mode):
    super().__init__()
    self.mode = mode

  def forward(self, q, k, v, pos, *caches):
    acc, out = torch.zeros(1, KV_HEADS, GROUP, HEAD_DIM), []
    zero = torch.zeros((), dtype=torch.int32)
    for i in range(LAYERS):
      kc = dus.dynamic_update_slice(caches[2 * i], k, [zero, zero, pos, zero])
      vc = dus.dynamic_update_slice(caches[2 * i + 1], v, [zero, zero, zero, pos])
      if self.mode == "qk":
        acc = acc + bmm_4d.bmm_4d(q, kc)[..., :HEAD_DIM]
      elif self.mode == "full":
        acc = acc + bmm_4d.bmm_4d(torch.softmax(bmm_4d.bmm_4d(q, kc), -1), vc)
      out += [kc, vc]
    return (acc, *out)


def convert(mode, window, path):
  caches = []
  for _ in range(LAYERS):
    caches += [torch.zeros(1, KV_HEADS, window, HEAD_DIM), torch.zeros(1, KV_HEADS, HEAD_DIM, window)]
  args = (torch.zeros(1, KV_HEADS, GROUP, HEAD_DIM), torch.zeros(1, KV_HEADS, 1, HEAD_DIM),
          torch.zeros(1, KV_HEADS, HEAD_DIM, 1), torch.tensor(0, dtype=torch.int32), *caches)
  converter.convert(Attention(mode).eval(), args).export(path)


def time_call(path, inplace):
  from ai_edge_litert import compiled_model, options
  model = compiled_model.CompiledModel.from_file(path, environment=_environment(),
                                                 options=options.Options(
                                                     cpu_options=options.CpuOptions(num_threads=2)))
  inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
  if inplace:
    outputs = [outputs[0], *inputs[4:]]
  for _ in range(5):
    model.run_by_index(0, inputs, outputs)
  start = time.perf_counter()
  for _ in range(50):
    model.run_by_index(0, inputs, outputs)
  return (time.perf_counter() - start) / 50 * 1e3


MODES = ("update", "qk", "full")
if len(sys.argv) < 2 or sys.argv[1] not in MODES:
  sys.exit(f"attention.py: error: give a mode, one of {', '.join(MODES)} (then --inplace or not)")
mode, inplace = sys.argv[1], "--inplace" in sys.argv
with tempfile.TemporaryDirectory() as tmp:
  for window in (256, 768):
    path = os.path.join(tmp, f"{mode}_{window}.tflite")
    convert(mode, window, path)
    print(f"{mode}{' in place' if inplace else ''}, window {window}: {time_call(path, inplace):.3f} ms",
          flush=True)
