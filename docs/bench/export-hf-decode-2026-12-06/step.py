"""Milliseconds per decode step of one signature, run straight in CompiledModel.

    python docs/bench/export-hf-decode-2026-12-06/step.py FILE.tflite decode POSITION [STEPS]

2 threads, XNNPACK weights packed in memory, every kv_cache_* buffer bound as both input and
output (in place, as the zoo's runner and LiteRT-LM bind them), 20 warm-up steps, then STEPS
(300) timed steps at input position POSITION. A `mask` input (export_hf's files) is filled to
attend to positions 0..POSITION. The token and the cache contents do not change the work.
"""
import os
import sys
import time

import numpy as np

from litezoo.artifacts import files
from litezoo.core.errors import ZooError

if len(sys.argv) not in (4, 5) or not all(a.isdigit() for a in sys.argv[3:]):
  sys.exit("step.py: error: give FILE.tflite SIGNATURE POSITION [STEPS]")
path, name, position = sys.argv[1], sys.argv[2], int(sys.argv[3])
steps = int(sys.argv[4]) if len(sys.argv) == 5 else 300
try:
  files.check_tflite(path)  # a clear refusal, before the runtime parses it
except ZooError as e:
  sys.exit(f"step.py: error: {e}")
from ai_edge_litert import compiled_model, environment, options  # pylint: disable=g-import-not-at-top

env = environment.Environment.create(options=environment.EnvironmentOptions(
    runtime_path=os.path.dirname(os.path.abspath(environment.__file__))))
model = compiled_model.CompiledModel.from_file(path, environment=env, options=options.Options(
    cpu_options=options.CpuOptions(num_threads=2, xnnpack_weight_cache_path=":memory")))
if name not in model.get_signature_list():
  sys.exit(f"step.py: error: no signature {name!r}; the file has "
           f"{', '.join(model.get_signature_list())}")
details = model.get_input_tensor_details(name)
caches = [n for n in details if n.startswith("kv_cache_")]
if not caches or "input_pos" not in details or "tokens" not in details:
  sys.exit(f"step.py: error: {name} is not a decode signature (inputs {sorted(details)})")
inputs = {n: model.create_input_buffer_by_name(name, n) for n in details}
outputs = {"logits": model.create_output_buffer_by_name(name, "logits")}
for n in caches:
  inputs[n].write(np.zeros(details[n]["shape"], np.float32))
  outputs[n] = inputs[n]
length = max(details[n]["shape"][2] for n in caches if n.startswith("kv_cache_k"))
if position >= length:
  sys.exit(f"step.py: error: POSITION {position} is past the {length}-entry cache")
inputs["tokens"].write(np.array([[5]], np.int32))
inputs["input_pos"].write(np.array([position], np.int32))
if "mask" in inputs:
  mask = np.full(details["mask"]["shape"], -1e9, np.float32)
  mask[..., :position + 1] = 0
  inputs["mask"].write(mask)
for _ in range(20):
  model.run_by_name(name, inputs, outputs)
start = time.perf_counter()
for _ in range(steps):
  model.run_by_name(name, inputs, outputs)
print(f"{os.path.basename(path)} {name} position {position}: "
      f"{(time.perf_counter() - start) / steps * 1e3:.2f} ms/step")
