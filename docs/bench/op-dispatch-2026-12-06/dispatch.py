"""What one small element-wise op costs in LiteRT's CompiledModel (XNNPACK), alone and in a chain.

    python docs/bench/op-dispatch-2026-12-06/dispatch.py [--ops=1,300] [--sizes=288,1536]
        [--threads=2,1]

A SmolLM2 135M decode step runs 1,772 ops (58 per layer: RoPE alone is 20 of them, the norms
12), against 151 matmuls. Whether that count costs time is measured here: a graph of N
alternating MUL and ADD ops on [1, size] float32 (two inputs, so nothing folds into constants)
is converted with litert-torch and called 500 times after 20; prints microseconds per call and
per op for each N, size and thread count.
"""
import argparse
import os
import sys
import tempfile
import time

import torch

from litezoo.conversion.litert import converter
from litezoo.runtime.runner import _environment  # one LiteRT environment per process


class Chain(torch.nn.Module):
  """`n` element-wise ops, alternating x * c and x + c."""

  def __init__(self, n):
    super().__init__()
    self.n = n

  def forward(self, x, c):
    for i in range(self.n):
      x = x * c if i % 2 == 0 else x + c
    return x


def per_call(path, threads, calls=500):
  """Seconds per call of the file's one signature in CompiledModel."""
  from ai_edge_litert import compiled_model, options  # pylint: disable=g-import-not-at-top
  model = compiled_model.CompiledModel.from_file(
      path, environment=_environment(),
      options=options.Options(cpu_options=options.CpuOptions(num_threads=threads)))
  inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
  for _ in range(20):
    model.run_by_index(0, inputs, outputs)
  start = time.perf_counter()
  for _ in range(calls):
    model.run_by_index(0, inputs, outputs)
  return (time.perf_counter() - start) / calls


def integers(flag, text):
  try:
    values = [int(v) for v in text.split(",")]
  except ValueError:
    values = []
  if not values or min(values) < 1:
    sys.exit(f"dispatch.py: error: --{flag}={text!r} is not a comma-separated list of positive "
             "integers")
  return values


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--ops", default="1,300")
  p.add_argument("--sizes", default="288,1536")
  p.add_argument("--threads", default="2,1")
  args = p.parse_args()
  ops, sizes, threads = (integers(f, getattr(args, f)) for f in ("ops", "sizes", "threads"))
  with tempfile.TemporaryDirectory() as tmp:
    for size in sizes:
      for n in ops:
        path = os.path.join(tmp, f"{n}_{size}.tflite")
        converter.convert(Chain(n).eval(), (torch.ones(1, size), torch.ones(1, size))).export(path)
        for t in threads:
          seconds = per_call(path, t)
          print(f"{n} ops on [1, {size}], {t} thread(s): {seconds * 1e6:.1f} us per call, "
                f"{seconds / n * 1e6:.3f} us per op", flush=True)


if __name__ == "__main__":
  main()
