"""The user-tag rules file (docs/CONTRACT.md §8, docs/TAGS.md): a TOML file of
``[[tag]]`` tables, parsed into :class:`~dwh_core.tags.TagRule` values and validated
with errors that name the line.

The format::

    [[tag]]
    id = "pizza_lover"          # 1-63 of a-z, 0-9 and _, starting with a letter
    name = "Любитель пиццы"     # the display name sent with every event
    category = "Пицца"          # exactly one of: category = "...", product = "..."
    at_least = 10               # counted orders, 1 to 1_000_000
    within_days = 30            # optional: only orders of the last N days (1 to 3650)

Why the care with lines: the file is edited by hand and a rule change backfills tags
for every user, so a mistake must be caught before anything runs, all of them at once
(:class:`RulesError` lists every problem of the file), each pointing at the line to
fix. tomllib gives values, not positions, so the lines are found by scanning the text:
the i-th ``[[tag]]`` header, and a key's first ``key =`` line inside that tag's block.

Names are checked against a catalogue separately (:func:`check_names`), since the
parser has no catalogue: they compare as the warehouse keys do (trimmed and
upper-cased, the rule of :func:`dwh_core.hashing.hash_key`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from attrs import frozen

from dwh_core.tags import TARGETS, TagRule, Target

TAG_KEY = "tag"
ALLOWED_KEYS = ("id", "name", "category", "product", "at_least", "within_days")
ID_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}")
MAX_TEXT_LENGTH = 200
MAX_AT_LEAST = 1_000_000
MAX_WITHIN_DAYS = 3650

_SYNTAX_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_SYNTAX_AT_END = re.compile(r"\s*\(at end of document\)\s*$")
_TAG_HEADER = re.compile(r"^\s*\[\[\s*(?:tag|\"tag\"|'tag')\s*\]\]")
# Any table header, [a] or [[a.b]]; commas and '=' excluded so that the continuation
# lines of a multi-line array ("  [1, 2],") are not taken for one.
_TABLE_HEADER = re.compile(r"^\s*\[\[?\s*[^\s=,\[\]][^=,\[\]]*\]\]?\s*(?:#.*)?$")


# --- Results and errors --------------------------------------------------------------


@frozen
class RuleProblem:
    """One thing wrong in a rules file: the line to fix (1-based; 0 when the problem is
    the file as a whole) and what to do about it."""

    line: int
    message: str


class RulesError(ValueError):
    """A rules file that cannot be used: every problem found in it, sorted by line.

    ``str()`` gives one ``<source>:<line>: <message>`` line per problem, the form
    editors and CI logs turn into links.
    """

    def __init__(self, source: str, problems: Sequence[RuleProblem]) -> None:
        ordered = tuple(sorted(problems, key=lambda problem: problem.line))
        super().__init__(source, ordered)
        self.source = source
        self.problems: tuple[RuleProblem, ...] = ordered

    def __str__(self) -> str:
        return "\n".join(f"{self.source}:{p.line}: {p.message}" for p in self.problems)


@frozen
class TagLines:
    """Where a tag stands in its file: the line of its ``[[tag]]`` header and, for each
    of its keys, the line that sets it."""

    header: int
    keys: tuple[tuple[str, int], ...] = ()

    def line(self, key: str | None = None) -> int:
        """The line of ``key`` in this tag; the header line for ``None`` or a key the
        scan did not find."""
        for name, line in self.keys:
            if name == key:
                return line
        return self.header


@frozen
class RuleFile:
    """The valid rules of a file, in file order, with where each one was written (so
    that later checks, such as :func:`check_names`, can name lines too)."""

    rules: tuple[TagRule, ...] = ()
    source: str = "<rules>"
    tag_lines: tuple[TagLines, ...] = ()
    text: str = ""
    """The file as read (recorded with the rules when they are put in force)."""

    def line_of(self, tag_index: int, key: str | None = None) -> int:
        """The line of the ``tag_index``-th rule's header, or of its ``key`` (``"id"``,
        ``"category"``, ...); 0 for rules built in code rather than parsed."""
        index = range(len(self.rules))[tag_index]  # IndexError: no such rule
        if index >= len(self.tag_lines):
            return 0
        return self.tag_lines[index].line(key)


# --- Finding lines in the text -------------------------------------------------------


def _key_pattern(key: str) -> re.Pattern[str]:
    """A line that sets ``key`` (bare or quoted; ``key.sub =`` counts too)."""
    quoted = "|".join(re.escape(form) for form in (key, f'"{key}"', f"'{key}'"))
    return re.compile(rf"^\s*(?:{quoted})\s*[=.]")


class _Scanner:
    """Lines of the source text, numbered as tomllib numbers them (by ``\\n``)."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.tag_headers = [n for n, line in self._numbered() if _TAG_HEADER.match(line)]
        self.table_headers = [n for n, line in self._numbered() if _TABLE_HEADER.match(line)]

    def _numbered(self) -> list[tuple[int, str]]:
        return list(enumerate(self.lines, start=1))

    def _first(self, pattern: re.Pattern[str], start: int, end: int) -> int | None:
        """The first line number in ``[start, end)`` matching ``pattern``."""
        for number in range(max(start, 1), min(end, len(self.lines) + 1)):
            if pattern.match(self.lines[number - 1]):
                return number
        return None

    def top_level_line(self, key: str) -> int:
        """Where a top-level ``key`` is set: ``key = ...`` before the first table, else a
        ``[key]``/``[[key]]``/``[key.sub]`` header; line 1 if neither is found."""
        first_table = self.table_headers[0] if self.table_headers else len(self.lines) + 1
        found = self._first(_key_pattern(key), 1, first_table)
        if found is None:
            quoted = "|".join(re.escape(form) for form in (key, f'"{key}"', f"'{key}'"))
            header = re.compile(rf"^\s*\[\[?\s*(?:{quoted})\s*[\].]")
            found = self._first(header, 1, len(self.lines) + 1)
        return found or 1

    def tag_lines(self, index: int, keys: Collection[str]) -> TagLines:
        """The lines of the ``index``-th tag and of its ``keys``: each key's first line
        within the tag's block (its header up to the next table header)."""
        if index >= len(self.tag_headers):  # tags written inline: tag = [{...}]
            return TagLines(self.top_level_line(TAG_KEY))
        header = self.tag_headers[index]
        end = next((n for n in self.table_headers if n > header), len(self.lines) + 1)
        found = ((key, self._first(_key_pattern(key), header + 1, end)) for key in keys)
        return TagLines(header, tuple((key, line) for key, line in found if line is not None))


# --- Describing values in messages ---------------------------------------------------


def _kind(value: object) -> str:
    """The TOML type of a value, with its article, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def _show(value: object, limit: int = 60) -> str:
    """A value as it would be written in TOML, shortened to ``limit`` characters."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _suggestion(word: str, options: Sequence[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest option, or nothing."""
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- Checking one tag ----------------------------------------------------------------


class _TagCheck:
    """The checks of one ``[[tag]]`` table; problems go to ``problems``, and
    :meth:`rule` gives the rule only when this tag has none."""

    def __init__(
        self,
        index: int,
        table: Mapping[str, Any],
        where: TagLines,
        seen: dict[str, int],
        problems: list[RuleProblem],
    ) -> None:
        self.table = table
        self.where = where
        self.seen = seen
        self.problems = problems
        self.label = f"tag #{index + 1}"
        self.found = 0

    def report(self, key: str | None, message: str) -> None:
        self.problems.append(RuleProblem(self.where.line(key), f"{self.label}: {message}"))
        self.found += 1

    def rule(self) -> TagRule | None:
        tag_id = self.check_id()
        self.check_keys()
        name = self.check_text("name", 'the name users see, e.g. name = "Любитель пиццы"')
        target = self.check_target()
        at_least = self.check_count("at_least", MAX_AT_LEAST, required=True)
        within_days = self.check_count("within_days", MAX_WITHIN_DAYS, required=False)
        if self.found or tag_id is None or name is None or target is None or at_least is None:
            return None
        return TagRule(tag_id, name, target[0], target[1], at_least, within_days)

    def check_id(self) -> str | None:
        """The tag's id if valid (and then the label names it), None otherwise."""
        value = self.table.get("id")
        if value is None:
            self.report(None, 'missing id; add one, e.g. id = "pizza_lover"')
            return None
        if not isinstance(value, str):
            self.report("id", f'id must be a string, e.g. "pizza_lover", not {_show(value)}')
            return None
        if not ID_PATTERN.fullmatch(value):
            self.report(
                "id",
                f"id {_show(value)} is not valid; use 1 to 63 lower-case Latin letters, "
                'digits and _, starting with a letter, e.g. "pizza_lover"',
            )
            return None
        self.label = f"tag {value!r}"
        if value in self.seen:
            first = self.seen[value]
            self.report("id", f"duplicate id, first used at line {first}; give each tag its own")
            return None
        self.seen[value] = self.where.line("id")
        return value

    def check_keys(self) -> None:
        allowed = ", ".join(ALLOWED_KEYS)
        for key in self.table:
            if key not in ALLOWED_KEYS:
                hint = _suggestion(key, ALLOWED_KEYS)
                self.report(key, f"unknown key {key!r}{hint}; the allowed keys are {allowed}")

    def check_text(self, key: str, missing_hint: str, required: bool = True) -> str | None:
        """A non-empty string of at most 200 characters, trimmed; None if absent or bad."""
        if key not in self.table:
            if required:
                self.report(None, f"missing {key}; add {missing_hint}")
            return None
        value = self.table[key]
        if not isinstance(value, str):
            self.report(key, f"{key} must be a string, not {_show(value)} ({_kind(value)})")
            return None
        text = value.strip()
        if not text:
            self.report(key, f"{key} must not be empty")
            return None
        if len(text) > MAX_TEXT_LENGTH:
            self.report(
                key,
                f"{key} is {len(text)} characters long; shorten it to {MAX_TEXT_LENGTH} at most",
            )
            return None
        return text

    def check_target(self) -> tuple[Target, str] | None:
        """Exactly one of ``category`` and ``product``, as (target, name)."""
        given = [target for target in TARGETS if target in self.table]
        if not given:
            self.report(
                None,
                'missing target; add category = "..." (a menu category) '
                'or product = "..." (a dish name)',
            )
            return None
        if len(given) == 2:
            later = max(given, key=self.where.line)
            self.report(later, "both category and product given; keep exactly one of them")
            return None
        target = given[0]
        name = self.check_text(target, "")
        return None if name is None else (target, name)

    def check_count(self, key: str, upper: int, required: bool) -> int | None:
        """A whole number from 1 to ``upper`` (booleans, floats and strings rejected)."""
        if key not in self.table:
            if required:
                self.report(None, f"missing {key}; add {key} = N, the counted orders it needs")
            return None
        value = self.table[key]
        if type(value) is int and 1 <= value <= upper:
            return value
        kind = "" if type(value) is int else f" ({_kind(value)})"
        hint = "; write it without quotes" if isinstance(value, str) else ""
        self.report(
            key, f"{key} must be a whole number from 1 to {upper}, not {_show(value)}{kind}{hint}"
        )
        return None


# --- The file ------------------------------------------------------------------------


def _syntax_problem(error: tomllib.TOMLDecodeError, scanner: _Scanner) -> RuleProblem:
    """tomllib's message, its "(at line N, column M)" turned into the problem's line."""
    message = str(error)
    position = _SYNTAX_POSITION.search(message)
    if position is not None:
        line, column = int(position[1]), int(position[2])
        return RuleProblem(line, f"invalid TOML: {message[: position.start()]} (column {column})")
    at_end = _SYNTAX_AT_END.search(message)
    text = message[: at_end.start()] if at_end else message
    return RuleProblem(len(scanner.lines), f"invalid TOML: {text} (at the end of the file)")


def _tag_tables(
    document: Mapping[str, Any], scanner: _Scanner, problems: list[RuleProblem]
) -> list[tuple[int, Mapping[str, Any]]]:
    """The ``[[tag]]`` tables with their index; problems for anything else at the top."""
    for key in document:
        if key != TAG_KEY:
            problems.append(
                RuleProblem(
                    scanner.top_level_line(key),
                    f"unknown top-level key {key!r}{_suggestion(key, [TAG_KEY])}; "
                    "the file holds only [[tag]] tables",
                )
            )
    tags = document.get(TAG_KEY, [])
    if not isinstance(tags, list):
        problems.append(
            RuleProblem(
                scanner.top_level_line(TAG_KEY),
                f"tag must be an array of tables, not {_kind(tags)}; "
                "start each rule with a [[tag]] header (two brackets)",
            )
        )
        return []
    tables: list[tuple[int, Mapping[str, Any]]] = [
        (index, table) for index, table in enumerate(tags) if isinstance(table, dict)
    ]
    if len(tables) < len(tags):
        problems.append(
            RuleProblem(
                scanner.top_level_line(TAG_KEY),
                "every tag must be a table; start each rule with a [[tag]] header",
            )
        )
    return tables


def parse_rules(text: str, source: str = "<rules>") -> RuleFile:
    """The rules of a rules file's ``text``; ``source`` names it in the messages.

    Raises :class:`RulesError` with every problem of the file (a TOML syntax error
    stops the parse, so it comes alone).
    """
    scanner = _Scanner(text)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RulesError(source, [_syntax_problem(error, scanner)]) from None
    problems: list[RuleProblem] = []
    seen: dict[str, int] = {}
    rules: list[TagRule] = []
    lines: list[TagLines] = []
    for index, table in _tag_tables(document, scanner, problems):
        where = scanner.tag_lines(index, table.keys())
        rule = _TagCheck(index, table, where, seen, problems).rule()
        if rule is not None:
            rules.append(rule)
            lines.append(where)
    if problems:
        raise RulesError(source, problems)
    return RuleFile(tuple(rules), source, tuple(lines), text)


def load_rules(path: str | os.PathLike[str]) -> RuleFile:
    """The rules of the file at ``path`` (UTF-8; a byte-order mark is allowed); the
    path, as given, is the source in the messages. A file that cannot be read is a
    :class:`RulesError` at line 0."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise RulesError(source, [RuleProblem(0, "no such rules file")]) from None
    except OSError as error:
        message = f"cannot read the rules file: {error.strerror or error}"
        raise RulesError(source, [RuleProblem(0, message)]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        message = f"not UTF-8 (byte {error.start}); save the file as UTF-8"
        raise RulesError(source, [RuleProblem(line, message)]) from None
    return parse_rules(text, source)


# --- Names against a catalogue -------------------------------------------------------


def _name_key(name: object) -> str:
    """How the warehouse compares names: trimmed and upper-cased (as ``hash_key``)."""
    return str(name).strip().upper()


def _by_key(names: Collection[str]) -> dict[str, str]:
    """Known names by their comparison key (the first spelling, in sorted order)."""
    by_key: dict[str, str] = {}
    for name in sorted(names, key=str):
        by_key.setdefault(_name_key(name), name)
    return by_key


def check_names(
    rule_file: RuleFile, categories: Collection[str], products: Collection[str]
) -> list[RuleProblem]:
    """The rules whose category or product is not among the known names (compared as
    the warehouse keys compare), each at the line of its name, with up to three close
    known names as suggestions."""
    known = {"category": _by_key(categories), "product": _by_key(products)}
    problems = []
    for index, rule in enumerate(rule_file.rules):
        names = known[rule.target]
        key = _name_key(rule.target_name)
        if key in names:
            continue
        close = difflib.get_close_matches(key, list(names), n=3)
        hint = f"; did you mean {', '.join(repr(names[c]) for c in close)}?" if close else ""
        message = (
            f"tag {rule.tag_id!r}: unknown {rule.target} {rule.target_name!r}{hint}"
            f" (names compare trimmed and case-insensitive)"
        )
        problems.append(RuleProblem(rule_file.line_of(index, rule.target), message))
    return problems
