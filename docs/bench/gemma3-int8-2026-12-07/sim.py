"""Where an int8 loss comes from: fake quantization of transformers' model of the real weights.

Each linear layer (the LM head among them) gets int8 weights and int8 activations at one of two
granularities: per output channel / per token (XNNPACK's qd8-f32-qc8w: symmetric weights,
asymmetric activations, what the zoo's dynamic_int8 runs) or blocks of N along the input
(llama.cpp's Q8_0 dot product, N = 32, quantizes the activations to Q8_0 as well). `rotations`
adds Hadamard rotations: a rotated layer's input and weight are multiplied by block-diagonal
32x32 Hadamard matrices along the input (the zoo's `:hadamard`); there the LM head is untied from
the table so it can be rotated alone, and the table is int8 per row in every quantized case (the
zoo's one shared buffer). Perplexity, top-1 agreement and KL against float on the evaluation
text, windows of 256, as tools/evaluate scores them. Round to nearest, no GPTQ.

  python sim.py gemma3 2048 layouts     # sim-layouts.txt
  python sim.py gemma3 2048 rotations   # sim-rotations.txt
"""
import pathlib
import sys

import numpy as np
import torch

from litezoo import pipeline
from litezoo.core.registry import default_registry
from litezoo.sources import weights as weights_lib
from litezoo.tools.evaluation import perplexity

if (len(sys.argv) != 4 or not sys.argv[2].isdigit() or int(sys.argv[2]) < 256
    or sys.argv[3] not in ("layouts", "rotations")):
  sys.exit(f"usage: {sys.argv[0]} MODEL MAX_TOKENS layouts|rotations (a registered model with "
           "real weights; at least 256 tokens, one window)")
MODEL, MAX_TOKENS, CASES = sys.argv[1], int(sys.argv[2]), sys.argv[3]
TEXT = pathlib.Path(__file__).resolve().parents[3] / "quant/data/alice_in_wonderland.txt"
torch.set_num_threads(2)

try:
  spec = default_registry().get(MODEL)
except LookupError as e:  # an unknown model: the registry's one line
  sys.exit(str(e))
w = weights_lib.resolve(spec, spec.default_variant, log=print)
tok = pipeline.tokenizer(w, print)
hf_model, _ = pipeline.original_and_ours(spec, spec.default_variant, w, 384, print)
hf_model.eval()

tokens = tok.encode(TEXT.read_text())
prefix = []
if tok.bos_id is not None and tokens[:1] == [tok.bos_id]:
  prefix, tokens = tokens[:1], tokens[1:]
chunks = perplexity.windows(tokens[:MAX_TOKENS], 256, prefix)

embed = hf_model.get_input_embeddings()
if CASES == "rotations":
  # Untied, so the LM head's input can be rotated apart from the lookup; the table is int8 per
  # row in every quantized case, as the zoo's one shared buffer is. (Tied, the table takes the
  # LM head's layout.)
  hf_model.lm_head.weight = torch.nn.Parameter(hf_model.lm_head.weight.detach().clone())
embed_float = embed.weight.detach().clone()
linears = {n: m for n, m in hf_model.named_modules() if isinstance(m, torch.nn.Linear)}
originals = {n: m.weight.detach().clone() for n, m in linears.items()}


def q_channel(wt):  # symmetric int8 per output row
  s = wt.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
  return (wt / s).round().clamp(-127, 127) * s


def q_block(x, block=32):  # symmetric int8 per block along the last dim (Q8_0: of 32)
  shape = x.shape
  xb = x.reshape(*shape[:-1], shape[-1] // block, block)
  s = xb.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / 127
  return ((xb / s).round().clamp(-127, 127) * s).reshape(shape)


def a_token(x):  # asymmetric int8 per token (XNNPACK's dynamic quantization of a row)
  lo = x.amin(dim=-1, keepdim=True).clamp(max=0)
  hi = x.amax(dim=-1, keepdim=True).clamp(min=0)
  s = ((hi - lo) / 255).clamp_min(1e-12)
  zp = (-128 - lo / s).round()
  return ((x / s).round() + zp).clamp(-128, 127).sub(zp) * s


H = torch.tensor([[1.0]])
while H.shape[0] < 32:
  H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
H = H / H.shape[0] ** 0.5  # Sylvester, orthonormal and symmetric


def rotate(x):  # x . blockdiag(H) along the last dim
  shape = x.shape
  return (x.reshape(*shape[:-1], shape[-1] // 32, 32) @ H).reshape(shape)


ROT = set()  # names of linears whose input is rotated


def configure(weight_mode, act_mode, only=None):
  """weight_mode / act_mode: None (float), 'channel' / 'token', or 'block<N>' ('block': 32), or
  a function of the layer's name giving one; `only`: which layers to quantize (others float);
  the layers named in ROT get their input rotated."""
  hooks = []
  for n, m in linears.items():
    m.weight.data.copy_(originals[n])
    if only is not None and not only(n):
      continue
    wm, am = (weight_mode(n), act_mode(n)) if callable(weight_mode) else (weight_mode, act_mode)
    rot = n in ROT
    w0 = rotate(originals[n]) if rot else originals[n]
    if wm == "channel":
      m.weight.data.copy_(q_channel(w0))
    elif wm and wm.startswith("block"):
      m.weight.data.copy_(q_block(w0, int(wm[5:] or 32)))
    else:
      m.weight.data.copy_(w0)
    if am or rot:
      fn = ({None: lambda x: x, "token": a_token}.get(am)
            or (lambda x, g=int(am[5:] or 32): q_block(x, g)))
      pre = (lambda x, fn=fn: fn(rotate(x))) if rot else fn
      hooks.append(m.register_forward_pre_hook(lambda mod, args, pre=pre: (pre(args[0]),)))
  return hooks


def run(name, weight_mode, act_mode, only=None, reference=None):
  hooks = configure(weight_mode, act_mode, only)
  if CASES == "rotations":
    embed.weight.data.copy_(embed_float if reference is None else q_channel(embed_float))
  score, logps = perplexity.Score(), []
  with torch.no_grad():
    for i, chunk in enumerate(chunks):
      logits = hf_model(torch.tensor([chunk])).logits[0].float().numpy()
      logp = perplexity.log_softmax(logits)[:-1]
      score.add(logp, np.array(chunk[1:]), None if reference is None else reference[i])
      logps.append(logp)
  for h in hooks:
    h.remove()
  ROT.clear()
  print(f"{name:60s} ppl {score.perplexity:8.3f}" + ("" if reference is None else
        f"  vs float {100 * (score.perplexity / base.perplexity - 1):+6.2f}%  top-1 "
        f"{100 * score.top1_agreement:5.2f}%  KL {score.mean_kl:.4f}"), flush=True)
  return score, logps


base, ref = run("float", None, None)
names = list(linears)
isbody = lambda n: n != "lm_head"
body = [n for n in names if isbody(n)]
if CASES == "layouts":
  cases = [
      ("int8 weights per channel (weight-only)", [], "channel", None, None),
      ("int8 per channel + activations per token (XNNPACK qd8)", [], "channel", "token", None),
      ("int8 blocks of 32, weights and activations (Q8_0)", [], "block", "block", None),
      ("  qd8 on the LM head only", [], "channel", "token", lambda n: not isbody(n)),
      ("  qd8 on the body only (LM head float)", [], "channel", "token", isbody),
      ("  weights per channel, activations in blocks of 32", [], "channel", "block", None),
      ("  weights in blocks of 32, activations per token", [], "block", "token", None),
  ]
else:
  either = lambda on_body, on_head: lambda n: on_body if isbody(n) else on_head
  cases = [
      ("H32 + qd8 everywhere (LM head rotated too)", names, "channel", "token", None),
      ("H32 + qd8 body, LM head qd8 unrotated", body, "channel", "token", None),
      ("H32 + qd8 body, LM head blocks of 32 (W and A)", body, either("channel", "block32"),
       either("token", "block32"), None),
      ("H32 + qd8 body, LM head blocks of 128 (W and A)", body, either("channel", "block128"),
       either("token", "block128"), None),
      ("H32 + qd8 body, LM head float", body, either("channel", None), either("token", None),
       None),
      ("groups of 128 (W and A), no rotation", [], "block128", "block128", None),
      ("H32 + groups of 128 (W and A)", names, "block128", "block128", None),
  ]
for label, rot, wm, am, only in cases:
  ROT.update(rot)
  run(label, wm, am, only, ref)
