"""Shared measurement helpers: timing protocol, peak RSS, memory bandwidth, machine facts.

Every peer runs in its own fresh subprocess (`run_child`), so its peak RSS, load time and first
call are its own; the subprocess prints one `BENCH_RESULT {json}` line that the parent parses.
"""

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import typing
from typing import Callable

import numpy as np

from litezoo.runtime import memory
from litezoo.tools import console

RESULT_MARK = "BENCH_RESULT "
# The directory holding the `litezoo` package (the runfiles root under Bazel).
PACKAGE_ROOT = pathlib.Path(__file__).absolute().parents[3]


@dataclasses.dataclass(frozen=True)
class Plan:
  """What to measure: the same for every peer."""

  threads: int
  prefill_lengths: tuple[int, ...]  # prefill tok/s at each
  depths: tuple[int, ...]  # decode tok/s with this many tokens already in the cache
  decode_tokens: int  # timed decode steps per depth and repeat
  repeats: int  # medians are taken over this many repeats
  ttft_prompt: int  # prompt length for time to first token

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict) -> "Plan":
    return cls(**{**d, "prefill_lengths": tuple(d["prefill_lengths"]),
                  "depths": tuple(d["depths"])})


class Session(typing.Protocol):
  """A model running one sequence: the shape every Python-driven peer is adapted to."""

  kv_cache_max_len: int

  def reset(self) -> None: ...
  def prefill(self, tokens: list[int]) -> np.ndarray: ...  # logits of the last token [vocab]
  def decode(self, token: int) -> np.ndarray: ...  # logits [vocab]


def peak_rss_bytes() -> int:
  """This process's peak resident memory in bytes (VmHWM; runtime/memory.py says why)."""
  return memory.peak_rss_bytes()


# Starts argv[2:] from a small process and writes its peak RSS (wait4's ru_maxrss, KiB) to
# argv[1]: a command started straight from the benchmark would inherit the benchmark's own peak
# at exec (see peak_rss_bytes); from here it inherits at most this interpreter's few MiB. The
# command gets default signal dispositions (Python ignores SIGPIPE and SIGXFSZ, and exec would
# keep them ignored); Ctrl-C reaches it from the terminal, SIGTERM and SIGHUP are passed on.
_SPAWN = """
import errno, os, signal, sys
command = sys.argv[2:]
try:
  pid = os.posix_spawnp(command[0], command, os.environ, setsigdef=(
      signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
except OSError as e:
  sys.stderr.write(f"{command[0]}: {e.strerror}\\n")
  sys.exit(126 if e.errno in (errno.EACCES, errno.ENOEXEC) else 127)
signal.signal(signal.SIGINT, signal.SIG_IGN)
for forwarded in (signal.SIGTERM, signal.SIGHUP):
  signal.signal(forwarded, lambda received, _: os.kill(pid, received))
_, status, usage = os.wait4(pid, 0)
try:
  with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
except OSError:
  pass  # the caller records the peak as unknown
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


# What a mapping's name says it holds, tried in order (lower-cased file name, without " (deleted)").
_MAPPING_KINDS = (
    (r"\.xnnpack\b|^memfd:xnnpack", "weight cache"),  # the cache file, a partial one, or in memory
    (r"\.(tflite|litertlm|task|gguf|pte|safetensors)$", "model file"),
    (r"\.so(\.\d+)*$|^memfd:.*dlopen", "libraries"),  # libm.so.6; LiteRT loads some from memfd
    (r"^memfd:|^dev/zero$|^sysv|^anon_hugepage$", "anonymous"),  # shared memory, not a file
)


def _mapping_kind(path: str) -> str:
  if not path.startswith("/"):
    return "anonymous"  # [heap], [stack], [anon:...] and unnamed: malloc, arenas, KV buffers
  name = path.removesuffix(" (deleted)").lower()
  name = name[1:] if name.startswith(("/memfd:", "/dev/", "/sysv", "/anon_hugepage")) else (
      os.path.basename(name))
  for pattern, kind in _MAPPING_KINDS:
    if re.search(pattern, name):
      return kind
  return "other files"


def resident_by_mapping(smaps: str = "/proc/self/smaps") -> dict[str, int]:
  """This process's resident memory now, in bytes, by what is mapped: "weight cache" (XNNPACK's
  packed weights, from its file or in memory), "model file", "anonymous" (heap, runtime arenas,
  KV caches, shared memory), "libraries", "other files". Summed from the kernel's per-mapping
  `Rss:` lines (proc(5), /proc/pid/smaps); {} where there is none to read (not Linux)."""
  try:
    # Paths are bytes to the kernel: a name that is not UTF-8 must not fail the measurement.
    lines = pathlib.Path(smaps).read_bytes().decode("utf-8", "surrogateescape").splitlines()
  except OSError:
    return {}
  found, kind = {}, "anonymous"
  for line in lines:
    head, _, rest = line.partition(" ")
    if not head.endswith(":"):  # a mapping's header: "start-end perms offset dev inode [path]"
      fields = line.split(maxsplit=5)
      kind = _mapping_kind(fields[5] if len(fields) > 5 else "")
    elif head == "Rss:" and (value := rest.split()[:1]) and value[0].isdigit():
      found[kind] = found.get(kind, 0) + int(value[0]) * 1024
  return found


def log(message: str) -> None:
  """Progress goes to the real stderr: stdout carries the result line."""
  console.log(message)


def _tokens(rng: np.random.Generator, n: int, vocab: int) -> list[int]:
  return [int(t) for t in rng.integers(3, max(4, min(vocab, 1000)), n)]


def measure_session(make: Callable[[], Session], protocol: Plan, vocab: int,
                    name: str) -> dict:
  """The common protocol: load, first call, prefill at each length, time to first token, decode at
  each depth (median step time of each repeat, median over repeats), peak RSS."""
  rng = np.random.default_rng(0)
  start = time.perf_counter()
  session = make()
  load_s = time.perf_counter() - start
  t0 = time.perf_counter()
  session.decode(1)  # the first call: kernels initialise, weights may be packed
  first_call_s = time.perf_counter() - t0
  log(f"  {name}: loaded in {load_s:.2f} s, first call {first_call_s:.2f} s")
  result = {"load_s": load_s, "first_call_s": first_call_s, "prefill_tps": {}, "decode_tps": {},
            "decode_step_s": {}}
  for length in protocol.prefill_lengths:
    if length > session.kv_cache_max_len:
      continue
    speeds = []
    for _ in range(protocol.repeats):
      session.reset()
      tokens = _tokens(rng, length, vocab)
      t0 = time.perf_counter()
      session.prefill(tokens)
      speeds.append(length / (time.perf_counter() - t0))
    result["prefill_tps"][str(length)] = statistics.median(speeds)
    log(f"  {name}: prefill {length}: {result['prefill_tps'][str(length)]:.1f} tok/s")
  ttfts = []
  for _ in range(protocol.repeats):
    session.reset()
    tokens = _tokens(rng, protocol.ttft_prompt, vocab)
    t0 = time.perf_counter()
    int(np.argmax(session.prefill(tokens)))
    ttfts.append(time.perf_counter() - t0)
  result["ttft_s"] = statistics.median(ttfts)
  for depth in protocol.depths:
    if depth + protocol.decode_tokens + 2 > session.kv_cache_max_len:
      continue
    medians = []
    for _ in range(protocol.repeats):
      session.reset()
      token = int(np.argmax(session.prefill(_tokens(rng, depth, vocab))))
      token = int(np.argmax(session.decode(token)))  # untimed: leaves the prefill path
      steps = []
      for _ in range(protocol.decode_tokens):
        t0 = time.perf_counter()
        token = int(np.argmax(session.decode(token)))
        steps.append(time.perf_counter() - t0)
      medians.append(statistics.median(steps))
    step = statistics.median(medians)
    result["decode_step_s"][str(depth)] = step
    result["decode_tps"][str(depth)] = 1 / step
    log(f"  {name}: decode at depth {depth}: {1 / step:.2f} tok/s")
  # Where the memory is at the end (read first: reading /proc allocates a little itself).
  result["resident_bytes_by_mapping"] = resident_by_mapping()
  result["runtime_peak_rss_bytes"] = peak_rss_bytes()
  return result


def memory_bandwidth(threads: int, mib: int = 1024, repeats: int = 5) -> dict:
  """Read bandwidth: `threads` threads each summing their share of a `mib` MiB array (numpy
  releases the GIL in the reduction), after one warm-up pass. The best of the repeats is the
  machine's figure (as STREAM reports): other work on the machine only lowers it."""
  data = np.ones(mib * 2**20 // 8, dtype=np.float64)
  parts = np.array_split(data, threads)
  speeds = []
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    for i in range(repeats + 1):
      t0 = time.perf_counter()
      list(pool.map(np.sum, parts))
      seconds = time.perf_counter() - t0
      if i:
        speeds.append(data.nbytes / seconds)
  return {"bytes_per_s": max(speeds), "median_bytes_per_s": statistics.median(speeds),
          "array_mib": mib, "threads": threads, "repeats": repeats,
          "method": "numpy sum over a float64 array, one slice per thread; best of repeats"}


# The vector extensions that decide which kernels XNNPACK and ggml pick: figures from machines
# that differ in these are not comparable.
ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def machine() -> dict:
  """The CPU (model name and the ISA extensions it reports), CPUs, memory in bytes, OS, Python."""
  cpu, flags = "", set()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name") and not cpu:
        cpu = line.split(":", 1)[1].strip()
      elif line.startswith("flags") and not flags:
        flags = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  mem = 0
  try:
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
      if line.startswith("MemTotal:"):
        mem = int(line.split()[1]) * 1024
  except OSError:
    pass
  return {"cpu": cpu or platform.processor(), "isa": [f for f in ISA if f in flags],
          "cpus": os.cpu_count(), "memory_bytes": mem,
          "platform": platform.platform(), "python": platform.python_version()}


def machine_at_end() -> dict:
  """`machine()` with the load average at the end of a run (the serving and speculative
  comparisons record it beside the one at their start)."""
  return {**machine(), "load_average_at_end": load_average()}


def isa_text(machine_: dict) -> str:
  """The ISA extensions a run recorded, as text ('no AVX2' when it found none of them)."""
  return ", ".join(machine_["isa"]) or "no AVX2"


def load_average() -> list[float]:
  """The 1, 5 and 15 minute load averages: other work on the machine skews timings."""
  return [round(x, 2) for x in os.getloadavg()]


def versions() -> dict[str, str]:
  from litezoo.artifacts import manifest  # pylint: disable=g-import-not-at-top
  return manifest.versions((*manifest.PACKAGES, "numpy", "sentencepiece", "matplotlib"))


@dataclasses.dataclass
class Finished:
  # The command's code; 128+N if signal N ended it; 126/127 if it could not be executed;
  # negative only if the spawner itself was killed.
  returncode: int
  seconds: float  # wall time, the spawner's start (about 15 ms) included
  peak_rss_bytes: int | None  # the command's and its waited-for descendants'; None if unknown
  stdout: str


def run_measured(cmd: list[str], env: dict | None = None, cwd: str | None = None,
                 progress: bool = False) -> Finished:
  """Runs `cmd`; returns its wall time, its own peak RSS and its stdout. Its stderr goes where
  the libraries' output goes (tools/console.py), or with `progress` (the zoo's own children,
  which keep their libraries quiet themselves) to the real stderr."""
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryDirectory() as scratch:
    report = pathlib.Path(scratch) / "maxrss"
    start = time.perf_counter()
    # Through _SPAWN, so the peak is the command's own (wait4's rusage: the max RSS of it and of
    # the processes it waited for), not the benchmark's inherited at exec.
    # -I -S: the command's PYTHON* variables and site-packages are not the spawner's.
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _SPAWN, str(report), *cmd],
                            stdout=out, env=env, cwd=cwd,
                            stderr=console.stderr() if progress else None)
    proc.wait()
    seconds = time.perf_counter() - start
    out.seek(0)
    maxrss = report.read_text() if report.exists() else ""
    return Finished(proc.returncode, seconds, int(maxrss) * 1024 if maxrss.isdigit() else None,
                    out.read())


def child_env(extra: dict | None = None) -> dict:
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      [str(PACKAGE_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
  env.update(extra or {})
  return env


def run_child(peer: str, args: dict, env: dict | None = None) -> tuple[dict | None, str]:
  """Runs `peer`'s measurement in a fresh Python process; (result, error text)."""
  cmd = [sys.executable, "-m", "litezoo.tools.bench.child", peer, json.dumps(args)]
  os.sync()  # files an earlier step wrote are flushed now, not while this one is timed
  done = run_measured(cmd, env=child_env(env), progress=True)
  for line in reversed(done.stdout.splitlines()):
    if line.startswith(RESULT_MARK):
      result = json.loads(line[len(RESULT_MARK):])
      if "error" in result:
        return None, result["error"]
      result.setdefault("process_peak_rss_bytes", done.peak_rss_bytes)
      return result, ""
  tail = done.stdout.strip().splitlines()[-3:]
  return None, f"the measuring process exited with {done.returncode}: {' | '.join(tail)}"
