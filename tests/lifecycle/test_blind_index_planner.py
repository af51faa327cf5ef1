"""The blind-index planner's arithmetic: the width it picks keeps 2 to sqrt(N) other
numbers per bucket, it leaves a width alone while that holds, and its estimate of a
tenant's numbers never exceeds the party values it counted."""

from __future__ import annotations

import math

import pytest

from gateway.lifecycle.blind_index import (
    estimate_numbers,
    in_range,
    others_per_bucket,
    planned_bits,
)


@pytest.mark.parametrize("numbers", [16, 17, 100, 1000, 4096, 65537, 10**6, 10**9])
def test_the_planned_width_keeps_two_to_sqrt_n_others_per_bucket(numbers):
    bits = planned_bits(numbers)
    assert 2 <= others_per_bucket(bits, numbers) < 4 <= math.sqrt(numbers)
    assert in_range(bits, numbers)
    # One bit wider would leave fewer than 2 others.
    assert others_per_bucket(bits + 1, numbers) < 2


def test_the_issue_figures():
    # 16 bits for 1,000 numbers: 98.5 % of them alone in their bucket, out of range.
    assert (1 - 2**-16) ** 999 > 0.98
    assert not in_range(16, 1000) and planned_bits(1000) == 8
    # 8 bits then holds until the bucket load passes sqrt(N), near 65,800 numbers.
    assert in_range(8, 65_000) and not in_range(8, 70_000)


def test_tiny_tenants_stay_at_one_bit():
    for numbers in range(0, 6):
        assert planned_bits(numbers) == 1 and in_range(1, numbers)


def test_the_estimate():
    # A wide index over a few repeated numbers: linear counting, not the party values.
    assert estimate_numbers(10_000, 1000, 16) in range(995, 1010)
    # A nearly full index: the party values (an upper bound) decide.
    assert estimate_numbers(42, 16, 4) == 42
    assert estimate_numbers(42, 9, 4) == 42
    # Never above the party values, never below the distinct indexes.
    assert estimate_numbers(5, 5, 32) == 5
