"""Hypothesis settings for the keys tests, applied per test (not as a global profile, which
would change other packages' tests in the same session).

Modest example counts: the machine is shared and the whole keys suite stays well under
20 seconds. No deadline: timing on a shared machine is not what these tests are about.
"""

from hypothesis import HealthCheck, settings

keys_settings = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
