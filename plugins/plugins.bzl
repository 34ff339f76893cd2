"""The in-tree plugins: //plugins:all depends on each (tools/new_plugin appends new ones)."""

ZOO_PLUGINS = [
    "gemma",
    "gemma3",
    "phi2",
    "smollm2",
    "tinyllama",
]
