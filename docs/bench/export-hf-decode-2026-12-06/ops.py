"""The ops of one signature of a LiteRT file, in order, with their input and output shapes.

    python docs/bench/export-hf-decode-2026-12-06/ops.py FILE.tflite decode [N]

Prints the signatures, the first inputs, a count of each op type, and the first N ops (60).
FILE may also be the .tflite cut from a .litertlm: its bytes from 4 before the first "TFL3".
Reads the flatbuffer with tensorflow's own schema (tensorflow-cpu is in the venv).
"""
import collections
import sys

from litezoo.artifacts import files
from litezoo.core.errors import ZooError

if len(sys.argv) not in (3, 4) or (len(sys.argv) == 4 and not sys.argv[3].isdigit()):
  sys.exit("ops.py: error: give FILE.tflite SIGNATURE [N ops to list]")
try:
  files.check_tflite(sys.argv[1])  # a clear refusal, before the schema parses it
except ZooError as e:
  sys.exit(f"ops.py: error: {e}")
from tensorflow.lite.python import schema_py_generated as schema  # pylint: disable=g-import-not-at-top

model = schema.ModelT.InitFromPackedBuf(open(sys.argv[1], "rb").read(), 0)
names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}
keys = [s.signatureKey.decode() for s in model.signatureDefs]
if sys.argv[2] not in keys:
  sys.exit(f"ops.py: error: no signature {sys.argv[2]!r}; the file has {', '.join(keys)}")
signature = model.signatureDefs[keys.index(sys.argv[2])]
graph = model.subgraphs[signature.subgraphIndex]
shape = lambda i: [int(d) for d in graph.tensors[i].shape] if i >= 0 else None
print("signatures:", keys)
print("inputs:", [(i.name.decode(), shape(i.tensorIndex)) for i in signature.inputs][:6])
ops = []
for op in graph.operators:
  code = model.operatorCodes[op.opcodeIndex]
  name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
  ops.append((name, [shape(i) for i in op.inputs], [shape(i) for i in op.outputs]))
print("ops:", len(ops), collections.Counter(o[0] for o in ops).most_common())
for name, inputs, outputs in ops[:int(sys.argv[3]) if len(sys.argv) == 4 else 60]:
  print(name, inputs, "->", outputs)
