"""Model card (README.md) checks: YAML front matter, required keys, allowed licenses and metric thresholds.

The front matter is located exactly the way ``huggingface_hub.repocard`` does it, so a card we accept is a card
the Hub reads the same metadata from. The YAML comes from whoever pushes, so it is parsed with a safe loader
under size, nesting and alias-expansion budgets, and messages never quote more than short, escaped fragments.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from . import Finding, Findings, shown

# Copied from huggingface_hub.repocard.REGEX_YAML_BLOCK (no MULTILINE: "^" is the start of the file, leading
# whitespace is allowed, the block ends at the first "---" line). Diverging would let a card pass here that the
# Hub reads differently.
_FRONT_MATTER = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")
# Line breaks as PyYAML's reader counts them, so YAML marks and our offsets agree.
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")

MAX_FRONT_MATTER_BYTES = 64 * 1024
# Nodes visited while walking the composed graph, each alias counted as the full subtree it stands for:
# stops "billion laughs" documents that are tiny on disk but huge once aliases are expanded.
MAX_NODES = 10_000
# PyYAML composes recursively; a deep "[[[[..." would otherwise end in RecursionError (or worse, a crash).
MAX_DEPTH = 64

# In PyYAML messages: a token name (kept) or else quoted document text (group 1, dropped).
_YAML_QUOTED = re.compile(r"'(?:<[a-z ]{1,40}>|[^\w\s'\\])'|('[^']*'|\"[^\"]*\")")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}

_NOT_TEXT_HINT = "the model card must be a Markdown file with YAML front matter"
_NO_FRONT_MATTER_HINT = "start README.md with a --- block holding at least the required keys, e.g. license"
_TOO_LARGE_HINT = "keep only metadata in the front matter and move long text into the Markdown body"
_BUDGET_HINT = "simplify the front matter: no deep nesting or repeated alias expansion"
_MAPPING_HINT = "write the front matter as key: value lines"
_NOT_NUMBER_HINT = 'write the value as a plain number, e.g. "value: 0.93"'
_SHAPE_HINT = "use the Hub layout: model-index: [{name, results: [{task, dataset, metrics: [{type, value}]}]}]"


def check_model_card(
    data: bytes,
    *,
    required: Sequence[str],
    licenses: Sequence[str],
    metrics: Mapping[str, tuple[str, float]],
) -> list[Finding]:
    """Check a README.md model card against the release policy and return what a pusher must fix.

    ``required`` lists front-matter keys that must be present and non-empty; a non-empty ``licenses`` allow-list
    implies ``license`` is required and every declared license must be in it (case-insensitive, like Hub ids);
    ``metrics`` maps a metric type to a threshold, an (operator, number) pair as the config schema reads it, and
    every ``model-index`` result
    reporting that metric must meet it. An empty list means the card is acceptable.
    """
    text = _decode(data)
    if text is None:
        return [Finding("model card is not UTF-8 text", _NOT_TEXT_HINT)]
    match = _FRONT_MATTER.search(text)
    if match is None:
        return [Finding("model card has no YAML front matter", _NO_FRONT_MATTER_HINT)]
    block = match.group(2)
    # Lines before the block (leading blank lines plus the opening "---"): YAML line 0 is README line offset+1.
    offset = len(_LINE_BREAK.findall(text, 0, match.start(2)))
    if len(block) > MAX_FRONT_MATTER_BYTES or len(block.encode("utf-8")) > MAX_FRONT_MATTER_BYTES:
        problem = f"model card front matter is larger than {MAX_FRONT_MATTER_BYTES // 1024} KiB"
        return [Finding(problem, _TOO_LARGE_HINT, offset)]
    loaded = _load(block, offset)
    if isinstance(loaded, Finding):
        return [loaded]
    card, lines = loaded
    if card is None:  # an empty block is an empty mapping for the Hub too
        card = {}
    if not isinstance(card, dict):
        return [Finding("model card front matter is not a mapping", _MAPPING_HINT, offset)]

    findings: list[Finding] = []
    wanted = list(required)
    if licenses and "license" not in wanted:
        wanted.append("license")  # an allow-list is meaningless if the card may simply omit the license
    for key in wanted:
        if key not in card or _is_empty(card[key]):
            hint = f'add "{shown(key)}: {"<id>" if key == "license" else "<value>"}" to the front matter'
            findings.append(Finding(f"model card lacks required key {_quote(key)}", hint, lines.of_value(card, key)))
    if licenses and not _is_empty(card.get("license")):
        findings.extend(_check_licenses(card, licenses, lines))
    if metrics:
        findings.extend(_check_metrics(card, metrics, lines))
    # A hostile card with thousands of bad results must not flood the output.
    capped = Findings("model card problems", unique=False)
    capped.extend(findings)
    return capped.result()


class _Rejected(Exception):
    """The front matter exceeds a safety budget; carries the pusher-facing message."""

    def __init__(self, problem: str, line: int | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line


class _Loader(yaml.SafeLoader):
    """SafeLoader that caps composition depth and remembers which node built each dict and list (for lines)."""

    def __init__(self, stream: str, offset: int) -> None:
        super().__init__(stream)
        self._offset = offset
        self._depth = 0
        self.built_from: dict[int, yaml.Node] = {}

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self._offset + self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise _Rejected(f"model card front matter nests deeper than {MAX_DEPTH} levels", line)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        obj = super().construct_object(node, deep=deep)
        if isinstance(obj, (dict, list)):
            # The card keeps every dict/list alive, so their ids stay unique while we use this map.
            self.built_from[id(obj)] = node
        return obj


class _Lines:
    """Maps loaded dicts and lists back to README.md line numbers."""

    def __init__(self, built_from: dict[int, yaml.Node], offset: int) -> None:
        self._built_from = built_from
        self._offset = offset

    def _line(self, node: yaml.Node) -> int:
        return self._offset + node.start_mark.line + 1

    def of(self, obj: object) -> int | None:
        node = self._built_from.get(id(obj))
        return None if node is None else self._line(node)

    def of_value(self, mapping: dict[Any, Any], key: object) -> int | None:
        """Line of ``mapping[key]``'s key, or None when absent."""
        node = self._built_from.get(id(mapping))
        if isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                    return self._line(key_node)
        return None

    def of_item(self, sequence: list[Any], index: int) -> int | None:
        node = self._built_from.get(id(sequence))
        if isinstance(node, yaml.SequenceNode) and index < len(node.value):
            return self._line(node.value[index])
        return self.of(sequence)


def _load(block: str, offset: int) -> tuple[Any, _Lines] | Finding:
    """Safely load the front matter, or return the finding explaining why it cannot be loaded."""
    loader: _Loader | None = None
    try:
        loader = _Loader(block, offset)  # the reader rejects non-printable characters right here
        node = loader.get_single_node()
        if node is None:
            return None, _Lines({}, offset)
        _check_expansion(node, offset)
        return loader.construct_document(node), _Lines(loader.built_from, offset)
    except _Rejected as exc:
        return Finding(exc.problem, _BUDGET_HINT, exc.line)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else offset + mark.line + 1
        problem = f"model card front matter is not valid YAML: {_yaml_problem(exc)}"
        return Finding(problem, "fix the YAML syntax of the front matter at this line", line)
    except yaml.reader.ReaderError as exc:
        line = offset + len(_LINE_BREAK.findall(block, 0, exc.position)) + 1
        problem = "model card front matter contains a character YAML does not allow"
        return Finding(problem, "remove control characters from the front matter", line)
    except yaml.YAMLError:
        return Finding("model card front matter is not valid YAML", "fix the YAML syntax of the front matter", offset)
    except (ValueError, TypeError, OverflowError, RecursionError):
        # Constructors raise plain errors, e.g. an impossible date or an int longer than Python's digit limit.
        problem = "model card front matter has a value YAML cannot load"
        return Finding(problem, "check dates and very long numbers in the front matter", offset)
    finally:
        if loader is not None:
            loader.dispose()


def _check_expansion(root: yaml.Node, offset: int) -> None:
    """Walk the node graph as construction would see it, aliases expanded, and stop at the budgets.

    Children are charged when pushed, not when popped, so the stack itself can never exceed the budget.
    """
    budget = MAX_NODES - 1
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            continue
        if not children:
            continue
        if depth >= MAX_DEPTH:  # cycles (an anchor aliased inside itself) end here
            line = offset + node.start_mark.line + 1
            raise _Rejected(f"model card front matter nests deeper than {MAX_DEPTH} levels", line)
        budget -= len(children)
        if budget < 0:
            raise _Rejected(f"model card front matter expands beyond {MAX_NODES} nodes", None)
        stack.extend((child, depth + 1) for child in children)


def _check_licenses(card: dict[Any, Any], licenses: Sequence[str], lines: _Lines) -> list[Finding]:
    allowed = {name.strip().casefold() for name in licenses}
    hint = "allowed: " + ", ".join(licenses)
    value = card["license"]
    items: list[tuple[object, int | None]]
    if isinstance(value, list):
        items = [(item, lines.of_item(value, i)) for i, item in enumerate(value)]
    else:
        items = [(value, lines.of_value(card, "license"))]
    findings: list[Finding] = []
    for item, line in items:
        if not isinstance(item, str):
            findings.append(Finding("license must be a license id or a list of license ids", hint, line))
        elif item.strip().casefold() not in allowed:
            findings.append(Finding(f"license {_quote(item)} is not allowed", hint, line))
    return findings


def _check_metrics(card: dict[Any, Any], metrics: Mapping[str, tuple[str, float]], lines: _Lines) -> list[Finding]:
    findings: list[Finding] = []
    reported = _reported_metrics(card, lines, findings)
    for key, (op, threshold) in metrics.items():
        want = f"{shown(key)} {op} {_format_number(threshold)}"
        matching = [(metric, label) for metric, label in reported if _names_metric(metric, key)]
        if not matching:
            hint = f"add it to model-index results, the release requires {want}"
            line = lines.of_value(card, "model-index")
            findings.append(Finding(f"model-index reports no {_quote(key)} result", hint, line))
        # Every reported value must pass: a gate met by cherry-picking the best dataset is no gate.
        for metric, label in matching:
            line = lines.of_value(metric, "value") or lines.of(metric)
            value = _number(metric.get("value"))
            if value is None:
                findings.append(Finding(f"{shown(key)} value on {label} is not a number", _NOT_NUMBER_HINT, line))
            elif not _OPERATORS[op](value, threshold):
                measured = f"{shown(key)} {_format_number(value)}"
                problem = f"{measured} on {label} does not meet {op} {_format_number(threshold)}"
                findings.append(Finding(problem, f"the release requires {want} on every reported dataset", line))
    return findings


def _reported_metrics(card: dict[Any, Any], lines: _Lines, findings: list[Finding]) -> list[tuple[dict[Any, Any], str]]:
    """Collect (metric mapping, dataset label) from model-index, appending a finding for each malformed part.

    Parts the Hub needs (task type, dataset type and name) are checked too: without them the Hub ignores the whole
    model-index, so the release would show no results at all.
    """
    reported: list[tuple[dict[Any, Any], str]] = []

    def malformed(what: str, line: int | None) -> None:
        findings.append(Finding(f"model-index is malformed: {what}", _SHAPE_HINT, line))

    model_index = card.get("model-index")
    if model_index is None:
        return reported
    if not isinstance(model_index, list):
        malformed("expected a list of models", lines.of_value(card, "model-index"))
        return reported
    for i, model in enumerate(model_index):
        results = model.get("results") if isinstance(model, dict) else None
        if not isinstance(results, list):
            what = "a model entry has no results list" if isinstance(model, dict) else "a model entry is not a mapping"
            malformed(what, lines.of_item(model_index, i))
            continue
        for j, result in enumerate(results):
            if not isinstance(result, dict):
                malformed("a result is not a mapping", lines.of_item(results, j))
                continue
            task, dataset = result.get("task"), result.get("dataset")
            if not (isinstance(task, dict) and _is_label(task.get("type"))):
                malformed("a result has no task type", lines.of(result))
            if not (isinstance(dataset, dict) and _is_label(dataset.get("type")) and _is_label(dataset.get("name"))):
                malformed("a result has no dataset type and name", lines.of(result))
            label = _dataset_label(dataset)
            entries = result.get("metrics")
            if not isinstance(entries, list):
                malformed(f"the result on {label} has no metrics list", lines.of(result))
                continue
            for k, metric in enumerate(entries):
                if isinstance(metric, dict) and _is_label(metric.get("type")):
                    reported.append((metric, label))
                else:
                    malformed(f"a metric on {label} has no type", lines.of_item(entries, k))
    return reported


def _names_metric(metric: dict[Any, Any], key: str) -> bool:
    # "type" is the Hub metric id; "name" is a display name, so also accept it, ignoring case.
    wanted = key.casefold()
    return any(isinstance(metric.get(field), str) and metric[field].casefold() == wanted for field in ("type", "name"))


def _number(value: object) -> int | float | None:
    """A finite number, or None. Numeric strings count: PyYAML (YAML 1.1) loads ``1e-3`` as a string while the
    Hub's YAML 1.2 parser reads a number, and a quoted "0.93" plainly means 0.93."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= 64 and _NUMBER.fullmatch(value.strip()):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _format_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return shown(repr(value) if isinstance(value, float) else str(value))


def _dataset_label(dataset: object) -> str:
    if isinstance(dataset, dict):
        for field in ("name", "type"):
            if _is_label(dataset.get(field)):
                return shown(str(dataset[field]))
    return "an unnamed dataset"


def _is_label(value: object) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip() != ""


def _is_empty(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, dict)):
        return not value
    return False


def _decode(data: bytes) -> str | None:
    if b"\x00" in data:  # UTF-16/32 and binary files; NUL is valid UTF-8 but never in a Markdown card
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text.removeprefix("\ufeff")  # huggingface_hub reads cards as utf-8-sig


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's description without the quoted excerpts of the document it sometimes embeds.

    Quoted token names ('<stream end>', '?', ']') are PyYAML's own words and are kept; any other quoted text
    may be an alias, tag or escape taken from the document and is dropped.
    """
    problem = exc.problem or ""
    # "but found another document" and "second occurrence" only make sense after their context.
    if exc.context and (not problem or problem.startswith(("but ", "second "))):
        problem = f"{exc.context}, {problem}" if problem else exc.context
    problem = _YAML_QUOTED.sub(lambda m: "" if m.group(1) else m.group(0), problem)
    problem = re.sub(r"\s+([;,])", r"\1", " ".join(problem.split()))
    return shown(problem or "syntax error")


def _quote(text: str) -> str:
    return f"'{shown(text)}'"
