"""Nested Bazel servers on this checkout for the integration tests (release_build_test,
remote_execution_test): each with an output root of its own, its execution log parsed."""

import hashlib
import json
import os
import pathlib
import socket
import subprocess

from litezoo.tests import testing

# The checkout: runfiles are symlinks into it.
WORKSPACE = (testing.RUNFILES_ROOT / "litezoo" / "requirements.lock").resolve().parent


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Bazel:
  """A Bazel server of its own on this checkout, with an output root nobody else uses."""

  def __init__(self, root: pathlib.Path):
    self.root = root

  def __call__(self, *args: str) -> subprocess.CompletedProcess:
    command = ["bazel", f"--output_user_root={self.root}", f"--output_base={self.root}/base",
               *args]
    result = subprocess.run(command, cwd=WORKSPACE, capture_output=True, text=True,
                            env={**os.environ, "HOME": str(self.root)})
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr[-4000:]}"
    return result

  def build(self, *args: str) -> list[dict]:
    """Builds (flags and targets in `args`); returns the execution log's spawns, also kept as
    `self.spawns`."""
    log = self.root / "exec.json"
    # No convenience symlinks: they would repoint the checkout's bazel-* links at this server.
    self("build", "--symlink_prefix=/", f"--execution_log_json_file={log}", *args)
    self.spawns = spawns(log)
    return self.spawns

  def bin(self) -> pathlib.Path:
    return pathlib.Path(self("info", "bazel-bin").stdout.strip())

  def hashes(self, directory: pathlib.Path) -> dict[str, str]:
    """{file name: sha256} of the files in `directory`."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if p.is_file()}

  def expunge(self):
    """Deletes this server's output root (GBs of converted files) and stops the server."""
    subprocess.run(["bazel", f"--output_user_root={self.root}", f"--output_base={self.root}/base",
                    "clean", "--expunge"], cwd=WORKSPACE, capture_output=True)


def spawns(log: pathlib.Path) -> list[dict]:
  """The execution log: JSON objects one after another (Bazel 4 writes no list)."""
  text, decoder, found, index = log.read_text(), json.JSONDecoder(), [], 0
  while index < len(text):
    while index < len(text) and text[index].isspace():
      index += 1
    if index < len(text):
      spawn, index = decoder.raw_decode(text, index)
      found.append(spawn)
  return found
