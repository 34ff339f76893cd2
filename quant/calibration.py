"""The calibration text of calibrated recipes (the `gptq` option): what the model reads so its
layers' input statistics can be collected.

quant/data/lcet10.txt: the proceedings of the Library of Congress Workshop on Electronic Texts
(1992), a US government work in the public domain, as distributed by Project Gutenberg and shipped
in the Canterbury corpus (426,754 bytes). It is kept apart from the evaluation text
(quant/data/alice_in_wonderland.txt), so no score is measured on the text a recipe was fitted to.
"""

import hashlib
import pathlib
from collections.abc import Callable

import numpy as np

TEXT = pathlib.Path(__file__).resolve().parent / "data" / "lcet10.txt"
WINDOW = 256  # tokens per calibration window, BOS included
WINDOWS = 128  # windows read: 32,768 tokens (32 overfitted: see docs/quality.md)
DAMP = 0.01  # GPTQ's dampening: this fraction of mean(diag(H)) is added to H's diagonal


def identity() -> dict:
  """What decides a calibration: part of a calibrated artifact's cache key and manifest."""
  return {"text": TEXT.name, "sha256": hashlib.sha256(TEXT.read_bytes()).hexdigest(),
          "window": WINDOW, "windows": WINDOWS, "damp": DAMP}


def windows(encode: Callable[[str], list[int]], bos_id: int | None,
            window: int = WINDOW) -> list[list[int]]:
  """`WINDOWS` slices of `window` tokens spread evenly over the text, each starting with BOS
  when the tokenizer has one. `encode` maps text to token ids."""
  tokens = [t for t in encode(TEXT.read_text()) if t != bos_id]
  body = window - (bos_id is not None)
  starts = np.linspace(0, max(len(tokens) - body, 0), WINDOWS).astype(int)
  prefix = [bos_id] if bos_id is not None else []
  return [prefix + tokens[s:s + body] for s in starts]
