"""Model card checks: each test pins the exact finding a pusher would see."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from fixtures.cards import embedding_card
from huggingface_hub.repocard import REGEX_YAML_BLOCK

from gitea_hf_hook.checks.scanners import Finding, model_card
from gitea_hf_hook.checks.scanners.model_card import check_model_card
from gitea_hf_hook.config.schema import parse_threshold

ACCURACY = {"accuracy": (">=", 0.9)}
NO_FRONT_MATTER = Finding(
    "model card has no YAML front matter",
    "start README.md with a --- block holding at least the required keys, e.g. license",
)
NOT_TEXT = Finding("model card is not UTF-8 text", "the model card must be a Markdown file with YAML front matter")
NO_ACCURACY = Finding(
    "model-index reports no 'accuracy' result",
    "add a metric with type or name 'accuracy' to model-index, the release requires accuracy >= 0.9",
    3,
)
SHAPE_HINT = ("the Hub then shows none of its results; use the layout "
              "model-index: [{name, results: [{task, dataset, metrics: [{type, value}]}]}]")
NOT_NUMBER_HINT = 'write the value as a number, e.g. "value: 0.93" or "value: 0.93 ± 0.01"'
TOO_LARGE = Finding(
    "model card front matter is larger than 1024 KiB",
    "keep only metadata in the front matter and move long text into the Markdown body",
    1,
)


def check(
    text: str | bytes,
    *,
    required: tuple[str, ...] = (),
    licenses: tuple[str, ...] = (),
    metrics: dict[str, tuple[str, float]] | None = None,
) -> list[Finding]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return check_model_card(data, required=required, licenses=licenses, metrics=metrics or {})


def result(dataset: str, value: str, metric: str = "accuracy") -> str:
    return (
        "  - task: {type: text-classification}\n"
        f"    dataset: {{type: {dataset.lower()}, name: {dataset}}}\n"
        "    metrics:\n"
        f"    - type: {metric}\n"
        f"      value: {value}\n"
    )


def card_with_results(*results: str) -> str:
    head = "---\nlicense: apache-2.0\nmodel-index:\n- name: my-model\n  results:\n"
    return head + "".join(results) + "---\n# Model\n"


VALID = card_with_results(result("IMDB", "0.93"), result("SST2", "0.91"))


# --- parse_threshold ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [(">= 0.9", (">=", 0.9)), ("> 0.5", (">", 0.5)), ("<= 12", ("<=", 12.0)), ("< 1e-3", ("<", 0.001)),
     ("== 1", ("==", 1.0)), (">=0.9", (">=", 0.9)), ("  < -.5 ", ("<", -0.5))],
)
def test_parse_threshold(text: str, expected: tuple[str, float]) -> None:
    assert parse_threshold(text) == expected


@pytest.mark.parametrize("text", ["0.9", ">= ", "=> 0.9", "!= 1", ">= nan", ">= inf", ">= 0.9 or so", "", "≥ 0.9"])
def test_parse_threshold_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r'expected an operator \(>=, >, <=, <, ==\) and a number, like ">= 0\.9"'):
        parse_threshold(text)


def test_parse_threshold_rejects_overflow() -> None:
    with pytest.raises(ValueError, match="the number must be finite"):
        parse_threshold(">= 1e999")


# --- front matter ---------------------------------------------------------------------------------------------


def test_valid_card_has_no_findings() -> None:
    assert check(VALID, required=("license", "model-index"), licenses=("apache-2.0", "mit"), metrics=ACCURACY) == []


def test_front_matter_layout_is_the_hubs() -> None:
    # Our check must find the same block the Hub reads; a huggingface_hub upgrade changing it should fail here.
    assert model_card._FRONT_MATTER.pattern == REGEX_YAML_BLOCK.pattern


def test_no_front_matter() -> None:
    assert check("# Model\n\nlicense: mit\n", required=("license",)) == [NO_FRONT_MATTER]


def test_unclosed_front_matter() -> None:
    assert check("---\nlicense: mit\n# Model\n") == [NO_FRONT_MATTER]


def test_leading_blank_lines_and_bom_are_accepted_like_the_hub() -> None:
    data = b"\xef\xbb\xbf\n\n---\ntags: []\n---\n"
    assert check(data, required=("license", "tags")) == [
        Finding("model card lacks required key 'license'", 'add "license: <id>" to the front matter'),
        Finding("model card lacks required key 'tags'", 'add "tags: <value>" to the front matter', 4),
    ]


def test_crlf_front_matter() -> None:
    data = b"---\r\nlicense: gpl-3.0\r\ntags:\r\n---\r\n# Model\r\n"
    assert check(data, required=("license", "tags"), licenses=("mit",)) == [
        Finding("model card lacks required key 'tags'", 'add "tags: <value>" to the front matter', 3),
        Finding("license 'gpl-3.0' is not allowed", "allowed: mit", 2),
    ]


LINE_ENDINGS = Finding(
    "model card front matter depends on how its line breaks are read",
    "the Hub's card readers find different metadata in it; save README.md with LF line endings",
)


def test_cr_only_line_endings_are_refused_where_the_hubs_readers_disagree() -> None:
    # Read with universal newlines the license is mit; read as it is, the block never closes ("---\r" + "#").
    assert check(b"---\rlicense: mit\r---\r# Model\r", licenses=("mit",)) == [LINE_ENDINGS._replace(line=1)]
    assert check(b"---\nlicense: mit\ntags: [a]\n---\r# Model\n") == [LINE_ENDINGS._replace(line=4)]


def test_crlf_delimiters_with_nothing_between_them() -> None:
    # As it is, "---\r" opens and "\n---\r\n" closes an empty block; with LF line endings there is no block.
    assert check(b"---\r\n---\r\n# Model\r\n") == [LINE_ENDINGS]


def test_cr_only_line_endings_are_read_where_the_hubs_readers_agree() -> None:
    assert check(b"---\rlicense: gpl-3.0\r---", licenses=("mit",)) == [
        Finding("license 'gpl-3.0' is not allowed", "allowed: mit", 2)
    ]
    assert check(b"---\nlicense: mit\n---\n# Model\rold line\r", licenses=("mit",)) == []


@pytest.mark.parametrize("closing", [b"---   \n", b"--- \t\r\n", b"---"])
def test_closing_delimiter_with_trailing_blanks_or_at_the_end(closing: bytes) -> None:
    assert check(b"---\nlicense: gpl-3.0\n" + closing, licenses=("mit",)) == [
        Finding("license 'gpl-3.0' is not allowed", "allowed: mit", 2)
    ]


def test_a_dashes_line_inside_a_block_scalar_ends_the_front_matter() -> None:
    # As on the Hub: the first "---" line closes the block, wherever YAML would have it.
    text = "---\nlicense: mit\ndescription: |\n  first\n---\n  second\n---\n"
    assert check(text, required=("description",)) == []


def test_binary_readme() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    assert check(png, required=("license",)) == [NOT_TEXT]


def test_utf16_readme() -> None:
    data = "---\nlicense: mit\n---\n# Model\n".encode("utf-16")
    assert check(data, required=("license",)) == [NOT_TEXT]


def test_latin1_readme() -> None:
    assert check("---\nlicense: mit\nauthor: Jos\xe9\n---\n".encode("latin-1")) == [NOT_TEXT]


def test_front_matter_not_a_mapping() -> None:
    assert check("---\n- license\n- mit\n---\n") == [
        Finding("model card front matter is not a mapping", "write the front matter as key: value lines", 1)
    ]


def test_front_matter_too_large() -> None:
    text = "---\nlicense: mit\ndescription: " + "x" * (1024 * 1024) + "\n---\n"
    assert check(text) == [TOO_LARGE]
    # Counted in bytes: 350,000 three-byte characters are over the budget too.
    assert check("---\nlicense: mit\ndescription: " + "\u6a21" * 350_000 + "\n---\n") == [TOO_LARGE]


def test_ten_megabytes_of_front_matter_is_refused_quickly() -> None:
    started = time.perf_counter()
    assert check(b"---\nlicense: mit\ndescription: " + b"x" * 10_000_000 + b"\n---\n") == [TOO_LARGE]
    assert time.perf_counter() - started < 1.0


def test_an_embedding_models_card_with_500_kb_of_results_is_read_and_gated() -> None:
    # Such cards carry hundreds of benchmark results, each with several metrics: over 50,000 YAML nodes.
    # bench/model_card.py measures how long it takes.
    data = embedding_card(500_000, seed=5)
    assert check(data, licenses=("mit",), metrics={"main_score": (">", 1.0)}) == []
    failing = check(data, licenses=("mit",), metrics={"main_score": (">", 99.5)})
    assert failing and all(f.problem.startswith("main_score ") and "does not meet > 99.5" in f.problem
                           for f in failing[:-1])


def test_a_large_card_gets_the_same_yaml_verdict_as_a_small_one() -> None:
    # Blocks over 64 KiB go through libyaml's tokeniser, which accepts a tab PyYAML (the Hub's reader) refuses.
    padding = "".join(f"note{i}: {'x' * 60}\n" for i in range(1200))
    for broken, problem, line in [("license: mit\t\n", "found character that cannot start any token", 2),
                                  ("license: [mit\n", "expected ',' or ']', but got ':'", 3),
                                  ("license: |-#\n  mit\n", "expected chomping or indentation indicators, but found '#'", 2)]:
        small = check("---\n" + broken + "tags: [a]\n---\n")
        large = check("---\n" + broken + padding + "---\n")
        assert small == large == [Finding(f"model card front matter is not valid YAML: {problem}", YAML_HINT, line)]


# --- YAML errors and hostile YAML -----------------------------------------------------------------------------


YAML_HINT = "fix the YAML syntax of the front matter at this line"
EXPANDS = "model card front matter's aliases expand it beyond"


@pytest.mark.parametrize(
    ("text", "problem", "line"),
    [
        ("\n---\nlicense: mit\ntags:\n  - a\n  oops: value\n---\n", "expected <block end>, but found '?'", 6),
        ("---\r\nlicense: mit\r\n\r\nfoo: : bar\r\n---\r\n", "mapping values are not allowed here", 4),
        ("---\nlicense: [mit\n---\n", "expected ',' or ']', but got '<stream end>'", 2),
        ("---\nlicense: mit\n\tkey: v\n---\n", "found character that cannot start any token", 3),
    ],
)
def test_yaml_syntax_error_names_the_readme_line(text: str, problem: str, line: int) -> None:
    assert check(text) == [Finding(f"model card front matter is not valid YAML: {problem}", YAML_HINT, line)]


def test_yaml_error_does_not_echo_content() -> None:
    findings = check("---\nlicense: *Hunter2Password\n---\n")
    assert findings == [
        Finding(
            "model card front matter is not valid YAML: found undefined alias",
            "fix the YAML syntax of the front matter at this line",
            2,
        )
    ]


def test_unsafe_tags_are_refused() -> None:
    assert check("---\nlicense: !!python/object/apply:os.system [id]\n---\n") == [
        Finding(
            "model card front matter is not valid YAML: could not determine a constructor for the tag",
            "fix the YAML syntax of the front matter at this line",
            2,
        )
    ]


def test_control_character_in_front_matter() -> None:
    assert check("---\nlicense: mit\nname: a\x1bb\n---\n") == [
        Finding(
            "model card front matter contains a character YAML does not allow",
            "remove control characters from the front matter",
            3,
        )
    ]


def test_unloadable_value() -> None:
    assert check("---\nlicense: mit\nreleased: 2024-02-30\n---\n") == [
        Finding(
            "model card front matter has a value YAML cannot load",
            "check dates and very long numbers in the front matter",
            1,
        )
    ]


BUDGET_HINT = "simplify the front matter: no deep nesting or repeated alias expansion"


def test_a_large_card_may_have_many_more_nodes_than_a_small_one() -> None:
    # Over 10,000 nodes without any alias: the budget grows with the block, so only aliases can exceed it.
    assert check(embedding_card(100_000), licenses=("mit",)) == []


def test_an_alias_bomb_in_a_large_card_is_refused_quickly() -> None:
    lines = ["---", "a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]
    padding = "".join(f"note{i}: {'x' * 60}\n" for i in range(2000))  # about 150 KB of plain metadata
    data = ("\n".join(lines) + "\n" + padding + "---\n").encode()
    block = REGEX_YAML_BLOCK.search(data.decode())
    assert block is not None
    started = time.perf_counter()
    findings = check(data)
    assert findings == [Finding(f"{EXPANDS} {2 * len(block[2])} nodes and characters", BUDGET_HINT)]
    assert time.perf_counter() - started < 1.0


def test_billion_laughs_is_rejected_quickly() -> None:
    lines = ["---", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]  # 10**10 leaves
    data = ("\n".join(lines) + "\n---\n").encode()
    tracemalloc.start()
    started = time.perf_counter()
    findings = check(data, required=("license",))
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert findings == [Finding(f"{EXPANDS} 10000 nodes and characters", BUDGET_HINT)]
    assert elapsed < 1.0
    assert peak < 20 * 1024 * 1024


def test_merge_key_bomb_is_rejected() -> None:
    lines = ["---", "m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    lines += [f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 8) + "]}" for i in range(1, 9)]
    assert check("\n".join(lines) + "\n---\n") == [
        Finding(f"{EXPANDS} 10000 nodes and characters", BUDGET_HINT)
    ]


def test_a_long_string_repeated_by_aliases_counts_by_its_length() -> None:
    # Each reported metric's type and name is read once per gated metric: 100 KB, aliased 100 x 100 times,
    # would be read a gigabyte's worth. The alias budget weighs a scalar by its length, so this stops at once.
    metrics = "".join("  - {type: *t, name: *t, value: 0.1}\n" for _ in range(100))
    results = "".join("  - {task: {type: t}, dataset: {type: d, name: n}, metrics: *m}\n" for _ in range(100))
    text = (f"---\nlicense: mit\nt: &t ' {'x' * 100_000} '\nms: &m\n{metrics}rs: &r\n{results}"
            "model-index:\n- {name: x, results: *r}\n---\n")
    block = REGEX_YAML_BLOCK.search(text)
    assert block is not None
    assert check(text, metrics={"accuracy": (">=", 0.5)}) == [
        Finding(f"{EXPANDS} {2 * len(block[2])} nodes and characters", BUDGET_HINT)]


def test_a_number_too_long_to_build_is_refused_before_it_is_built() -> None:
    # YAML 1.1's base 60 builds "1:0:0:..." in quadratic time, and Python cannot print its digits.
    assert check("---\nlicense: mit\nmodel-index:\n- name: m\n  results: []\nx: 1" + ":0" * 24_000 + "\n---\n") == [
        Finding("model card front matter holds a number longer than 1000 characters",
                "write long numbers as quoted strings", 6)]


@pytest.mark.parametrize("line", ["license: !!bool mit", "x: !!timestamp now", "x: !!int", "x: !!int _",
                                  "x: !!float ''", "x: !!int +"])
def test_a_tag_whose_value_cannot_be_built_is_refused_plainly(line: str) -> None:
    assert check(f"---\nlicense: mit\n{line}\n---\n") == [Finding(
        "model card front matter has a value YAML cannot load", "check dates and very long numbers in the front matter",
        1)]


def test_self_referencing_alias_is_rejected() -> None:
    assert check("---\nlicense: mit\nloop: &loop [*loop]\n---\n") == [
        Finding("model card front matter nests deeper than 64 levels", BUDGET_HINT, 3)
    ]


def test_deep_nesting_is_rejected_without_recursion_error() -> None:
    assert check("---\nlicense: mit\ndeep: " + "[" * 20000 + "\n---\n") == [
        Finding("model card front matter nests deeper than 64 levels", BUDGET_HINT, 3)
    ]


# --- required keys and licenses -------------------------------------------------------------------------------


def test_missing_required_key() -> None:
    assert check("---\ntags: [nlp]\n---\n", required=("license", "tags")) == [
        Finding("model card lacks required key 'license'", 'add "license: <id>" to the front matter')
    ]


@pytest.mark.parametrize("value", ["", " ''", " '  '", " []", " {}", " null"])
def test_empty_required_key(value: str) -> None:
    assert check(f"---\ntags: [nlp]\nlicense:{value}\n---\n", required=("license",)) == [
        Finding("model card lacks required key 'license'", 'add "license: <id>" to the front matter', 3)
    ]


def test_disallowed_license() -> None:
    assert check("---\ntags: [nlp]\nlicense: gpl-3.0\n---\n", licenses=("apache-2.0", "mit")) == [
        Finding("license 'gpl-3.0' is not allowed", "allowed: apache-2.0, mit", 3)
    ]


def test_license_comparison_ignores_case() -> None:
    assert check("---\nlicense: MIT\n---\n", licenses=("apache-2.0", "mit")) == []


def test_license_list_every_entry_must_be_allowed() -> None:
    text = "---\nlicense:\n  - mit\n  - cc-by-nc-4.0\n  - apache-2.0\n---\n"
    assert check(text, licenses=("apache-2.0", "mit")) == [
        Finding("license 'cc-by-nc-4.0' is not allowed", "allowed: apache-2.0, mit", 4)
    ]
    assert check("---\nlicense: [mit, apache-2.0]\n---\n", licenses=("apache-2.0", "mit")) == []


def test_license_of_wrong_type() -> None:
    assert check("---\nlicense: {id: mit}\n---\n", licenses=("mit",)) == [
        Finding("license must be a license id or a list of license ids", "allowed: mit", 2)
    ]


def test_license_allow_list_implies_license_is_required() -> None:
    assert check("---\ntags: [nlp]\n---\n", licenses=("mit",)) == [
        Finding("model card lacks required key 'license'", 'add "license: <id>" to the front matter')
    ]


def test_hostile_license_value_is_escaped_and_capped() -> None:
    findings = check('---\nlicense: "evil\\n\\u001b[31mfake: ok ' + "x" * 500 + '"\n---\n', licenses=("mit",))
    shown = "evil\\n\\x1b[31mfake: ok " + "x" * 57 + "..."
    assert findings == [Finding(f"license '{shown}' is not allowed", "allowed: mit", 2)]


# --- metrics --------------------------------------------------------------------------------------------------


def test_metric_met() -> None:
    assert check(VALID, metrics={"accuracy": (">=", 0.9)}) == []
    assert check(card_with_results(result("WSJ", "0.0004", "wer")), metrics={"wer": ("<", 1e-3)}) == []


def test_metric_not_met() -> None:
    assert check(card_with_results(result("IMDB", "0.85")), metrics=ACCURACY) == [
        Finding(
            "accuracy 0.85 on IMDB does not meet >= 0.9",
            "the release requires accuracy >= 0.9 on every reported dataset",
            10,
        )
    ]


def test_every_reported_dataset_must_meet_the_threshold() -> None:
    text = card_with_results(result("IMDB", "0.95"), result("SST2", "0.7"), result("Yelp", "0.91"))
    assert check(text, metrics=ACCURACY) == [
        Finding(
            "accuracy 0.7 on SST2 does not meet >= 0.9",
            "the release requires accuracy >= 0.9 on every reported dataset",
            15,
        )
    ]


def test_metric_missing() -> None:
    assert check(card_with_results(result("IMDB", "0.93", "f1")), metrics=ACCURACY) == [
        NO_ACCURACY
    ]


def test_metric_missing_without_model_index() -> None:
    assert check("---\nlicense: mit\n---\n", metrics={"wer": ("<", 1e-3)}) == [
        Finding("model-index reports no 'wer' result",
                "add a metric with type or name 'wer' to model-index, the release requires wer < 0.001"),
    ]


def test_metric_matched_by_display_name() -> None:
    named = result("IMDB", "0.93", "custom-acc").replace("      value", "      name: Accuracy\n      value")
    text = card_with_results(named)
    assert check(text, metrics=ACCURACY) == []


def test_metric_named_acc_by_type_is_gated_by_its_display_name() -> None:
    # Leaderboard cards write "type: acc, name: accuracy"; the Hub shows it as accuracy, so the gate applies.
    named = result("MMLU", "0.64", "acc").replace("      value", "      name: accuracy\n      value")
    assert check(card_with_results(named), metrics=ACCURACY) == [
        Finding("accuracy 0.64 on MMLU does not meet >= 0.9",
                "the release requires accuracy >= 0.9 on every reported dataset", 11)
    ]


def test_a_bare_acc_type_is_not_taken_for_accuracy() -> None:
    assert check(card_with_results(result("MMLU", "0.95", "acc")), metrics=ACCURACY) == [NO_ACCURACY]


@pytest.mark.parametrize(
    ("value", "problem"),
    [("high", "accuracy value 'high' on IMDB is not a number"),
     ("'0.93 (std 0.01)'", "accuracy value '0.93 (std 0.01)' on IMDB is not a number"),
     ("true", "accuracy value true on IMDB is not a number"),
     (".nan", "accuracy value .nan on IMDB is not a number"),
     (".inf", "accuracy value .inf on IMDB is not a number"),
     ("2024-01-01", "accuracy value 2024-01-01 on IMDB is not a number"),
     ("null", "accuracy value on IMDB is empty"),
     ("", "accuracy value on IMDB is empty"),
     ("[0.9, 0.8]", "accuracy value on IMDB is a list, not a number"),
     ("{mean: 0.95}", "accuracy value on IMDB is a mapping, not a number")],
)
def test_metric_not_a_number(value: str, problem: str) -> None:
    # No gate is passed on a value we could not read, and the pusher sees which one it was.
    assert check(card_with_results(result("IMDB", value)), metrics=ACCURACY) == [Finding(problem, NOT_NUMBER_HINT, 10)]


@pytest.mark.parametrize("value", ["'93%'", "93 %", "'0.93%'"])
def test_a_percentage_is_not_read_as_a_number(value: str) -> None:
    # "93%" could be 0.93 or 93 in the threshold's unit: only the pusher knows which, so it is not guessed.
    assert check(card_with_results(result("IMDB", value)), metrics=ACCURACY) == [
        Finding(f"accuracy value '{value.strip(chr(39))}' on IMDB is not a number",
                "write the number alone, in the unit of the threshold: the release requires accuracy >= 0.9", 10)
    ]


def test_a_hostile_value_is_escaped_and_shortened() -> None:
    findings = check(card_with_results(result("IMDB", '"\\e[31m ok' + "x" * 200 + '"')), metrics=ACCURACY)
    assert findings == [Finding("accuracy value '\\x1b[31m ok" + "x" * 69 + "...' on IMDB is not a number",
                                NOT_NUMBER_HINT, 10)]


@pytest.mark.parametrize("value", ["'0.93'", "9.3e-1", "93e-2", "1", "0.93 ± 0.01", "0.93 +/- 0.01", "'0.93+-0.01'"])
def test_numbers_written_as_strings_or_with_a_spread_count(value: str) -> None:
    # PyYAML reads 93e-2 (no dot, YAML 1.1) as a string where the Hub's YAML 1.2 reads a number; with a spread
    # the estimate before it is the reported value.
    assert check(card_with_results(result("IMDB", value)), metrics=ACCURACY) == []


def test_a_huge_base_60_value_is_shown_short() -> None:
    # YAML 1.1 reads 59:59:... as base 60: 300 groups are a number of 534 digits.
    value = ":".join(["59"] * 300)
    assert check(card_with_results(result("IMDB", value)), metrics={"accuracy": ("<=", 0.9)}) == [
        Finding("accuracy 2.78853e+533 on IMDB does not meet <= 0.9",
                "the release requires accuracy <= 0.9 on every reported dataset", 10)
    ]
    assert check(card_with_results(result("IMDB", ":".join(["59"] * 2600)))) == [
        Finding("model card front matter holds a number longer than 1000 characters",
                "write long numbers as quoted strings", 10)]


def test_a_value_with_a_spread_is_gated_on_its_estimate() -> None:
    assert check(card_with_results(result("ARC", "65.80 +/- 13.11")), metrics={"accuracy": (">=", 70.0)}) == [
        Finding("accuracy '65.80 +/- 13.11' on ARC does not meet >= 70",
                "the release requires accuracy >= 70 on every reported dataset", 10)
    ]


def test_model_index_not_a_list() -> None:
    assert check("---\nlicense: mit\nmodel-index: {accuracy: 0.99}\n---\n", metrics=ACCURACY) == [
        Finding("model-index is malformed: expected a list of models", SHAPE_HINT, 3),
    ]


def test_one_unreadable_result_hides_every_result_on_the_hub() -> None:
    # huggingface_hub drops the whole model-index on one result without a dataset: a passing value elsewhere is
    # not shown, so it cannot pass the gate either.
    lost = "  - task: {type: text-classification}\n    metrics:\n    - {type: accuracy, value: 0.5}\n"
    assert check(card_with_results(result("IMDB", "0.95"), lost), metrics=ACCURACY) == [
        Finding("model-index is malformed: a result has no dataset type and name", SHAPE_HINT, 11),
    ]


@pytest.mark.parametrize(
    ("source", "problem"),
    [("{name: Leaderboard}", "the result on IMDB names a source but no url"),
     ("https://example.org/board", "the result on IMDB has a source that is not a mapping")],
)
def test_a_result_source_the_hub_cannot_read(source: str, problem: str) -> None:
    text = card_with_results(result("IMDB", "0.95") + f"    source: {source}\n")
    assert check(text, metrics=ACCURACY) == [Finding(f"model-index is malformed: {problem}", SHAPE_HINT, 6)]


def test_results_need_the_last_model_named() -> None:
    text = VALID.replace("- name: my-model\n", "- name:\n")
    assert check(text, metrics=ACCURACY) == [Finding("model-index is malformed: a model entry has no name", SHAPE_HINT, 4)]


def test_every_model_of_the_index_is_gated() -> None:
    text = card_with_results(result("IMDB", "0.95")).replace("---\n# Model", "- name: distilled\n  results:\n"
                                                            + result("IMDB", "0.85") + "---\n# Model")
    assert check(text, metrics=ACCURACY) == [
        Finding("accuracy 0.85 on IMDB does not meet >= 0.9",
                "the release requires accuracy >= 0.9 on every reported dataset", 17)
    ]


@pytest.mark.parametrize("model_index", ["[]", "null", "{}", "''"])
def test_an_empty_model_index_reports_nothing(model_index: str) -> None:
    assert check(f"---\nlicense: mit\nmodel-index: {model_index}\n---\n", metrics=ACCURACY) == [NO_ACCURACY]


def test_model_index_nested_shapes() -> None:
    text = (
        "---\n"
        "model-index:\n"
        "- just-a-string\n"  # 3
        "- name: no-results\n"  # 4
        "- name: m\n"  # 5
        "  results:\n"
        "  - 42\n"  # 7
        "  - dataset: {name: IMDB}\n"  # 8
        "    metrics: oops\n"
        "  - task: {type: t}\n"  # 10
        "    dataset: {type: d, name: D}\n"
        "    metrics:\n"
        "    - accuracy\n"  # 13
        "    - {type: accuracy, value: 0.95}\n"
        "---\n"
    )
    assert check(text, metrics=ACCURACY) == [
        Finding("model-index is malformed: a model entry is not a mapping", SHAPE_HINT, 3),
        Finding("model-index is malformed: a model entry has no results list", SHAPE_HINT, 4),
        Finding("model-index is malformed: a result is not a mapping", SHAPE_HINT, 7),
        Finding("model-index is malformed: a result has no task type", SHAPE_HINT, 8),
        Finding("model-index is malformed: a result has no dataset type and name", SHAPE_HINT, 8),
        Finding("model-index is malformed: the result on IMDB has no metrics list", SHAPE_HINT, 8),
        Finding("model-index is malformed: a metric on D is not a mapping", SHAPE_HINT, 13),
    ]


@pytest.mark.parametrize(
    "model_index",
    ["null", "7", "[[]]", "[{results: null}]", "[{results: [{metrics: [{type: [accuracy]}]}]}]",
     "[{results: [{dataset: [x], metrics: [{type: accuracy, value: {a: 1}}]}]}]", "[{results: [[[]]]}]"],
)
def test_malformed_model_index_never_raises(model_index: str) -> None:
    findings = check(f"---\nmodel-index: {model_index}\n---\n", metrics=ACCURACY)
    assert findings and all(isinstance(f, Finding) for f in findings)


def test_metric_findings_are_capped() -> None:
    text = card_with_results(*[result(f"D{i}", "0.1") for i in range(30)])
    findings = check(text, metrics=ACCURACY)
    assert len(findings) == 21
    assert findings[0] == Finding(
        "accuracy 0.1 on D0 does not meet >= 0.9", "the release requires accuracy >= 0.9 on every reported dataset", 10
    )
    assert findings[-1] == Finding("10 more model card problems not listed", "fix the ones above first")


def test_every_threshold_is_checked_when_several_fail() -> None:
    card = card_with_results(result("IMDB", "0.5"), result("IMDB", "0.4", "f1"))
    findings = check(card, metrics={"accuracy": (">=", 0.9), "f1": (">=", 0.8)})
    assert [f.problem for f in findings] == ["accuracy 0.5 on IMDB does not meet >= 0.9",
                                             "f1 0.4 on IMDB does not meet >= 0.8"]
