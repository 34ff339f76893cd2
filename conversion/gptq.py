"""GPTQ for the int4 recipes (blockwise and per channel) and int8 (per channel): the `gptq` option.

Rounding each weight to its nearest int4 level (min-max) ignores how the rounding errors of one
row add up in the layer's output. GPTQ (Frantar et al., "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers", ICLR 2023, arXiv:2210.17323, Algorithm 1)
quantizes the input columns one at a time and moves each column's error onto the columns not yet
quantized, weighted by the inverse Hessian H = X^T X of the layer's inputs X on calibration text,
so the layer's output on that text changes least.

The zoo collects H on the PyTorch model it converts, not inside ai-edge-quantizer (whose GPTQ
keeps every intermediate tensor of every signature: 7.9 GB for SmolLM2 135M, then solves each
weight once per consumer at about one op a second; docs/quality.md). `hessians` collects H per
linear layer with forward hooks while the model reads the calibration text; `solve` turns a weight
and its H into integer codes and their scales; int4_levels.py hands those to the quantizer
for every op that reads the weight, so a weight shared by several signatures stays one buffer.
The grid is the recipe's own, so a `gptq` file runs on the same kernels as a min-max one: for
int4 levels16's (all 16 levels, bf16 block scales, the runtime's format), for int8 the
quantizer's symmetric per-channel grid (-127..127, scale max|w| / 127, float32).

With the `hadamard` option too (`gptq:hadamard`), each weight is first rotated along its input
dimension by the quantizer's block-diagonal Hadamard matrix R (blocks of 32, or of the int4 block
size) and GPTQ solves W R against R^T H R; the quantizer inserts the same rotation on the layer's
input at run time (int4_levels.py). The rotation spreads the few input channels with very large
activations over their block, which is where int4 loses most, and where int8 activations lose.

The calibration text and its windows: quant/calibration.py.
"""

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from litezoo.quant.calibration import DAMP

BATCH = 128  # columns per lazy batch update (the paper's B), rounded to whole blocks
# Rows per slice: every row is quantized on its own (they share only H), and a slice's lazy batch
# (ROWS x BATCH float64, 8 MiB) stays in cache; a 262k-row embedding table in one piece did not.
ROWS = 8192


def digest(weight: np.ndarray) -> str:
  """The key a weight is found by, in PyTorch and in the float .tflite: the sha1 of its float32
  bytes in [out, in] order."""
  return hashlib.sha1(np.ascontiguousarray(weight, np.float32).tobytes()).hexdigest()


class _HeadReached(Exception):
  """Ends a calibration pass at the LM head, once every layer's input has been seen."""


def _stop_at_head(module, inputs):
  raise _HeadReached


def hessians(model, token_windows: Sequence[Sequence[int]], kv_cache_max_len: int,
             log=lambda _: None) -> dict[str, np.ndarray]:
  """H = sum of x x^T over every input row x of every nn.Linear of `model` (the re-authored
  model), as the model reads each window from an empty KV cache; keyed by `digest` of the
  layer's weight, float64 [in, in]. Layers sharing one weight share one H (their inputs added).
  Each pass stops at the LM head's input (its logits are not needed); `log` hears every 16th
  window."""
  import torch  # pylint: disable=g-import-not-at-top
  from litezoo.reference.reauthored import TorchDecoder  # pylint: disable=g-import-not-at-top
  sums: dict[int, torch.Tensor] = {}
  layers = {id(m.weight): m for m in model.modules() if isinstance(m, torch.nn.Linear)}
  last = [None, None]  # (input, its x^T x): the gate and up projections read the same input

  def hook(module, inputs):
    if inputs[0] is not last[0]:
      x = inputs[0].reshape(-1, inputs[0].shape[-1]).float()
      last[:] = inputs[0], (x.T @ x).double()  # float32 products, float64 sums
    key = id(module.weight)
    sums[key] = sums.get(key, 0) + last[1]

  handles = [m.register_forward_pre_hook(hook) for m in layers.values()]
  head = getattr(model, "lm_head", None)
  if head is not None:
    # After the head's own hook has its H: the logits themselves are never needed (Gemma 3's
    # 262k-row head is the largest matmul of the pass).
    handles.append(head.register_forward_pre_hook(_stop_at_head))
  try:
    decoder = TorchDecoder(model, kv_cache_max_len)
    for i, window in enumerate(token_windows):
      decoder.reset()
      with contextlib.suppress(_HeadReached):
        decoder.prefill(list(window)[:kv_cache_max_len])
      if (i + 1) % 16 == 0 or i + 1 == len(token_windows):
        log(f"calibration window {i + 1}/{len(token_windows)}")
  finally:
    last.clear()
    for handle in handles:
      handle.remove()
  return {digest(layers[k].weight.detach().numpy()): h.numpy() for k, h in sums.items()}


# The integer range of each weight width GPTQ solves for. int8 keeps the quantizer's symmetric
# range, without -128: the TFLite int8 spec's weights are in -127..127.
GRIDS = {4: (-8, 7), 8: (-127, 127)}


def _grid_scales(weight: np.ndarray, block: int, bf16: bool = True, bits: int = 4) -> np.ndarray:
  """The min-max scales of each block of `block` columns on the `bits` grid: [rows, cols] ->
  [rows, cols / block]. int4: int4_levels.scales, bf16-rounded (blockwise kernels) unless not
  `bf16` (per-channel ones read float32); int8: max|w| / 127, float32."""
  from litezoo.conversion import int4_levels  # pylint: disable=g-import-not-at-top
  blocks = weight.reshape(len(weight), -1, block)
  if bits == 8:
    return (np.maximum(np.abs(blocks).max(2), 1e-9) / GRIDS[8][1]).astype(np.float32)
  return int4_levels.scales(blocks.min(2).astype(np.float32), blocks.max(2).astype(np.float32),
                            bf16)


def search_scales(weight: np.ndarray, importance: np.ndarray, block: int,
                  steps: int = 20, bf16: bool = True, bits: int = 4) -> np.ndarray:
  """Block scales [rows, cols / block] chosen to minimize the importance-weighted rounding error
  sum_j importance_j (w_j - scale * round(w_j / scale))^2 of each block, among the min-max
  scale of the `bits` grid (`_grid_scales`) shrunk by factors 1 down to 0.7 (clipping the
  extremes of a block costs less than rounding its many small weights coarsely; llama.cpp's
  imatrix-weighted quantization searches scales the same way). importance: [cols], e.g. diag(H).
  int4 scales are bf16-representable unless not `bf16`.
  """
  from litezoo.conversion import int4_levels  # pylint: disable=g-import-not-at-top
  weights = importance.reshape(1, -1, block).astype(np.float64)
  low, high = GRIDS[bits]
  found = []
  for start in range(0, len(weight), 256):  # rows are independent: a slice's temporaries fit cache
    part = weight[start:start + 256]
    blocks = part.reshape(len(part), -1, block).astype(np.float64)
    base = _grid_scales(part, block, bf16, bits).astype(np.float64)
    best, best_error = base, np.full(base.shape, np.inf)
    for factor in np.linspace(1.0, 0.7, steps):
      scale = (base * factor).astype(np.float32)
      scale = (int4_levels.bf16(scale) if bf16 and bits == 4 else scale).astype(np.float64)
      q = np.clip(np.round(blocks / scale[:, :, None]), low, high)
      error = ((blocks - q * scale[:, :, None]) ** 2 * weights).sum(2)
      better = error < best_error
      best, best_error = np.where(better, scale, best), np.where(better, error, best_error)
    found.append(best.astype(np.float32))
  return np.concatenate(found)


def solve(weight: np.ndarray, hessian: np.ndarray, block: int, damp: float = DAMP,
          static_scales: np.ndarray | None = None, act_order: bool = True,
          bf16_scales: bool = True, bits: int = 4) -> tuple[np.ndarray, np.ndarray]:
  """GPTQ of one weight on the `bits` grid (GRIDS: 4, the levels16 int4 grid, or 8).

  weight: float32 [rows, cols] ([out, in]); hessian: float [cols, cols]; block: the input
  columns sharing one scale (divides cols; cols itself for one scale per row). Returns (codes
  int8 [rows, cols] in GRIDS[bits] ([-8, 7] for int4), scales float32 [rows, cols / block],
  positive, for int4 bf16-representable if `bf16_scales`, as blockwise kernels read them) with
  weight ~ codes * scale of the column's block.

  With `act_order` the columns are quantized in decreasing order of their input's energy
  (diag H; the reference implementation's `--act-order`), so the few channels with very large
  activations are fixed first and the others absorb their errors; the block scales are then
  fixed beforehand by `search_scales` against diag H, unless `static_scales`
  [rows, cols / block] gives them (which fixes them without act order too). Otherwise a block's
  scale is set from its weights as GPTQ has updated them when the block starts (`_grid_scales`:
  for int4 max|w| / 8 where the extreme is negative, else / 7). Raises ValueError when `block`
  does not divide cols or `bits` is not 4 or 8.
  """
  import torch  # pylint: disable=g-import-not-at-top
  rows, cols = weight.shape
  if cols % block:
    raise ValueError(f"block size {block} does not divide the weight's {cols} input columns")
  if bits not in GRIDS:
    raise ValueError(f"GPTQ solves for {' or '.join(map(str, GRIDS))} bits, not {bits}")

  if act_order and static_scales is None:
    static_scales = search_scales(weight, np.diag(hessian), block, bf16=bf16_scales, bits=bits)
  w = torch.tensor(weight, dtype=torch.float64)
  h = torch.tensor(hessian, dtype=torch.float64).clone()
  dead = torch.diag(h) == 0  # inputs never seen: their weights cannot matter
  h[dead, dead] = 1
  w[:, dead] = 0
  order = (torch.argsort(torch.diag(h), descending=True, stable=True) if act_order
           else torch.arange(cols))
  w, h = w[:, order], h[order][:, order]
  h += damp * torch.mean(torch.diag(h)) * torch.eye(cols, dtype=torch.float64)
  # The upper Cholesky factor of H^-1 gives every column's update row at once (the paper's 3.3).
  hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
  # Kept transposed, [columns, rows] and [blocks, rows]: GPTQ reads and writes one column at a
  # time, so a column is contiguous in memory this way round.
  codes = torch.zeros((cols, rows), dtype=torch.int8)
  scales = (torch.tensor(static_scales, dtype=torch.float64).T.contiguous()
            if static_scales is not None
            else torch.zeros((cols // block, rows), dtype=torch.float64))
  threads = torch.get_num_threads()
  # One thread: the column loop is thousands of small vector operations, which a second thread
  # slows down (7x on a 2-core machine with other work running), never speeds up.
  torch.set_num_threads(1)
  try:
    for r in range(0, rows, ROWS):
      _solve_rows(w[r:r + ROWS].T.contiguous(), hinv, order, block, static_scales is not None,
                  codes[:, r:r + ROWS], scales[:, r:r + ROWS], bf16_scales, bits)
  finally:
    torch.set_num_threads(threads)
  return (np.ascontiguousarray(codes.T.numpy()),
          np.ascontiguousarray(scales.T.numpy(), dtype=np.float32))


def _solve_rows(w, hinv, order, block: int, static: bool, codes, scales, bf16: bool,
                bits: int) -> None:
  """GPTQ's column loop over one slice of rows; w: float64 [cols, rows], the columns in `order`
  (updated in place). Writes the slice's codes [cols, rows] and, unless `static`, its scales
  [cols / block, rows], both in the weight's own column order."""
  import torch  # pylint: disable=g-import-not-at-top
  cols = w.shape[0]
  low, high = GRIDS[bits]
  batch = max(BATCH // block, 1) * block  # whole blocks per lazy batch
  for start in range(0, cols, batch):
    end = min(start + batch, cols)
    w1, hinv1 = w[start:end], hinv[start:end, start:end]
    err1 = torch.zeros_like(w1)
    for i in range(end - start):
      column = int(order[start + i])
      if not static and i % block == 0:
        scales[column // block] = torch.tensor(
            _grid_scales(w1[i:i + block].T.numpy(), block, bf16, bits)[:, 0],
            dtype=torch.float64)
      scale = scales[column // block]
      q = torch.clamp(torch.round(w1[i] / scale), low, high)
      codes[column] = q.to(torch.int8)
      err = (w1[i] - q * scale) / hinv1[i, i]
      w1[i:] -= hinv1[i, i:][:, None] * err[None, :]
      err1[i] = err
    w[end:] -= hinv[start:end, end:].T @ err1


_SOLVED: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_HESSIANS: dict[str, np.ndarray] | None = None


@contextlib.contextmanager
def calibrated(found: dict[str, np.ndarray]) -> Iterator[None]:
  """Makes `found` (from `hessians`) the Hessians the quantizer's gptq entries read, for the
  duration of one quantization."""
  global _HESSIANS
  _HESSIANS = found
  _SOLVED.clear()
  try:
    yield
  finally:
    _HESSIANS = None
    _SOLVED.clear()


class CalibrationError(ValueError):
  pass


def quantized(weight: np.ndarray, block: int, required: bool = True,
              rotation: tuple[Callable[[np.ndarray], np.ndarray], object] | None = None,
              bf16_scales: bool = True, bits: int = 4) -> tuple[np.ndarray, np.ndarray] | None:
  """(codes, scales) of `weight` by GPTQ with the Hessian of the current `calibrated` block,
  solved once per weight however many ops read it (so a shared buffer stays shared); the weight
  is hashed once per call. A weight without a Hessian (an untied embedding table reads no
  linear layer's input) gives None if not `required`, else raises CalibrationError.

  `rotation` = (rotate, key): `rotate(m)` is m R for an orthogonal R acting on the last axis
  (the input dimension), `key` names R. The layer then reads x R and holds W R, so GPTQ solves
  W R against the Hessian of x R, R^T H R (QuaRot, Ashkboos et al. 2024, arXiv:2404.00456, with
  GPTQ after the rotation as there); the codes and scales are those of W R. `block`,
  `bf16_scales` and `bits` as for `solve`."""
  key = (digest(weight), rotation[1] if rotation else None, block, bf16_scales, bits)
  if key not in _SOLVED:
    if _HESSIANS is None or key[0] not in _HESSIANS:
      if not required:
        return None
      raise CalibrationError(
          f"no calibration statistics for a {list(weight.shape)} weight: gptq needs the model "
          "that was exported (quantize through pipeline.artifact or convert, not a bare file)")
    hessian = _HESSIANS[key[0]]
    if rotation:
      rotate = rotation[0]
      weight, hessian = rotate(weight), rotate(np.ascontiguousarray(rotate(hessian).T))  # H sym.
    _SOLVED[key] = solve(weight, hessian, block, bf16_scales=bf16_scales, bits=bits)
  return _SOLVED[key]
