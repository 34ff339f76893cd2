"""Symmetric int4 on all 16 levels: the `levels16` recipe option.

ai-edge-quantizer's symmetric min-max sets scale = max|w| / 7 and clips to [-8, 7], so the level -8
is never produced: int4 weights get 15 levels (0 of 4,202,496 blocks of SmolLM2's int4 file
contain a -8; docs/quality.md). llama.cpp's Q4_0 (ggml-quants.c, `quantize_row_q4_0_ref`) uses
all 16: d = m / -8 where m is the block's value of largest magnitude, signed, so that value lands
on -8 and the others get a step 8/7 finer. A negative d is refused by XNNPACK's blockwise kernels
(they take positive bf16 scales, zero point 8), so here a block (or channel) whose extreme value
is negative gets scale = max|w| / 8 (it lands exactly on -8) and the others keep max|w| / 7: about
half the blocks gain a level. Blockwise scales are rounded through bfloat16 as the quantizer does
(the runtime's precision).

Enabled per recipe entry by `algorithm_params: {"levels": 16}` in its weight_tensor_config (which
the quantizer carries through and otherwise ignores); `{"gptq": true}` there takes the codes and
scales on the same grid from GPTQ instead (gptq.py), for int4 and for int8 per channel (on the
quantizer's own int8 grid); `register()` installs this function for the
min-max FULLY_CONNECTED and EMBEDDING_LOOKUP ops through the quantizer's own registration API.
Entries without the parameter get the quantizer's own min-max parameters, unchanged.
"""

import dataclasses
import functools

import ml_dtypes
import numpy as np


def bf16(scale: np.ndarray) -> np.ndarray:
  """float32 scales rounded through bfloat16, as XNNPACK's blockwise kernels read them."""
  return scale.astype(ml_dtypes.bfloat16).astype(np.float16).astype(np.float32)


def scales(lo: np.ndarray, hi: np.ndarray, blockwise: bool) -> np.ndarray:
  """Per-block (or per-channel) scales from each block's min `lo` and max `hi` (same shapes,
  float32): max|w|/8 where the extreme value is negative, else max|w|/7; bf16-rounded if
  blockwise. Quantized values are round(w / scale) clipped to [-8, 7]."""
  bound = np.maximum(np.maximum(-lo, hi), 1e-9)
  scale = np.where(-lo > hi, bound / 8, bound / 7).astype(np.float32)
  return bf16(scale) if blockwise else scale


def tensor_quant_params(op_info, tensor_quant_config, tensor_content=None, tensor_qsv=None,
                        rotation=None):
  """ai-edge-quantizer's `get_tensor_quant_params` for min-max, with 16 int4 levels when the
  config asks for them (symmetric signed int4 weights only), and GPTQ's codes when it asks for
  gptq (symmetric signed int4, or int8 per channel). With `rotation` (gptq.quantized's: a
  function m -> m R and its key) the weight is rotated first and the parameters are those of
  the rotated weight."""
  # pylint: disable=g-import-not-at-top
  from ai_edge_quantizer import qtyping
  from ai_edge_quantizer.algorithms.uniform_quantize import common_quantize
  from ai_edge_quantizer.algorithms.uniform_quantize import naive_min_max_quantize
  from ai_edge_quantizer.algorithms.uniform_quantize import uniform_quantize_tensor as uqt
  bits = tensor_quant_config.num_bits
  asks = tensor_quant_config.algorithm_params
  wanted = (tensor_quant_config.symmetric and tensor_content is not None
            and tensor_quant_config.dtype == qtyping.TensorDataType.INT
            and ((asks.get("levels") == 16 and bits == 4) or (asks.get("gptq") and bits in (4, 8))))
  if not wanted:
    return naive_min_max_quantize.get_tensor_quant_params(op_info, tensor_quant_config,
                                                          tensor_content, tensor_qsv)
  weight = tensor_content
  if rotation:
    tensor_content = rotation[0](tensor_content)
  found = tensor_qsv if tensor_qsv and "min" in tensor_qsv else (
      common_quantize.init_tensor_min_max(tensor_content, op_info))
  params = naive_min_max_quantize.get_tensor_quant_params(op_info, tensor_quant_config, None,
                                                          found)
  blockwise = uqt.is_blockwise(tensor_quant_config.granularity)
  content = tensor_content
  from litezoo.conversion import gptq  # pylint: disable=g-import-not-at-top
  solved = None
  lookup = op_info.op_name == qtyping.TFLOperationName.EMBEDDING_LOOKUP
  if asks.get("gptq"):
    if content.ndim != 2:
      raise gptq.CalibrationError(f"gptq applies to weight matrices only, not a tensor shaped "
                                  f"{list(content.shape)}")
    # An untied embedding table feeds no linear layer, so it has no Hessian: min-max on the same
    # grid. A tied one has the LM head's, so lookup and head share GPTQ's codes.
    block = params.block_size if blockwise else content.shape[1]  # per channel: one whole row
    solved = gptq.quantized(weight, block, required=not lookup, rotation=rotation,
                            bf16_scales=blockwise, bits=bits)
  if solved is not None:
    codes, scale = solved
    scale = scale.reshape(params.scale.shape)
    # GPTQ's codes, written as the weights they stand for: quantizing those with the same scales
    # gives the codes back exactly (|code * scale / scale - code| is far below one half).
    content = (codes.reshape(len(codes), -1, block)
               * scale.reshape(len(codes), -1, 1)).reshape(content.shape).astype(np.float32)
  elif bits == 8:
    scale = params.scale  # the quantizer's own min-max int8 (of the rotated weight, if rotated)
  else:
    scale = scales(np.asarray(found["min"], np.float32), np.asarray(found["max"], np.float32),
                   blockwise)
  assert scale.shape == params.scale.shape, (scale.shape, params.scale.shape)
  params = dataclasses.replace(params, scale=scale)
  return dataclasses.replace(
      params, quantized_data=uqt.uniform_quantize(content, params, blockwise))


def _hadamard_gptq(materialize, op_info, graph_info, tensor_quant_params_cache,
                   tensor_name_to_qsv=None):
  """The quantizer's decomposed-Hadamard `materialize` of one op, with GPTQ's codes of the
  rotated weight when the entry asks for gptq (`gptq:hadamard`). The quantizer rotates a
  weight's input dimension by blocks of the largest power-of-two Hadamard matrix dividing it and
  inserts the same rotation on the op's input (hadamard_rotation.py); it looks a weight's
  parameters up in its cache before computing its own (OCTAV's), so the rotated GPTQ codes are
  put there first, for every op that reads the buffer."""
  # pylint: disable=g-import-not-at-top
  from ai_edge_quantizer import qtyping
  from ai_edge_quantizer.algorithms.uniform_quantize import hadamard_rotation
  from ai_edge_quantizer.utils import tfl_flatbuffer_utils
  config = op_info.op_quant_config.weight_tensor_config
  if config is not None and config.algorithm_params.get("gptq"):
    tensor = graph_info.subgraph_tensors[op_info.op.inputs[1]]  # the weight, or the table
    if tensor_quant_params_cache.lookup(tensor.buffer, config) is None:
      weight = tfl_flatbuffer_utils.get_tensor_data(tensor, graph_info.buffers)
      size_limit = config.algorithm_params.get("max_hadamard_size")

      def rotate(m):  # the quantizer's own rotation, so weights and inputs turn alike
        return hadamard_rotation._rotate_with_diagonal_hadamard(  # pylint: disable=protected-access
            m, m.ndim - 1, size_limit)

      _, size, signs = rotate(weight[:1])
      params = tensor_quant_params(op_info, config, weight,
                                   rotation=(lambda m: rotate(m)[0], ("hadamard", size)))
      tensor_quant_params_cache.insert(tensor.buffer, config, dataclasses.replace(
          params, hadamard=qtyping.UniformQuantParams.HadamardRotationParams(
              random_binary_vector=signs, hadamard_size=size)))
  return materialize(op_info=op_info, graph_info=graph_info,
                     tensor_quant_params_cache=tensor_quant_params_cache,
                     tensor_name_to_qsv=tensor_name_to_qsv)


@functools.cache
def register() -> None:
  """Installs `tensor_quant_params` for min-max FULLY_CONNECTED and EMBEDDING_LOOKUP, and
  `_hadamard_gptq` for their decomposed-Hadamard versions (once)."""
  # pylint: disable=g-import-not-at-top
  from ai_edge_quantizer import algorithm_manager, qtyping
  from ai_edge_quantizer.algorithms.uniform_quantize import common_quantize
  from ai_edge_quantizer.algorithms.uniform_quantize import hadamard_rotation
  from ai_edge_quantizer.algorithms.uniform_quantize import naive_min_max_quantize
  op = qtyping.TFLOperationName
  name = algorithm_manager.AlgorithmName
  for algorithm, kind, materialize in (
      (name.MIN_MAX_UNIFORM_QUANT, op.FULLY_CONNECTED,
       functools.partial(common_quantize.materialize_fc_conv, tensor_quant_params)),
      (name.MIN_MAX_UNIFORM_QUANT, op.EMBEDDING_LOOKUP,
       functools.partial(common_quantize.materialize_embedding_lookup, tensor_quant_params)),
      (name.DECOMPOSED_HADAMARD_ROTATION, op.FULLY_CONNECTED,
       functools.partial(_hadamard_gptq, hadamard_rotation.materialize_fully_connected_decomposed)),
      (name.DECOMPOSED_HADAMARD_ROTATION, op.EMBEDDING_LOOKUP,
       functools.partial(_hadamard_gptq, hadamard_rotation.materialize_embedding_lookup_decomposed)),
  ):
    algorithm_manager.register_quantized_op(
        algorithm, kind, naive_min_max_quantize.init_qsvs,
        calibration_func=naive_min_max_quantize.min_max_calibrate, materialize_func=materialize)
