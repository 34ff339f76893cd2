"""Phi-2: its published size (the conformance suite checks the rest)."""

from litezoo.plugins.phi2 import phi2
from litezoo.tests import testing


def test_2_7b_has_the_published_parameter_count():
  testing.check_parameter_count(phi2.SPEC, "2.7b")
