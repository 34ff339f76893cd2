"""Pickled checkpoints (`.bin`, `.pt`): only when asked for, and only through torch's
weights_only unpickler, which rebuilds tensors and refuses any other global."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any, Mapping

from litezoo.sources import CheckpointError

if TYPE_CHECKING:
  import torch


def refuse(files: list[pathlib.Path]) -> CheckpointError:
  return CheckpointError(
      f"refusing to unpickle {', '.join(str(f) for f in files)}: loading a pickle can run "
      "arbitrary code. Convert it to safetensors, or pass --allow_pickle to load it with "
      "torch.load(weights_only=True), which only rebuilds tensors")


class PickleSource:
  """`.bin`/`.pt` checkpoints, only when asked for, and only through weights_only unpickling."""

  def __init__(self, files: list[pathlib.Path], directory: pathlib.Path | None = None):
    """`directory`: the checkpoint directory the files came from, whose config.json (if any)
    is checked against the plugin's, as a safetensors directory's is."""
    import torch  # pylint: disable=g-import-not-at-top
    self._files = files
    self._directory = directory
    self._tensors: dict[str, torch.Tensor] = {}
    for file in files:
      try:
        # weights_only: the restricted unpickler that rebuilds tensors and refuses any other
        # global; mmap: tensors stay on disk until copied into the model.
        state = torch.load(file, weights_only=True, mmap=True, map_location="cpu")
      except Exception as e:  # pickle errors come in many types; none may fall back to unsafe
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights only load failed" in str(e).lower():  # a pickle of more than tensors
          raise CheckpointError(f"{file}: refused by torch.load(weights_only=True) ({reason}); "
                                "this file holds more than tensors, convert it to safetensors "
                                "on a machine you trust") from e
        raise CheckpointError(f"{file}: torch.load(weights_only=True) cannot read it ({reason}); "
                              "it is not a checkpoint written by torch.save (1.6 or later): pass "
                              "the model's safetensors") from e
      state = state.get("model_state_dict", state) if isinstance(state, dict) else state
      if not isinstance(state, dict):
        raise CheckpointError(f"{file}: holds a {type(state).__name__}, not a dict of tensors")
      self._tensors.update({k: v for k, v in state.items() if isinstance(v, torch.Tensor)})

  def names(self) -> list[str]:
    return list(self._tensors)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._tensors[name].shape)

  def load(self, name: str) -> torch.Tensor:
    return self._tensors[name]

  def config(self) -> Mapping[str, Any] | None:
    from litezoo.sources import safetensors  # pylint: disable=g-import-not-at-top
    return safetensors.read_config(self._directory) if self._directory is not None else None
