"""Where weights come from: checkpoint files read tensor by tensor, pinned sources fetched and
checked, random checkpoints written once. A source knows files, never models: a GGUF source gets
its name map from the family it loads for.

A source lists tensor names with shapes and loads one tensor at a time, so a multi-GB checkpoint
is never held twice in memory.
"""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from litezoo.core.errors import ZooError

if TYPE_CHECKING:  # tensors are made where they are loaded: the runtime path reads no checkpoint
  import torch

  from litezoo.families.base import GGUFMap


class CheckpointError(ZooError, ValueError):
  """A checkpoint that cannot be used, with a message naming the problem and the fix."""


class Source(Protocol):
  """Tensors of one checkpoint under Hugging Face names."""

  def names(self) -> list[str]:
    ...

  def shape(self, name: str) -> tuple[int, ...]:
    ...

  def load(self, name: str) -> torch.Tensor:
    """The tensor as stored (safetensors: its own dtype; GGUF: dequantized to float32)."""
    ...

  def config(self) -> Mapping[str, Any] | None:
    """The hyper-parameters the file itself carries, as `config.json` keys (None: it has none)."""
    ...


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def _refuse_pickle_flag(allow_pickle: bool, path: pathlib.Path, kind: str) -> None:
  """An option that cannot apply is refused, not ignored."""
  if allow_pickle:
    raise CheckpointError(f"--allow_pickle applies only to a pickled checkpoint "
                          f"({', '.join(PICKLE_SUFFIXES)} files); {path} is {kind}, which loads "
                          "without it: drop --allow_pickle")


def missing(path: pathlib.Path) -> CheckpointError:
  """The error for a checkpoint path that does not lead to a file or directory: missing, or a
  symlink that dangles or loops (which Path.exists() also calls missing)."""
  try:
    os.stat(path)
  except OSError as e:
    if os.path.lexists(path):
      if isinstance(e, FileNotFoundError):
        return CheckpointError(f"checkpoint {path} is a symlink to {os.readlink(path)}, which "
                               "does not exist")
      return CheckpointError(f"checkpoint {path} cannot be read ({e.strerror or e})")
  return CheckpointError(f"checkpoint {path} does not exist")


def open_checkpoint(path: str | pathlib.Path, allow_pickle: bool = False,
                    gguf: GGUFMap | None = None) -> Source:
  """A safetensors file or directory, or a GGUF file (read with the family's `gguf` map);
  pickles only with `allow_pickle`. Raises CheckpointError naming what is wrong."""
  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  if not path.exists():
    raise missing(path)
  if path.suffix == ".gguf":
    _refuse_pickle_flag(allow_pickle, path, "a GGUF file")
    from litezoo.sources import gguf as gguf_lib
    return gguf_lib.GGUFSource(path, gguf)
  from litezoo.sources import safetensors
  if (path.is_dir() and not any(path.glob("*.safetensors"))
      and not os.path.lexists(path / safetensors.SafetensorsSource.INDEX)):
    pickles = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
  elif path.is_file() and path.suffix in PICKLE_SUFFIXES:
    pickles = [path]
  else:
    _refuse_pickle_flag(allow_pickle, path, "safetensors")
    return safetensors.SafetensorsSource(path)
  if not pickles:
    raise CheckpointError(f"no .safetensors, .gguf or (with --allow_pickle) .bin files in {path}")
  from litezoo.sources import pickled
  if not allow_pickle:
    raise pickled.refuse(pickles)
  return pickled.PickleSource(pickles, path if path.is_dir() else None)
