"""tools/benchmark's parts: one module per peer plus the shared measurement helpers."""
