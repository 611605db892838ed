"""The hash rule is a contract with every other service: these literals never change."""

from __future__ import annotations

import uuid

from dwh_core.hashing import hash_key, hashdiff


def test_a_user_id_hashes_to_its_known_key() -> None:
    # md5("626A81CE9A8CD1920641E29C")
    assert hash_key("626a81ce9a8cd1920641e29c") == uuid.UUID("9b5a0410-adc5-2088-b167-c32516d0d2e5")


def test_a_cyrillic_category_name_hashes_to_its_known_key() -> None:
    # md5("ПИЦЦА") over its UTF-8 bytes
    assert hash_key("Пицца") == uuid.UUID("04049b85-fe89-a200-7530-960dc6303a3f")


def test_business_keys_are_trimmed_and_upper_cased() -> None:
    assert hash_key("  пицца ") == hash_key("ПИЦЦА") == hash_key("Пицца")
    assert hash_key("626A81CE9A8CD1920641E29C") == hash_key("626a81ce9a8cd1920641e29c")


def test_composite_keys_join_their_parts_with_double_bar() -> None:
    # md5("1371198||AECA4D08ABAB78869C20128C")
    assert hash_key(1371198, "aeca4d08abab78869c20128c") == uuid.UUID(
        "43ca23c0-1ca9-142b-4d73-c8f602611715"
    )
    assert hash_key("a", "b") != hash_key("b", "a")
    assert hash_key("a", "bc") != hash_key("ab", "c")


def test_hashdiff_keeps_case_and_turns_none_into_empty() -> None:
    # md5("875||875") and md5("Котова Ольга||kotova")
    assert hashdiff(875, 875) == uuid.UUID("a6bf04c6-215b-fe92-50e8-1f0a54155704")
    assert hashdiff("Котова Ольга", "kotova") == uuid.UUID("6c74e185-1896-76bc-a420-193b3270efad")
    assert hashdiff("Пицца") != hashdiff("ПИЦЦА")
    assert hashdiff(None, "x") == hashdiff("", "x")
