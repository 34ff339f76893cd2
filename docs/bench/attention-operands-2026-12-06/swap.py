"""Decode attention with the cache as the left operand, against litert-torch's order.

    python docs/bench/attention-operands-2026-12-06/swap.py [--layers=22 --kv_heads=4 --group=8
        --windows=256,768 --repeats=5]

XNNPACK packs the right operand of every BATCH_MATMUL whose right operand is not a constant, at
every call (profile.py in decode-depth-2026-12-06: `packw goi`, 10-29% of a SmolLM2 int8 step).
litert-torch's transposed SDPA puts the caches on the right: scores = q.K^T with K [1, h, S, d],
out = p.V^T with V [1, h, d, S], so each step repacks both whole caches. The same products with
the operands swapped, scores^T = K.q^T [1, h, S, g] and out^T = V.p^T [1, h, d, g], leave only
q and p (g rows) to pack; two transposes of g x S and g x d values put the results back.

Both orders are converted with litert-torch (same caches, same layout, DYNAMIC_UPDATE_SLICE
writing the new entry) and run in LiteRT's CompiledModel on 2 threads with the caches bound in
place, as runtime/runner.py does. Each output is compared with PyTorch's (max abs error), then each is
timed, alternating, `--repeats` times 50 calls; prints the median ms per call of each.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from litezoo.conversion.litert import converter
from litezoo.runtime.runner import _environment  # one LiteRT environment per process
from litert_torch.generative.custom_ops import bmm_4d
from litert_torch.generative.custom_ops import dynamic_update_slice as dus


class Attention(torch.nn.Module):
  """`layers` layers of one decode step's attention; `swapped` picks the operand order."""

  def __init__(self, layers, swapped):
    super().__init__()
    self.layers, self.swapped = layers, swapped

  def forward(self, q, k, v, mask, pos, *caches):
    out, acc = [], torch.zeros_like(q)
    zero = torch.zeros((), dtype=torch.int32)
    for i in range(self.layers):
      kc = dus.dynamic_update_slice(caches[2 * i], k, [zero, zero, pos, zero])
      vc = dus.dynamic_update_slice(caches[2 * i + 1], v, [zero, zero, zero, pos])
      qi = q + acc * 1e-3  # each layer's query depends on the last one's output, as in a model
      if self.swapped:
        scores = bmm_4d.bmm_4d(kc, qi).transpose(2, 3)  # [1, h, S, g] -> [1, h, g, S]
        p = torch.softmax(scores + mask, -1)
        acc = bmm_4d.bmm_4d(vc, p).transpose(2, 3)  # [1, h, d, g] -> [1, h, g, d]
      else:
        p = torch.softmax(bmm_4d.bmm_4d(qi, kc) + mask, -1)
        acc = bmm_4d.bmm_4d(p, vc)
      out += [kc, vc]
    return (acc, *out)


def shapes(args, window):
  """Input shapes in the signature's order: q, k, v, mask, pos, then K and V of each layer."""
  h, g, d = args.kv_heads, args.group, args.head_dim
  return [(1, h, g, d), (1, h, 1, d), (1, h, d, 1), (1, 1, 1, window), ()] + \
      [(1, h, window, d), (1, h, d, window)] * args.layers


def convert(args, window, swapped, path):
  sample = [torch.zeros(s) for s in shapes(args, window)]
  sample[4] = torch.tensor(0, dtype=torch.int32)
  converter.convert(Attention(args.layers, swapped).eval(), tuple(sample)).export(path)


def state(args, window):
  """One seeded random input: the new entry written at window // 2, the mask open up to it."""
  rng = np.random.default_rng(0)
  pos = window // 2
  values = [rng.standard_normal(s).astype(np.float32) for s in shapes(args, window)]
  values[3] = np.where(np.arange(window) <= pos, 0, -1e30).astype(np.float32).reshape(1, 1, 1, -1)
  values[4] = np.array(pos, dtype=np.int32)
  return values


def session(path, values):
  """A CompiledModel on 2 threads holding `values`, its caches bound in place."""
  from ai_edge_litert import compiled_model, options  # pylint: disable=g-import-not-at-top
  model = compiled_model.CompiledModel.from_file(
      path, environment=_environment(),
      options=options.Options(cpu_options=options.CpuOptions(num_threads=2)))
  inputs = model.create_input_buffers(0)
  for buffer, value in zip(inputs, values):
    buffer.write(value.ravel())
  outputs = [model.create_output_buffers(0)[0], *inputs[5:]]
  return model, inputs, outputs


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--layers", type=int, default=22)
  p.add_argument("--kv_heads", type=int, default=4)
  p.add_argument("--group", type=int, default=8, help="query heads per KV head")
  p.add_argument("--head_dim", type=int, default=64)
  p.add_argument("--windows", default="256,768")
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args()
  try:
    windows = [int(w) for w in args.windows.split(",")]
  except ValueError:
    sys.exit(f"swap.py: error: --windows={args.windows!r} is not a comma-separated list of integers")
  if min(windows + [args.layers, args.kv_heads, args.group, args.head_dim, args.repeats]) < 1:
    sys.exit("swap.py: error: sizes, windows and --repeats must be positive integers")
  with tempfile.TemporaryDirectory() as tmp:
    for window in windows:
      values, runs = state(args, window), {}
      # The reference: litert-torch's order in PyTorch, on the same values.
      with torch.no_grad():
        expected = Attention(args.layers, False)(*map(torch.from_numpy, values))[0].numpy().ravel()
      error = {}
      for swapped in (False, True):
        path = os.path.join(tmp, f"{window}_{int(swapped)}.tflite")
        convert(args, window, swapped, path)
        runs[swapped] = model, inputs, outputs = session(path, values)
        model.run_by_index(0, inputs, outputs)
        error[swapped] = float(np.abs(outputs[0].read(expected.size, np.float32) - expected).max())
      times = {False: [], True: []}
      for _ in range(args.repeats):
        for swapped, (model, inputs, outputs) in runs.items():
          for _ in range(5):
            model.run_by_index(0, inputs, outputs)
          start = time.perf_counter()
          for _ in range(50):
            model.run_by_index(0, inputs, outputs)
          times[swapped].append((time.perf_counter() - start) / 50 * 1e3)
      before, after = statistics.median(times[False]), statistics.median(times[True])
      print(f"window {window}: cache on the right {before:.3f} ms, on the left {after:.3f} ms "
            f"({before / after:.2f}x); max abs error against PyTorch {error[False]:.1e} and "
            f"{error[True]:.1e}", flush=True)


if __name__ == "__main__":
  main()
