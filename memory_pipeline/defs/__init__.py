"""The thin Dagster layer: partitions, assets, sensors, schedules, checks and resources."""
