"""The process's own memory figures, read the same way wherever they are recorded (a conversion's
manifest, the benchmark's measuring children). Standard library only: the ExecuTorch child runs
it in a venv without the zoo's dependencies."""

import pathlib
import resource


def peak_rss_bytes() -> int:
  """This process's peak resident memory in bytes: VmHWM of /proc/self/status, which belongs to
  the address space exec made. Not getrusage's ru_maxrss: Linux carries the parent's peak into a
  child at exec (subprocess spawns with vfork), so a 60 MiB child of a 310 MiB parent would read
  310. ru_maxrss only where there is no /proc."""
  try:
    status = pathlib.Path("/proc/self/status").read_text()
  except OSError:
    status = ""
  for line in status.splitlines():
    if line.startswith("VmHWM:"):
      return int(line.split()[1]) * 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
