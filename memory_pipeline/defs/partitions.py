"""Tenant partitions: one dynamic partition per tenant key (DESIGN §3)."""

from dagster import DynamicPartitionsDefinition

TENANT_PARTITIONS_NAME = "tenants"

tenant_partitions = DynamicPartitionsDefinition(name=TENANT_PARTITIONS_NAME)
