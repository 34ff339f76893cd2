"""TinyLlama: its published size (the conformance suite checks the rest)."""

from litezoo.plugins.tinyllama import tinyllama
from litezoo.tests import testing


def test_1_1b_has_the_published_parameter_count():
  testing.check_parameter_count(tinyllama.SPEC, "1.1b")
