"""Model card checks: each test pins the exact finding a pusher would see."""

from __future__ import annotations

import time
import tracemalloc

import pytest
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
    "model-index reports no 'accuracy' result", "add it to model-index results, the release requires accuracy >= 0.9", 3
)
SHAPE_HINT = "use the Hub layout: model-index: [{name, results: [{task, dataset, metrics: [{type, value}]}]}]"


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
    text = "---\nlicense: mit\ndescription: " + "x" * (64 * 1024) + "\n---\n"
    assert check(text) == [
        Finding(
            "model card front matter is larger than 64 KiB",
            "keep only metadata in the front matter and move long text into the Markdown body",
            1,
        )
    ]


# --- YAML errors and hostile YAML -----------------------------------------------------------------------------


YAML_HINT = "fix the YAML syntax of the front matter at this line"


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
    assert findings == [Finding("model card front matter expands beyond 10000 nodes", BUDGET_HINT)]
    assert elapsed < 1.0
    assert peak < 20 * 1024 * 1024


def test_merge_key_bomb_is_rejected() -> None:
    lines = ["---", "m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    lines += [f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 8) + "]}" for i in range(1, 9)]
    assert check("\n".join(lines) + "\n---\n") == [
        Finding("model card front matter expands beyond 10000 nodes", BUDGET_HINT)
    ]


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
        Finding("model-index reports no 'wer' result", "add it to model-index results, the release requires wer < 0.001"),
    ]


def test_metric_matched_by_display_name() -> None:
    named = result("IMDB", "0.93", "custom-acc").replace("      value", "      name: Accuracy\n      value")
    text = card_with_results(named)
    assert check(text, metrics=ACCURACY) == []


@pytest.mark.parametrize("value", ["high", "'93%'", "true", "null", ".nan", "[0.9]"])
def test_metric_not_a_number(value: str) -> None:
    assert check(card_with_results(result("IMDB", value)), metrics=ACCURACY) == [
        Finding("accuracy value on IMDB is not a number", 'write the value as a plain number, e.g. "value: 0.93"', 10)
    ]


@pytest.mark.parametrize("value", ["'0.93'", "9.3e-1", "1"])
def test_numeric_strings_count_as_numbers(value: str) -> None:
    # PyYAML reads 9.3e-1 (no dot in the mantissa, YAML 1.1) as a string; the Hub's YAML 1.2 reads a number.
    assert check(card_with_results(result("IMDB", value)), metrics=ACCURACY) == []


def test_model_index_not_a_list() -> None:
    assert check("---\nlicense: mit\nmodel-index: {accuracy: 0.99}\n---\n", metrics=ACCURACY) == [
        Finding("model-index is malformed: expected a list of models", SHAPE_HINT, 3),
        NO_ACCURACY,
    ]


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
        Finding("model-index is malformed: a metric on D has no type", SHAPE_HINT, 13),
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
