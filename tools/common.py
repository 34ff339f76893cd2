"""What every zoo command line shares: user paths, the registry, one-line errors."""

import os
import pathlib
import sys
from typing import Callable

from absl import app

from litezoo.core.errors import ZooError  # re-exported for tools


def user_path(path: str) -> pathlib.Path:
  """Resolves a path the user typed against the directory they ran `bazel run` from."""
  base = os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd())
  return pathlib.Path(base, os.path.expanduser(path))


def run(main: Callable[[list[str]], int | None]) -> None:
  """absl's app.run, with input errors printed as one line (exit 2) and Ctrl-C as exit 130."""
  tool = pathlib.Path(sys.argv[0]).stem

  def guarded(argv):
    try:
      return main(argv)
    except ZooError as e:
      print(f"{tool}: error: {e}", file=sys.stderr)
      return 2
    except KeyboardInterrupt:
      print(f"{tool}: interrupted; nothing partial was left behind", file=sys.stderr)
      return 130

  app.run(guarded)


def signatures(spec, prefill_seq_lens: list[str] | None, kv_cache_max_len: int | None,
               kv_layout: str | None = None):
  """The plugin's export signatures with --prefill_seq_lens / --kv_cache_max_len / --kv_layout
  applied."""
  from litezoo.core.spec import Signatures  # pylint: disable=g-import-not-at-top
  return Signatures(
      int_list(prefill_seq_lens, "prefill_seq_lens") if prefill_seq_lens
      else spec.signatures.prefill_seq_lens,
      kv_cache_max_len if kv_cache_max_len is not None else spec.signatures.kv_cache_max_len,
      kv_layout or spec.signatures.kv_layout)


def int_list(values: list[str], flag: str) -> tuple[int, ...]:
  try:
    return tuple(int(v) for v in values)
  except ValueError as e:
    raise ZooError(f"--{flag} must be a comma-separated list of integers, got "
                   f"{','.join(values)!r}") from e
