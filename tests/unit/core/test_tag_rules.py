"""The user-tag rules file (dwh_core.tag_rules): parsing, and every problem reported at
its line, all at once."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest

from dwh_core.tag_rules import (
    RuleFile,
    RuleProblem,
    RulesError,
    check_names,
    load_rules,
    parse_rules,
)
from dwh_core.tags import TagRule

VALID = """\
# two rules
[[tag]]
id = "pizza_lover"
name = "  Любитель пиццы "
category = "Пицца"
at_least = 10

[[tag]]
id = "coffee_30d"
name = "Кофеман"
product = "Капучино 0,3 л"
at_least = 4
within_days = 30
"""


def toml(text: str) -> str:
    """An indented triple-quoted text as a file: dedented, its first line is line 1."""
    return textwrap.dedent(text).removeprefix("\n")


def problems(text: str) -> list[tuple[int, str]]:
    """(line, message) of every problem parse_rules reports for ``text``."""
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "rules.toml")
    return [(problem.line, problem.message) for problem in caught.value.problems]


def only_problem(text: str) -> tuple[int, str]:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def tag(**keys: str) -> str:
    """A [[tag]] table on lines 1.. with valid defaults, each key overridable
    (``"-"`` leaves the key out): id line 2, name 3, category 4, at_least 5."""
    values = {
        "id": '"pizza_lover"',
        "name": '"Любитель пиццы"',
        "category": '"Пицца"',
        "at_least": "10",
    } | keys
    body = "".join(f"{key} = {value}\n" for key, value in values.items() if value != "-")
    return "[[tag]]\n" + body


# --- Valid files ---------------------------------------------------------------------


def test_a_valid_file_gives_its_rules_in_file_order_trimmed() -> None:
    rules = parse_rules(VALID, "rules.toml")

    assert rules.source == "rules.toml"
    assert rules.rules == (
        TagRule("pizza_lover", "Любитель пиццы", "category", "Пицца", 10),
        TagRule("coffee_30d", "Кофеман", "product", "Капучино 0,3 л", 4, 30),
    )


def test_the_rule_file_knows_the_line_of_each_tag_and_key() -> None:
    rules = parse_rules(VALID)

    assert rules.source == "<rules>"
    assert rules.line_of(0) == 2
    assert rules.line_of(0, "category") == 5
    assert rules.line_of(1) == 8
    assert rules.line_of(1, "id") == 9
    assert rules.line_of(1, "within_days") == 13
    assert rules.line_of(1, "category") == 8  # absent: the header line
    assert rules.line_of(-1, "id") == 9
    with pytest.raises(IndexError):
        rules.line_of(2)


def test_a_rule_file_built_in_code_has_no_lines() -> None:
    built = RuleFile((TagRule("a", "A", "category", "Пицца", 1),))
    assert built.line_of(0, "id") == 0


@pytest.mark.parametrize("text", ["", "\n", "# only comments\n\n# nothing else\n", "tag = []"])
def test_a_file_without_tags_has_no_rules(text: str) -> None:
    assert parse_rules(text).rules == ()


def test_the_bounds_are_allowed() -> None:
    text = tag(id='"a' + "b" * 62 + '"', name='"' + "я" * 200 + '"', at_least="1_000_000")
    rule = parse_rules(text + "within_days = 3650\n").rules[0]
    assert (len(rule.tag_id), len(rule.name), rule.at_least, rule.within_days) == (
        63,
        200,
        1_000_000,
        3650,
    )
    assert parse_rules(tag(at_least="1") + "within_days = 1\n").rules[0].within_days == 1


def test_whitespace_and_quotes_in_headers_and_keys_do_not_hide_lines() -> None:
    text = toml("""
        [[ tag ]]
        "id" = "a"
        name = "A"
        category = "Пицца"
        'at_least' = 0
    """)
    assert only_problem(text)[0] == 5


# --- TOML syntax ---------------------------------------------------------------------


def test_a_syntax_error_is_reported_at_its_line() -> None:
    line, message = only_problem(
        toml("""
        [[tag]]
        id = "pizza_lover"
        name = Любитель пиццы
    """)
    )
    assert line == 3
    assert message.startswith("invalid TOML: Invalid value")
    assert "(column 8)" in message


def test_a_syntax_error_at_the_end_of_the_file_is_at_its_last_line() -> None:
    line, message = only_problem('[[tag]]\nid = "a"\nname = "unterminated')
    assert line == 3
    assert "Unterminated string" in message


def test_a_key_set_twice_is_a_syntax_error_at_its_line() -> None:
    assert only_problem(tag() + 'id = "again"\n\n')[0] == 6


# --- Top-level keys ------------------------------------------------------------------


def test_an_unknown_top_level_key_is_reported_at_its_line() -> None:
    line, message = only_problem(
        toml("""
        # a comment
        version = 2
        [[tag]]
        id = "a"
        name = "A"
        category = "Пицца"
        at_least = 1
    """)
    )
    assert line == 2
    assert "unknown top-level key 'version'" in message
    assert "[[tag]]" in message


def test_an_unknown_table_is_reported_at_its_header() -> None:
    found = problems(tag() + "\n[[tags]]\nid = 'b'\n\n[settings]\nx = 1\n")
    assert found[0][0] == 7
    assert "'tags' (did you mean 'tag'?)" in found[0][1]
    assert found[1][0] == 10
    assert "'settings'" in found[1][1]


def test_a_single_tag_table_asks_for_two_brackets() -> None:
    line, message = only_problem('# c\n[tag]\nid = "a"\n')
    assert line == 2
    assert "[[tag]] header (two brackets)" in message


def test_tags_that_are_not_tables_are_reported() -> None:
    line, message = only_problem('\ntag = ["a", "b"]\n')
    assert line == 2
    assert "every tag must be a table" in message


# --- Keys inside a tag ---------------------------------------------------------------


def test_an_unknown_key_is_named_with_the_allowed_ones() -> None:
    line, message = only_problem(tag() + "treshold = 3\n")
    assert line == 6
    assert message.startswith("tag 'pizza_lover': unknown key 'treshold'")
    assert "id, name, category, product, at_least, within_days" in message


def test_an_unknown_key_close_to_an_allowed_one_gets_a_suggestion() -> None:
    _, message = only_problem(tag() + "within_day = 3\n")
    assert "(did you mean 'within_days'?)" in message


def test_a_sub_table_of_a_tag_is_an_unknown_key() -> None:
    line, message = only_problem(tag() + "\n[tag.extra]\nx = 1\n")
    assert "unknown key 'extra'" in message
    assert line == 1  # the scan looks for "extra =" in the tag's block: its header


@pytest.mark.parametrize(
    ("key", "what"),
    [("id", "missing id"), ("name", "missing name"), ("at_least", "missing at_least")],
)
def test_a_missing_key_is_reported_at_the_header(key: str, what: str) -> None:
    line, message = only_problem("# rules\n\n" + tag(**{key: "-"}))
    assert line == 3
    assert what in message


def test_a_missing_target_asks_for_a_category_or_a_product() -> None:
    line, message = only_problem(tag(category="-"))
    assert line == 1
    assert message.startswith("tag 'pizza_lover': missing target")
    assert 'category = "..."' in message
    assert 'product = "..."' in message


def test_both_category_and_product_are_reported_at_the_later_one() -> None:
    line, message = only_problem(tag() + 'product = "Пицца «Маргарита»"\n')
    assert line == 6
    assert "both category and product given; keep exactly one" in message


# --- The id --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ['"Pizza"', '"1pizza"', '"pizza-lover"', '""', '"a' + "b" * 63 + '"', '"пицца"']
)
def test_an_invalid_id_is_reported_at_its_line(value: str) -> None:
    line, message = only_problem(tag(id=value))
    assert line == 2
    assert message.startswith("tag #1: id ")
    assert "lower-case Latin letters, digits and _, starting with a letter" in message


def test_an_id_that_is_not_a_string_is_reported() -> None:
    line, message = only_problem("\n" + tag(id="7"))
    assert line == 3
    assert "id must be a string" in message


def test_a_duplicate_id_names_the_line_of_the_first() -> None:
    line, message = only_problem(tag() + "\n" + tag(name='"Снова"'))
    assert line == 8
    assert message == (
        "tag 'pizza_lover': duplicate id, first used at line 2; give each tag its own"
    )


# --- Name and target -----------------------------------------------------------------


@pytest.mark.parametrize("key", ["name", "category", "product"])
@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("5", "must be a string, not 5 (an integer)"),
        ("[]", "must be a string, not [] (an array)"),
        ('"   "', "must not be empty"),
        ('""', "must not be empty"),
        ('"' + "x" * 201 + '"', "is 201 characters long; shorten it to 200 at most"),
    ],
)
def test_a_bad_name_or_target_is_reported_at_its_line(key: str, value: str, what: str) -> None:
    keys = {key: value} if key != "product" else {"category": "-", "product": value}
    text = tag(**keys)
    line, message = only_problem(text)
    assert line == next(n for n, row in enumerate(text.split("\n"), 1) if row.startswith(key))
    assert message == f"tag 'pizza_lover': {key} {what}"


# --- Counts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("0", "not 0"),
        ("-3", "not -3"),
        ("1_000_001", "not 1000001"),
        ("2.5", "not 2.5 (a float)"),
        ("10.0", "not 10.0 (a float)"),
        ('"10"', 'not "10" (a string); write it without quotes'),
        ("true", "not true (a boolean)"),
    ],
)
def test_a_bad_at_least_is_reported_at_its_line(value: str, shown: str) -> None:
    line, message = only_problem(tag(at_least=value))
    assert line == 5
    assert (
        message == f"tag 'pizza_lover': at_least must be a whole number from 1 to 1000000, {shown}"
    )


@pytest.mark.parametrize("value", ["0", "-1", "3651", "7.0", "false", '"30"', "1979-05-27"])
def test_a_bad_within_days_is_reported_at_its_line(value: str) -> None:
    line, message = only_problem(tag() + f"within_days = {value}\n")
    assert line == 6
    assert message.startswith(
        "tag 'pizza_lover': within_days must be a whole number from 1 to 3650"
    )


def test_a_key_line_is_looked_for_in_its_own_tag_only() -> None:
    text = tag() + "\n" + tag(id='"second"', at_least="0")
    assert only_problem(text)[0] == 11


# --- Many problems -------------------------------------------------------------------


MANY = """\
title = "rules"
[[tag]]
id = "Pizza"
name = ""
category = "Пицца"
product = "Пицца «Маргарита»"
at_least = 0

[[tag]]
id = "coffee"
name = "Кофеман"
category = "Напитки"
at_least = 5
within_days = 0
color = "red"

[[tag]]
id = "coffee"
"""


def test_every_problem_of_the_file_is_reported_sorted_by_line() -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(MANY, "conf/tags.toml")
    error = caught.value

    assert isinstance(error, ValueError)
    assert error.source == "conf/tags.toml"
    assert [problem.line for problem in error.problems] == [1, 3, 4, 6, 7, 14, 15, 17, 17, 17, 18]
    assert str(error).splitlines() == [
        f"conf/tags.toml:{problem.line}: {problem.message}" for problem in error.problems
    ]
    text = str(error)
    assert "conf/tags.toml:1: unknown top-level key 'title'" in text
    assert 'conf/tags.toml:3: tag #1: id "Pizza" is not valid' in text
    assert "conf/tags.toml:4: tag #1: name must not be empty" in text
    assert "conf/tags.toml:6: tag #1: both category and product given" in text
    assert "conf/tags.toml:14: tag 'coffee': within_days must be" in text
    assert "conf/tags.toml:15: tag 'coffee': unknown key 'color'" in text
    assert "conf/tags.toml:18: tag 'coffee': duplicate id, first used at line 10" in text
    assert "conf/tags.toml:17: tag 'coffee': missing name" in text


def test_a_rules_error_survives_pickling() -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(MANY, "x.toml")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.source, copy.problems, str(copy)) == (
        "x.toml",
        caught.value.problems,
        str(caught.value),
    )


def test_a_rules_error_sorts_its_problems() -> None:
    error = RulesError("f", [RuleProblem(9, "b"), RuleProblem(2, "a"), RuleProblem(9, "c")])
    assert str(error) == "f:2: a\nf:9: b\nf:9: c"


# --- Names against a catalogue -------------------------------------------------------

CATEGORIES = ("Пицца", "Напитки", "Десерты")
PRODUCTS = ("Капучино 0,3 л", "Латте 0,4 л", "Пицца «Маргарита»")


def test_known_names_give_no_problems() -> None:
    assert check_names(parse_rules(VALID), CATEGORIES, PRODUCTS) == []


def test_names_compare_trimmed_and_case_insensitive() -> None:
    text = (
        tag(category='"  пИЦЦА "') + "\n" + tag(id='"b"', category="-", product='"капучино 0,3 Л"')
    )
    assert check_names(parse_rules(text), CATEGORIES, PRODUCTS) == []


def test_an_unknown_category_is_reported_with_suggestions() -> None:
    text = "# c\n" + tag(category='"Пица"')
    [problem] = check_names(parse_rules(text), CATEGORIES, PRODUCTS)
    assert problem.line == 5
    assert problem.message.startswith("tag 'pizza_lover': unknown category 'Пица'")
    assert "did you mean 'Пицца'?" in problem.message


def test_an_unknown_product_is_reported_with_up_to_three_suggestions() -> None:
    products = ("Латте 0,3 л", "Латте 0,4 л", "Латте 0,5 л", "Латте 0,2 л", "Чай")
    text = tag(category="-", product='"латте 0,35 л"')
    [problem] = check_names(parse_rules(text), CATEGORIES, products)
    assert problem.line == 5
    assert "unknown product 'латте 0,35 л'" in problem.message
    suggested = problem.message.split("did you mean ")[1]
    assert suggested.count("'Латте") == 3
    assert "Чай" not in suggested


def test_an_unknown_name_with_nothing_close_gets_no_suggestion() -> None:
    [problem] = check_names(parse_rules(tag(category='"Шашлык"')), CATEGORIES, PRODUCTS)
    assert "did you mean" not in problem.message
    assert "'Шашлык'" in problem.message


def test_a_category_is_not_looked_for_among_products() -> None:
    text = tag(category='"Латте 0,4 л"')
    assert len(check_names(parse_rules(text), CATEGORIES, PRODUCTS)) == 1


def test_check_names_can_be_raised_as_a_rules_error() -> None:
    rules = parse_rules(tag(category='"Суши"'), "r.toml")
    error = RulesError(rules.source, check_names(rules, CATEGORIES, PRODUCTS))
    assert str(error).startswith("r.toml:4: tag 'pizza_lover': unknown category 'Суши'")


# --- Files ---------------------------------------------------------------------------


def test_load_rules_reads_a_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(VALID, encoding="utf-8")
    rules = load_rules(path)
    assert rules.source == str(path)
    assert [rule.tag_id for rule in rules.rules] == ["pizza_lover", "coffee_30d"]
    assert load_rules(str(path)).rules == rules.rules


def test_load_rules_names_the_file_as_given(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(tag(at_least="0"), encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules(str(path))
    assert str(caught.value).startswith(f"{path}:5: tag 'pizza_lover': at_least")


def test_a_missing_file_is_an_error_at_line_zero(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert caught.value.problems == (RuleProblem(0, "no such rules file"),)
    assert str(caught.value) == f"{path}:0: no such rules file"


def test_a_file_that_is_not_utf8_is_an_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(tag().encode("utf-8") + "within_days = 3 # ÿ\n".encode("latin-1"))
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    [problem] = caught.value.problems
    assert problem.line == 6
    assert "UTF-8" in problem.message


def test_a_byte_order_mark_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(b"\xef\xbb\xbf" + tag().encode("utf-8"))
    assert len(load_rules(path).rules) == 1
