# The step-by-step memory measurement of docs/speed.md ("Where TinyLlama's memory goes"), as run
# on 2026-12-04: python steps.py MODEL.tflite. Since then the runner makes each KV cache set when
# a signature first runs on it, so "buffers made" no longer includes the caches.
import collections, resource, sys
import numpy as np
def rss(tag):
  cat = collections.Counter(); cur = None
  for line in open('/proc/self/smaps'):
    parts = line.split()
    if '-' in parts[0] and ':' not in parts[0]:
      name = parts[5] if len(parts) > 5 else '[anon]'
      if name.endswith('.tflite'): name = 'tflite'
      elif name.endswith('.xnnpack'): name = 'xnn'
      elif '.so' in name: name = 'libs'
      elif name.startswith('/'): name = 'files'
      cur = name
    elif parts[0] == 'Rss:':
      cat[cur] += int(parts[1])
  print(f"{tag:28s}", {k: v // 1024 for k, v in cat.most_common(5)}, 'total', sum(cat.values())//1024, flush=True)
rss('start')
import ai_edge_litert.compiled_model, numpy
from litezoo.runtime import runner as rt
rss('imports')
orig = rt._CompiledBackend._make_buffers
def mb(self):
  rss('compiled, no buffers')
  orig(self)
  rss('buffers made')
rt._CompiledBackend._make_buffers = mb
r = rt.Runner(sys.argv[1])
b = r._backend
for name in sorted(b.signatures, key=lambda n: ('prefill' in n, n)):
  shape = b.model.get_input_tensor_details(name)['tokens']['shape']
  T = int(shape[-1])
  b.run(name, np.zeros(shape, np.int32), np.arange(T, dtype=np.int32), 1)
  rss('ran ' + name)
