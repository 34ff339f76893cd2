"""PyTorch eager: the transformers model of the shared checkpoint (float32), same threads."""

from litezoo.tools.bench import measure
from litezoo.tools.bench.target import Target, artifact_info


def run(target: Target) -> dict:
  args = {"checkpoint": str(target.checkpoint), "plan": target.plan.to_json(),
          "vocab": target.vocab(), "kv_cache_max_len": target.kv_cache_max_len}
  measured, error = measure.run_child("torch", args)
  if measured is None:
    raise RuntimeError(error)
  files = sorted(target.checkpoint.glob("*.safetensors"))
  size = sum(f.stat().st_size for f in files)
  return {"engine": "PyTorch eager (transformers, float32)",
          "artifact": {**artifact_info(files[0], "safetensors"), "size_bytes": size},
          "conversion": None, **measured}


def measure_child(args: dict) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  plan = measure.Plan.from_json(args["plan"])
  torch.set_num_threads(plan.threads)

  class Session:
    kv_cache_max_len = args["kv_cache_max_len"]

    def __init__(self):
      self.model = transformers.AutoModelForCausalLM.from_pretrained(
          args["checkpoint"], dtype=torch.float32).eval()
      self.reset()

    def reset(self):
      self.cache = transformers.DynamicCache()

    @torch.inference_mode()
    def prefill(self, tokens):
      out = self.model(torch.tensor([tokens]), past_key_values=self.cache, use_cache=True)
      return out.logits[0, -1].numpy()

    def decode(self, token):
      return self.prefill([token])

  return measure.measure_session(Session, plan, args["vocab"], "torch")
