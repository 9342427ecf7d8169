"""The sealed-value format of personal data (ADR-0007)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from branchline_shared.crypto.sealing import (
    PREFIX,
    MasterKey,
    SealingError,
    is_sealed,
    key_id_of,
    new_data_key,
    seal,
    seal_paths,
    unseal,
    unseal_paths,
)

pytestmark = pytest.mark.unit
KEY = new_data_key()


@given(st.text(max_size=500))
def test_a_sealed_value_opens_to_itself(value: str) -> None:
    sealed = seal(value, KEY, client_id="C-1", path="fields", sub_key="name")
    assert sealed.startswith(PREFIX)
    assert key_id_of(sealed) == KEY.key_id
    assert unseal(sealed, KEY, client_id="C-1", path="fields", sub_key="name") == value


def test_the_same_value_seals_differently_each_time() -> None:
    assert seal("Wang Fang", KEY, client_id="C-1", path="p") != seal(
        "Wang Fang", KEY, client_id="C-1", path="p"
    )


@pytest.mark.parametrize(
    ("client_id", "path", "sub_key"),
    [("C-2", "fields", "name"), ("C-1", "note", "name"), ("C-1", "fields", "phone")],
    ids=["other-client", "other-field", "other-sub-field"],
)
def test_a_sealed_value_moved_elsewhere_does_not_open(
    client_id: str, path: str, sub_key: str
) -> None:
    sealed = seal("Wang Fang", KEY, client_id="C-1", path="fields", sub_key="name")
    with pytest.raises(SealingError):
        unseal(sealed, KEY, client_id=client_id, path=path, sub_key=sub_key)


def test_an_altered_value_or_another_key_does_not_open() -> None:
    sealed = seal("110101199003070021", KEY, client_id="C-1", path="fields")
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(SealingError):
        unseal(flipped, KEY, client_id="C-1", path="fields")
    other = new_data_key()
    with pytest.raises(SealingError):
        unseal(sealed, other, client_id="C-1", path="fields")


def test_paths_keep_field_names_and_seal_values() -> None:
    data = {"fields": {"name": "Wang Fang", "phone": "+86 138"}, "purpose": "service"}
    sealed = seal_paths(data, ("fields",), KEY, client_id="C-1")
    assert sealed["purpose"] == "service"
    assert set(sealed["fields"]) == {"name", "phone"}
    assert all(is_sealed(v) for v in sealed["fields"].values())
    assert unseal_paths(sealed, ("fields",), KEY, client_id="C-1") == data


def test_a_value_that_looks_sealed_is_never_taken_as_sealed() -> None:
    """Issue #9 finding 2: only Branchline seals; a caller's "sealed" value is refused."""
    sealed = seal_paths({"note": "clear"}, ("note",), KEY, client_id="C-1")
    with pytest.raises(SealingError, match="reserved prefix"):
        seal_paths(sealed, ("note",), KEY, client_id="C-1")
    with pytest.raises(SealingError):
        seal_paths({"note": " x " + sealed["note"]}, ("note",), KEY, client_id="C-1")


def test_lists_and_nested_paths_are_sealed_item_by_item() -> None:
    data = {
        "missing": ["passport", "payslip"],
        "compensation": {"kind": "money", "value": "10", "description": "for the delay"},
    }
    paths = ("missing", "compensation.description")
    sealed = seal_paths(data, paths, KEY, client_id="C-1")
    assert all(is_sealed(v) for v in sealed["missing"])
    assert sealed["compensation"]["kind"] == "money"
    assert sealed["compensation"]["value"] == "10"
    assert is_sealed(sealed["compensation"]["description"])
    assert unseal_paths(sealed, paths, KEY, client_id="C-1") == data
    # a sealed item cannot be moved to another place of the list and still open
    swapped = {**sealed, "missing": sealed["missing"][::-1]}
    with pytest.raises(SealingError):
        unseal_paths(swapped, paths, KEY, client_id="C-1")


def test_the_master_key_wraps_data_keys_bound_to_their_client() -> None:
    master = MasterKey(os.urandom(32))
    wrapped = master.wrap(KEY, "C-1")
    assert KEY.secret not in wrapped
    assert master.unwrap(wrapped, KEY.key_id, "C-1") == KEY
    with pytest.raises(SealingError):
        master.unwrap(wrapped, KEY.key_id, "C-2")
    with pytest.raises(SealingError):
        MasterKey(os.urandom(32)).unwrap(wrapped, KEY.key_id, "C-1")
    assert "secret" not in repr(KEY) or "hidden" in repr(KEY)
