"""Where a decode step's time goes, by kernel, sampled with Linux perf.

    python docs/bench/decode-depth-2026-12-06/profile.py MODEL.tflite [--depth N] [--steps N]
        [--xnnpack_flags 0x..] [--top N]

Prefills `depth` random tokens through the zoo's runner (2 threads), then runs `steps` decode
steps under `perf record` and prints each kernel's share of the samples, grouped: the KV cache
repacked for the attention matmuls (XNNPACK's packw kernels), the float attention matmuls, the
weight matmuls (qd8 = int8 activations), softmax, threads, and the rest. Needs `perf` (Debian:
linux-perf). `--xnnpack_flags` overrides the CPU options' XNNPACK flags (0x4 forces fp16).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from litezoo.artifacts import files
from litezoo.core.errors import ZooError

GROUPS = (  # first match wins
    ("KV cache repacked (packw)", r"packw"),
    ("float attention matmul (f32/f16 gemm)", r"xnn_f(32|16)\w*_gemm"),
    ("weight matmuls (qd8 gemm, int8 activations)", r"xnn_qd8\w*gemm|xnn_f32_qd8|qs8_gemm"),
    ("float<->fp16 conversion", r"vcvt|dequantize|Dequantize"),
    ("softmax", r"raddstoreexpminusmax|rmax|vscale|softmax"),
    ("thread pool", r"pthreadpool|thread_main|thread_parallelize"),
    ("memset / memcpy", r"memset|memmove|memcpy"),
    ("kernel (page faults, scheduling)", r"^\[k\]"),
)

CHILD = """
import sys, time, numpy as np
flags = int(sys.argv[4], 0) if sys.argv[4] != "default" else None
if flags is not None:
  from ai_edge_litert import options
  init = options.CpuOptions.__init__
  def with_flags(self, *a, **k):
    init(self, *a, **k)
    self.xnnpack_flags = flags
  options.CpuOptions.__init__ = with_flags
from litezoo.runtime.runner import Runner
try:
  runner = Runner(sys.argv[1], num_threads=2, weight_cache=False)
except ValueError as e:  # a LiteRT file that is not a zoo LLM
  sys.exit(f"profile.py: error: {e}")
depth, steps = int(sys.argv[2]), int(sys.argv[3])
if depth + steps + 1 > runner.kv_cache_max_len:
  sys.exit(f"profile.py: error: depth {depth} + {steps} steps + 1 do not fit the "
           f"{runner.kv_cache_max_len}-entry KV cache; give fewer --steps or a smaller --depth")
tokens = np.random.default_rng(0).integers(0, runner.vocab_size, depth + steps + 1).tolist()
runner.prefill(tokens[:depth])
runner.decode(tokens[depth])
print("ready", flush=True)
sys.stdin.readline()  # the profiler attaches here, after the load and the prefill
start = time.perf_counter()
for t in tokens[depth + 1:]:
  runner.decode(t)
print(f"{(time.perf_counter() - start) / steps * 1e3:.2f} ms/step", flush=True)
"""


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("model")
  parser.add_argument("--depth", type=int, default=480)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--xnnpack_flags", default="default")
  parser.add_argument("--top", type=int, default=8, help="kernels listed one by one")
  args = parser.parse_args()
  if not shutil.which("perf"):
    sys.exit("profile.py: error: perf not found; install it (Debian: apt-get install linux-perf)")
  if args.xnnpack_flags != "default":
    try:
      int(args.xnnpack_flags, 0)
    except ValueError:
      sys.exit(f"profile.py: error: --xnnpack_flags={args.xnnpack_flags!r} is not an integer "
               "(e.g. 0x7) or 'default'")
  try:
    files.check_tflite(args.model)  # a clear refusal, before the runtime parses it
  except ZooError as e:
    sys.exit(f"profile.py: error: {e}")
  with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, "perf.data")
    log = open(os.path.join(tmp, "stderr"), "w+")  # LiteRT logs a lot: a file, not a pipe that fills
    child = subprocess.Popen([sys.executable, "-c", CHILD, args.model, str(args.depth),
                              str(args.steps), args.xnnpack_flags], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=log, text=True)
    if child.stdout.readline().strip() != "ready":
      child.wait()
      log.seek(0)
      errors = [l for l in log.read().splitlines() if "error" in l.lower()]
      sys.exit(errors[-1] if errors else f"profile.py: error: the decode run failed "
               f"(exit {child.returncode})")
    perf = subprocess.Popen(["perf", "record", "-q", "-F", "2000", "-o", data, "-p",
                             str(child.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1)  # perf attaches
    child.stdin.write("go\n")
    child.stdin.flush()
    step = re.findall(r"[\d.]+ ms/step", child.stdout.read())
    child.wait()
    perf.wait()
    log.close()
    if child.returncode or not step:
      sys.exit(f"profile.py: error: the decode run failed (exit {child.returncode})")
    report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "sym",
                             "--percent-limit", "0.05", "--stdio"],
                            capture_output=True, text=True, check=True).stdout
  rows = [(float(m.group(1)), m.group(2).strip()) for m in
          re.finditer(r"^\s+([\d.]+)%\s+(\[.\]\s+\S.*)$", report, re.M)]
  print(f"{os.path.basename(args.model)}, depth {args.depth}, {args.steps} steps, "
        f"xnnpack_flags {args.xnnpack_flags}: decode {step[0]}")
  totals = {name: 0.0 for name, _ in GROUPS}
  totals["other"] = 0.0
  for share, sym in rows:
    name = next((n for n, pattern in GROUPS if re.search(pattern, sym)), "other")
    totals[name] += share
  for name, share in sorted(totals.items(), key=lambda kv: -kv[1]):
    print(f"  {share:5.1f}%  {name}")
  print("top kernels:")
  for share, sym in rows[:args.top]:
    print(f"  {share:5.1f}%  {sym.split(maxsplit=1)[1]}")


if __name__ == "__main__":
  main()
