"""Tenant ids, keys and collection names (DESIGN §3): plain unit tests."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memory_pipeline.tenancy import Tenant, collection_name, tenant_key, validate_tenant_id


def test_tenant_key_matches_the_seed_for_plain_ids():
    seed_key = hashlib.sha256(b"alice:proj-1").hexdigest()[:16]
    assert tenant_key("alice", "proj-1") == seed_key


def test_ids_with_colons_are_two_different_tenants():
    assert tenant_key("a:b", "c") != tenant_key("a", "b:c")


def test_percent_is_encoded_so_encoded_lookalikes_differ():
    assert tenant_key("a%3Ab", "c") != tenant_key("a:b", "c")


def test_collection_name_is_prefix_and_key():
    assert collection_name("0123456789abcdef") == "memory_logs_0123456789abcdef"
    assert Tenant("u", "p").collection_name == f"memory_logs_{tenant_key('u', 'p')}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        ("x" * 256, "limit is 255"),
        ("bad\x00id", "control character"),
        ("new\nline", "control character"),
        (42, "must be a string"),
    ],
)
def test_invalid_tenant_ids_are_rejected_with_a_clear_message(value, message):
    with pytest.raises(ValueError, match=message):
        validate_tenant_id(value, "user_id")


def test_longest_valid_id_is_accepted():
    assert validate_tenant_id("é" * 255, "project_id") == "é" * 255


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_tenant_key_is_16_hex_characters(user, project):
    key = tenant_key(user, project)
    assert len(key) == 16
    int(key, 16)
