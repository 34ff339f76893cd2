"""Gemma 2B: its published size (the conformance suite checks the rest)."""

from litezoo.plugins.gemma import gemma
from litezoo.tests import testing


def test_2b_has_the_published_parameter_count():
  testing.check_parameter_count(gemma.SPEC, "2b")
