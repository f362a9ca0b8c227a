"""Property values too large to be meant: clear errors naming the property, never OverflowError."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("data-expire.retention-time", "99999999999999999d"),
        ("snapshot.keep.duration", "99999999999999999d"),
        ("tag.auto-create.trigger.offset.minutes", "99999999999999"),
        ("tag.auto-create.trigger.max-delay.minutes", "99999999999999"),
        ("clean-orphan-file.min-existing-time-minutes", "99999999999999"),
        ("tag.auto-create.max-age-ms", "99999999999999999999"),
    ],
)
def test_huge_durations_are_clear_errors_not_overflow(prop: str, value: str) -> None:
    """Issue 14 point 9: a huge duration names the property and value instead of an OverflowError."""
    from airflow_provider_amoro.maintenance import InvalidPropertyError, MaintenanceConfig

    with pytest.raises(InvalidPropertyError, match="too long") as err:
        MaintenanceConfig.from_properties({prop: value})
    assert prop in str(err.value) and value in str(err.value)


@pytest.mark.parametrize(
    "prop",
    [
        "self-optimizing.minor.trigger.interval",
        "self-optimizing.full.trigger.interval",
        "self-optimizing.min-plan-interval",
    ],
)
def test_huge_optimizing_intervals_are_clear_errors(prop: str) -> None:
    from airflow_provider_amoro.optimizing.config import InvalidPropertyError, OptimizingConfig

    with pytest.raises(InvalidPropertyError, match="too long"):
        OptimizingConfig.from_properties({prop: "99999999999999999999"})
