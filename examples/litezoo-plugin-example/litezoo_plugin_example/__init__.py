"""An out-of-tree litezoo plugin; the model lives in `example_llama.py`."""
