"""Tenant ids, keys and collection names (DESIGN §3): plain unit tests."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memory_pipeline.tenancy import (
    MAX_ID_LENGTH,
    Tenant,
    collection_name,
    tenant_from_partition_key,
    tenant_key,
    tenant_partition_key,
    validate_tenant_id,
)

#: Any valid user or project id (DESIGN §2): 1-255 characters, no control characters.
tenant_ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=MAX_ID_LENGTH
)
#: Ids made of the characters the partition-key rule treats specially, to find their corners.
tricky_ids = st.text(alphabet=st.sampled_from("a/%,. \u200b\u2028é2F"), min_size=1, max_size=12)


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


def test_partition_key_is_the_readable_user_and_project():
    assert tenant_partition_key("alice", "proj one") == "alice/proj one"
    assert Tenant("alice@example.com", "proj:1").partition_key == "alice@example.com/proj:1"


@pytest.mark.parametrize(
    ("user", "project", "key"),
    [
        ("a/b", "c", "a%2Fb/c"),  # the separator inside an id
        ("a", "b,c", "a/b%2Cc"),  # the UI's list separator
        ("100%", "p", "100%25/p"),  # the escape character itself
        ("a%2Fb", "c", "a%252Fb/c"),  # so an encoded-looking id stays itself
        ("wait...", "p", "wait..%2E/p"),  # Dagster refuses '...' in partition keys
        (" x ", "p", "%20x%20/p"),  # edge spaces would be trimmed from a list
        ("zero\u200bwidth", "p", "zero%E2%80%8Bwidth/p"),  # invisible characters made visible
    ],
)
def test_partition_key_percent_encodes_only_what_it_must(user, project, key):
    assert tenant_partition_key(user, project) == key
    assert tenant_from_partition_key(key) == Tenant(user, project)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("alice", "expected user_id/project_id"),
        ("a/b/c", "expected user_id/project_id"),
        ("a/", "must not be empty"),
        ("al%69ce/p", "this tenant's key is 'alice/p'"),  # one key per tenant
        ("a%FF/p", "not a tenant partition key"),  # not UTF-8
        ("a%0A/p", "control character"),
    ],
)
def test_a_key_that_is_not_a_tenants_partition_key_is_refused_clearly(key, message):
    with pytest.raises(ValueError, match=message):
        tenant_from_partition_key(key)


@given(tenant_ids, tenant_ids)
def test_partition_key_round_trips_every_valid_tenant(user, project):
    key = tenant_partition_key(user, project)
    tenant = tenant_from_partition_key(key)
    assert (tenant.user_id, tenant.project_id) == (user, project)


@given(st.one_of(tricky_ids, tenant_ids), st.one_of(tricky_ids, tenant_ids))
def test_partition_key_is_one_readable_dagster_key(user, project):
    key = tenant_partition_key(user, project)
    assert key.count("/") == 1
    assert "..." not in key and "," not in key  # what Dagster or its UI would misread
    assert key.isprintable()
    assert not key.startswith(" ") and not key.endswith(" ")
    assert tenant_from_partition_key(key) == Tenant(user, project)


@given(st.text(max_size=30))
def test_any_text_is_either_a_tenants_own_key_or_refused(text):
    try:
        tenant = tenant_from_partition_key(text)
    except ValueError:
        return
    assert tenant.partition_key == text
