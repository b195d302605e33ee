"""Model card (README.md) checks: YAML front matter, required keys, allowed licenses and metric thresholds.

``read_card`` reads a card the way ``huggingface_hub`` does (its front-matter regex, ``metadata_load`` for the
metadata, ``model_index_to_eval_results`` for the results), so the policy gates what the Hub will show; tests
compare the two readings on a table of cards and on mutations of them. The YAML comes from whoever pushes, so it
is parsed with a safe loader under size, nesting and alias-expansion budgets, and messages never quote more than
short, escaped fragments.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import yaml

from . import Finding, Findings, shown

# Copied from huggingface_hub.repocard.REGEX_YAML_BLOCK (no MULTILINE: "^" is the start of the file, leading
# whitespace is allowed, the block ends at the first "---" line). Diverging would let a card pass here that the
# Hub reads differently.
_FRONT_MATTER = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")
# Line breaks as PyYAML's reader counts them, so YAML marks and our offsets agree.
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
_LONE_CR = re.compile(r"\r(?!\n)")
_NEWLINES = re.compile(r"\r\n?")

# Real embedding-model cards carry 85 KB to 500 KB of model-index.
MAX_FRONT_MATTER_BYTES = 1024 * 1024
# Larger blocks are tokenised by libyaml (when PyYAML has it), composed and constructed by the same Python code:
# a 500 KB model-index is checked in about 0.4 s instead of 1.1 s. Smaller ones, all ordinary cards, go through the
# pure-Python parser huggingface_hub itself uses, and so does any block libyaml refuses, so that the verdict and
# the message on a YAML error are always PyYAML's.
LIBYAML_FROM_BYTES = 64 * 1024
# Where the two are known to disagree (found by comparing them on mutated cards; the reference tests keep doing
# so): libyaml accepts a tab between tokens, a byte order mark inside the stream, "?" inside a plain scalar in
# flow context and a comment right after a block scalar's header ("|-#"), which PyYAML refuses, and reads a bare
# "!" tag as an empty string where PyYAML reads null. A block holding any of them is read by PyYAML.
_LIBYAML_DIFFERS = re.compile(r"[\t\ufeff?]|(?:^|[\s,\[\]{}])!|[|>][-+0-9]*#", re.MULTILINE)
# Nodes of the composed graph with each alias counted as the subtree it stands for, which a "billion laughs" makes
# huge from a few lines; a scalar counts as one node per character too, since a long string or number that an
# alias repeats costs every reader of the card that much each time. A document without aliases weighs at most
# 1.5 units per byte ("[?,?,?]"), so the budget grows with the block and only aliases can exceed it; it never
# falls below MIN_NODES.
MIN_NODES = 10_000
# PyYAML builds an integer written in base 60 ("1:0:0:...") in time quadratic in its length, and Python will not
# print one of over 4300 digits. No card needs a number this long.
MAX_NUMBER_CHARS = 1000
# PyYAML composes recursively; a deep "[[[[..." would otherwise end in RecursionError (or worse, a crash).
MAX_DEPTH = 64

# In PyYAML messages: a token name (kept) or else quoted document text (group 1, dropped).
_YAML_QUOTED = re.compile(r"'(?:<[a-z ]{1,40}>|[^\w\s'\\])'|('[^']*'|\"[^\"]*\")")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_PLAIN_NUMBER = re.compile(_NUMBER)
# "65.80 +/- 13.11", "20.0 ± 1.2" (the form huggingface_hub's EvalResult documents): gated on the estimate.
_WITH_SPREAD = re.compile(rf"({_NUMBER})\s*(?:±|\+/-|\+-)\s*(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}

_NOT_TEXT_HINT = "the model card must be a Markdown file with YAML front matter"
_NO_FRONT_MATTER_HINT = "start README.md with a --- block holding at least the required keys, e.g. license"
_LINE_ENDINGS_HINT = "the Hub's card readers find different metadata in it; save README.md with LF line endings"
_TOO_LARGE_HINT = "keep only metadata in the front matter and move long text into the Markdown body"
_BUDGET_HINT = "simplify the front matter: no deep nesting or repeated alias expansion"
_MAPPING_HINT = "write the front matter as key: value lines"
_NOT_NUMBER_HINT = 'write the value as a number, e.g. "value: 0.93" or "value: 0.93 ± 0.01"'
_SHAPE_HINT = ("the Hub then shows none of its results; use the layout "
               "model-index: [{name, results: [{task, dataset, metrics: [{type, value}]}]}]")


class Reported(NamedTuple):
    """One metric value of ``model-index``, as ``huggingface_hub``'s ``EvalResult`` holds it."""

    task_type: object
    dataset_type: object
    dataset_name: object
    metric_type: object
    metric_name: object
    value: object
    line: int | None

    @property
    def dataset(self) -> str:
        """The dataset as messages name it."""
        return _dataset_label(self.dataset_name, self.dataset_type)


class CardFacts(NamedTuple):
    """What the Hub reads from a model card.

    ``results`` are the reported metric values, empty when the Hub reads none; ``malformed`` says why the Hub
    reads no results from a ``model-index`` the card has (its reader drops the whole of it on one bad entry).
    """

    metadata: dict[Any, Any]
    license: object
    results: list[Reported]
    malformed: list[Finding]
    lines: _Lines


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
    ``metrics`` maps a metric to a threshold, an (operator, number) pair as the config schema reads it, and every
    ``model-index`` value reported for that metric must meet it. An empty list means the card is acceptable.
    """
    facts = read_card(data)
    if isinstance(facts, Finding):
        return [facts]
    card, lines = facts.metadata, facts.lines
    findings: list[Finding] = []
    wanted = list(required)
    if licenses and "license" not in wanted:
        wanted.append("license")  # an allow-list is meaningless if the card may simply omit the license
    for key in wanted:
        if key not in card or _is_empty(card[key]):
            hint = f'add "{shown(key)}: {"<id>" if key == "license" else "<value>"}" to the front matter'
            findings.append(Finding(f"model card lacks required key {_quote(key)}", hint, lines.of_value(card, key)))
    if licenses and not _is_empty(facts.license):
        findings.extend(_check_licenses(card, licenses, lines))
    if metrics:
        # A model-index the Hub cannot read shows no results: its problems say so, and no threshold is met.
        findings.extend(facts.malformed or _check_metrics(facts, metrics))
    # A hostile card with thousands of bad results must not flood the output.
    capped = Findings("model card problems", unique=False)
    capped.extend(findings)
    return capped.result()


def read_card(data: bytes) -> CardFacts | Finding:
    """The metadata, license and ``model-index`` results the Hub reads from README.md, or why it reads none."""
    text = _decode(data)
    if text is None:
        return Finding("model card is not UTF-8 text", _NOT_TEXT_HINT)
    match = _locate(text)
    if isinstance(match, Finding):
        return match
    if match is None:
        return Finding("model card has no YAML front matter", _NO_FRONT_MATTER_HINT)
    block = match.group(2)
    # Lines before the block (leading blank lines plus the opening "---"): YAML line 0 is README line offset+1.
    offset = len(_LINE_BREAK.findall(text, 0, match.start(2)))
    size = len(block.encode("utf-8")) if len(block) <= MAX_FRONT_MATTER_BYTES else len(block)
    if size > MAX_FRONT_MATTER_BYTES:
        problem = f"model card front matter is larger than {MAX_FRONT_MATTER_BYTES // 1024} KiB"
        return Finding(problem, _TOO_LARGE_HINT, offset)
    loaded = _load(block, offset, size)
    if isinstance(loaded, Finding):
        return loaded
    card, lines = loaded
    if card is None:  # an empty block is an empty mapping for the Hub too
        card = {}
    if not isinstance(card, dict):
        return Finding("model card front matter is not a mapping", _MAPPING_HINT, offset)
    results, malformed = _eval_results(card, lines)
    return CardFacts(card, card.get("license"), results, malformed, lines)


def _locate(text: str) -> re.Match[str] | Finding | None:
    """The front matter, found as huggingface_hub finds it; a Finding when its own readers disagree on it.

    ``metadata_load`` reads the file with universal newlines (CRLF and a lone CR become LF), while
    ``ModelCard.load`` and the Hub, whose regex this is, see the CRs: "(\\r\\n|\\n|$)" does not close the block on
    a lone CR, and "---\\r\\n---\\r\\n" is an empty block there but none at all once read as LF. Where the two
    readings find different front matter, whichever we chose the Hub might show the other, so the card is refused
    rather than guessed at.
    """
    match = _FRONT_MATTER.search(text)
    if "\r" not in text:
        return match
    normal = _FRONT_MATTER.search(_NEWLINES.sub("\n", text))
    same = match is None if normal is None else match is not None and _NEWLINES.sub("\n", match[2]) == normal[2]
    if same:
        return match
    lone_cr = _LONE_CR.search(text)
    line = None if lone_cr is None else len(_LINE_BREAK.findall(text, 0, lone_cr.start())) + 1
    return Finding("model card front matter depends on how its line breaks are read", _LINE_ENDINGS_HINT, line)


class _Rejected(Exception):
    """The front matter exceeds a safety budget; carries the pusher-facing message."""

    def __init__(self, problem: str, line: int | None, hint: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.hint = hint or _BUDGET_HINT


class _Tracking(yaml.composer.Composer, yaml.constructor.SafeConstructor):
    """Caps composition depth and remembers which node built each dict and list (for lines)."""

    def _start(self, offset: int) -> None:
        self._offset = offset
        self._depth = 0
        self.aliased = False
        self.built_from: dict[int, yaml.Node] = {}

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self._offset + self.peek_event().start_mark.line + 1  # type: ignore[attr-defined]
                raise _Rejected(f"model card front matter nests deeper than {MAX_DEPTH} levels", line)
            if self.check_event(yaml.AliasEvent):  # type: ignore[attr-defined]
                self.aliased = True
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise _Rejected(f"model card front matter holds a number longer than {MAX_NUMBER_CHARS} characters",
                            self._offset + node.start_mark.line + 1, "write long numbers as quoted strings")
        return super().construct_yaml_int(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        obj = super().construct_object(node, deep=deep)
        if isinstance(obj, (dict, list)):
            # The card keeps every dict/list alive, so their ids stay unique while we use this map.
            self.built_from[id(obj)] = node
        return obj


# SafeConstructor dispatches through a table of functions, so an override takes effect once it is in the table.
_Tracking.add_constructor("tag:yaml.org,2002:int", _Tracking.construct_yaml_int)  # type: ignore[type-var]


class _Loader(_Tracking, yaml.SafeLoader):
    """PyYAML's pure-Python SafeLoader, the one huggingface_hub reads cards with."""

    def __init__(self, stream: str, offset: int) -> None:
        yaml.SafeLoader.__init__(self, stream)  # the reader rejects non-printable characters right here
        self._start(offset)


def _libyaml_loader() -> Callable[[str, int], _Tracking] | None:
    """A loader whose events come from libyaml, or None when PyYAML was built without it."""
    try:
        from yaml._yaml import CParser
    except ImportError:
        return None

    class _FastLoader(_Tracking, CParser, yaml.resolver.Resolver):  # Composer before CParser: ours composes
        def __init__(self, stream: str, offset: int) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._start(offset)

    return _FastLoader


_FAST_LOADER = _libyaml_loader()


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
        """Line of ``mapping[key]``'s key (its last occurrence, the one YAML keeps), or None when absent."""
        node = self._built_from.get(id(mapping))
        line = None
        if isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                    line = self._line(key_node)
        return line

    def of_item(self, sequence: list[Any], index: int) -> int | None:
        node = self._built_from.get(id(sequence))
        if isinstance(node, yaml.SequenceNode) and index < len(node.value):
            return self._line(node.value[index])
        return self.of(sequence)


def _load(block: str, offset: int, size: int) -> tuple[Any, _Lines] | Finding:
    """Safely load the front matter, or return the finding explaining why it cannot be loaded."""
    try:
        if _FAST_LOADER is not None and size > LIBYAML_FROM_BYTES and not _LIBYAML_DIFFERS.search(block):
            try:
                return _read(_FAST_LOADER(block, offset), offset, size)
            except yaml.YAMLError:
                pass  # read again below, so that the verdict and its words are PyYAML's
        return _read(_Loader(block, offset), offset, size)
    except _Rejected as exc:
        return Finding(exc.problem, exc.hint, exc.line)
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
    except Exception:  # noqa: BLE001 - the budgets above are BaseExceptions and pass through
        # Constructors raise plain errors on values they cannot build: an impossible date, "!!bool mit" (KeyError),
        # "!!int" on an empty scalar (IndexError), "!!timestamp now" (AttributeError). The Hub's reader fails on
        # each the same way.
        problem = "model card front matter has a value YAML cannot load"
        return Finding(problem, "check dates and very long numbers in the front matter", offset)


def _read(loader: _Tracking, offset: int, size: int) -> tuple[Any, _Lines]:
    try:
        node = loader.get_single_node()
        if node is None:
            return None, _Lines({}, offset)
        if loader.aliased:  # without aliases the composer's depth cap and the byte budget already bound it
            _check_expansion(node, offset, max(MIN_NODES, 2 * size))
        return loader.construct_document(node), _Lines(loader.built_from, offset)
    finally:
        loader.dispose()  # type: ignore[attr-defined]


def _check_expansion(root: yaml.Node, offset: int, budget: int) -> None:
    """Stop at the budgets the node graph exceeds once its aliases are expanded, without expanding them.

    Aliases share nodes, so each distinct node's expanded size and height are computed once, children first: a
    billion laughs is refused after its few dozen nodes. A node met again while its own children are still open
    is its own descendant (an anchor aliased inside itself), as deep as construction would recurse.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id -> (expanded nodes, height)
    open_ids: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        if closing:
            open_ids.discard(key)
            below = [sizes[id(child)] for child in _children(node)]
            total, height = 1 + sum(n for n, _ in below), 1 + max((h for _, h in below), default=0)
            if total > budget:
                raise _Rejected(f"model card front matter's aliases expand it beyond {budget} nodes and characters",
                                None)
            if height > MAX_DEPTH:
                raise _Rejected(f"model card front matter nests deeper than {MAX_DEPTH} levels",
                                offset + node.start_mark.line + 1)
            sizes[key] = (total, height)
        elif key in open_ids:
            raise _Rejected(f"model card front matter nests deeper than {MAX_DEPTH} levels",
                            offset + node.start_mark.line + 1)
        elif key not in sizes:
            open_ids.add(key)
            stack.append((node, True))
            for child in _children(node):
                if isinstance(child, yaml.ScalarNode):
                    sizes[id(child)] = (1 + len(child.value), 1)
                elif id(child) not in sizes:
                    stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _eval_results(card: dict[Any, Any], lines: _Lines) -> tuple[list[Reported], list[Finding]]:
    """``model-index`` flattened as ``model_index_to_eval_results`` does it, or every part it cannot read.

    Its reader is all or nothing: one missing key, or a string where a mapping belongs, and the Hub reads no
    results at all. Values it does not look at may be anything (a null dataset name is read), so they are not
    checked here either.
    """
    reported: list[Reported] = []
    problems: list[Finding] = []

    def malformed(what: str, line: int | None) -> None:
        problems.append(Finding(f"model-index is malformed: {what}", _SHAPE_HINT, line))

    model_index = card.get("model-index")
    if not model_index:  # ModelCardData skips a missing, null or empty model-index
        return [], []
    if not isinstance(model_index, list):
        malformed("expected a list of models", lines.of_value(card, "model-index"))
        return [], problems
    for i, model in enumerate(model_index):
        if not isinstance(model, dict):
            malformed("a model entry is not a mapping", lines.of_item(model_index, i))
            continue
        if "name" not in model:
            malformed("a model entry has no name", lines.of_item(model_index, i))
        results = _items(model, "results", lines)
        if results is None:
            malformed("a model entry has no results list", lines.of_item(model_index, i))
            continue
        for result, line in results:
            if not isinstance(result, dict):
                malformed("a result is not a mapping", line)
                continue
            reported.extend(_result_metrics(result, line, lines, malformed))
    last = model_index[-1]
    if not problems and reported and isinstance(last, dict) and last.get("name") is None:
        # ModelCardData names the results after the last model and refuses results without a name.
        malformed("a model entry has no name", lines.of_item(model_index, len(model_index) - 1))
    return ([], problems) if problems else (reported, [])


def _result_metrics(result: dict[Any, Any], line: int | None, lines: _Lines,
                    malformed: Callable[[str, int | None], None]) -> Iterator[Reported]:
    """The metric values of one result, in the order the Hub reads them; the parts it cannot read go to malformed."""
    task, dataset = result.get("task"), result.get("dataset")
    readable = True
    if not (isinstance(task, dict) and "type" in task):
        malformed("a result has no task type", line)
        readable = False
    known = dataset if isinstance(dataset, dict) else {}
    label = _dataset_label(known.get("name"), known.get("type"))
    if not (isinstance(dataset, dict) and "type" in dataset and "name" in dataset):
        malformed("a result has no dataset type and name", line)
        readable, dataset = False, {}
    source = result.get("source") or {}
    if not isinstance(source, dict):
        malformed(f"the result on {label} has a source that is not a mapping", line)
        readable, source = False, {}
    metrics = _items(result, "metrics", lines)
    if metrics is None:
        malformed(f"the result on {label} has no metrics list", line)
        return
    if metrics and source.get("name") is not None and source.get("url") is None:
        malformed(f"the result on {label} names a source but no url", line)  # EvalResult refuses it
        readable = False
    for metric, metric_line in metrics:
        if not isinstance(metric, dict):
            malformed(f"a metric on {label} is not a mapping", metric_line)
        elif "type" not in metric or "value" not in metric:
            malformed(f"a metric on {label} has no {'type' if 'type' not in metric else 'value'}", metric_line)
        elif readable:
            assert isinstance(task, dict)
            yield Reported(task["type"], dataset["type"], dataset["name"], metric["type"], metric.get("name"),
                           metric["value"], lines.of_value(metric, "value") or lines.of(metric))


def _items(owner: dict[Any, Any], key: str, lines: _Lines) -> list[tuple[Any, int | None]] | None:
    """``owner[key]`` as the Hub iterates it, with each item's line; None where iterating it fails."""
    if key not in owner:
        return None
    value = owner[key]
    if isinstance(value, list):
        return [(item, lines.of_item(value, i)) for i, item in enumerate(value)]
    # Iterating an empty string or mapping reads nothing; any other non-list fails on its first item.
    return [] if isinstance(value, (str, bytes, dict, set)) and not value else None


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


def _check_metrics(facts: CardFacts, metrics: Mapping[str, tuple[str, float]]) -> list[Finding]:
    findings: list[Finding] = []
    for key, (op, threshold) in metrics.items():
        want = f"{shown(key)} {op} {_format_number(threshold)}"
        matching = [result for result in facts.results if _names_metric(result, key)]
        if not matching:
            hint = f"add a metric with type or name {_quote(key)} to model-index, the release requires {want}"
            line = facts.lines.of_value(facts.metadata, "model-index")
            findings.append(Finding(f"model-index reports no {_quote(key)} result", hint, line))
        # Every reported value must pass: a gate met by cherry-picking the best dataset is no gate.
        for result in matching:
            value = _number(result.value)
            if value is None:
                problem, hint = _unreadable(shown(key), result.value, result.dataset, want)
                findings.append(Finding(problem, hint, result.line))
            elif not _OPERATORS[op](value, threshold):
                measured = _format_number(value) if _number(result.value, spread=False) is not None else (
                    _quote(str(result.value).strip()))
                problem = f"{shown(key)} {measured} on {result.dataset} does not meet {op} {_format_number(threshold)}"
                findings.append(Finding(problem, f"the release requires {want} on every reported dataset", result.line))
    return findings


def _names_metric(result: Reported, key: str) -> bool:
    """Whether a reported value is one the policy key gates.

    The Hub identifies a metric by its type (the id, "accuracy") and shows its name when there is one, so a
    card's "type: acc, name: Accuracy" is shown as Accuracy: the key is matched against both, ignoring case, and
    a value either calls that metric must pass. A bare "type: acc" is not taken for "accuracy": the Hub links it to
    no accuracy metric, and guessing aliases would gate values the card never called by that name.
    """
    wanted = key.strip().casefold()
    return any(isinstance(field, str) and field.strip().casefold() == wanted
               for field in (result.metric_type, result.metric_name))


def _number(value: object, *, spread: bool = True) -> int | float | None:
    """A finite number, or None. Numeric strings count: PyYAML (YAML 1.1) loads ``1e-3`` as a string while the
    Hub's YAML 1.2 parser reads a number, and a quoted "0.93" plainly means 0.93. With ``spread``, a string
    "estimate ± spread" (or "+/-") counts as its estimate: that is the value the card reports."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= 64:
        text = value.strip()
        match = _PLAIN_NUMBER.fullmatch(text) or (_WITH_SPREAD.fullmatch(text) if spread else None)
        if match:
            number = float(match[1] if match.lastindex else match[0])
            return number if math.isfinite(number) else None
    return None


def _unreadable(key: str, value: object, dataset: str, want: str) -> tuple[str, str]:
    """The finding for a value no gate can be passed on: what it is, and how to write it instead."""
    if value is None:
        return f"{key} value on {dataset} is empty", _NOT_NUMBER_HINT
    if isinstance(value, (list, dict, set)):
        kind = "list" if isinstance(value, list) else "mapping" if isinstance(value, dict) else "set"
        return f"{key} value on {dataset} is a {kind}, not a number", _NOT_NUMBER_HINT
    if isinstance(value, str):
        problem = f"{key} value {_quote(value)} on {dataset} is not a number"
        # "79%" read as 79 fails a ">= 0.8" that 0.79 would fail for the right reason; only the pusher knows the unit.
        if "%" in value:
            return problem, f"write the number alone, in the unit of the threshold: the release requires {want}"
        return problem, _NOT_NUMBER_HINT
    if isinstance(value, float):
        spelled = ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
    else:
        spelled = str(value).lower() if isinstance(value, bool) else shown(str(value))
    return f"{key} value {spelled} on {dataset} is not a number", _NOT_NUMBER_HINT


def _format_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, int) and abs(value) >= 10**15:
        # YAML 1.1's base 60 ("59:59:...") builds ints past the digits str() may convert. Imported here: no
        # ordinary card needs it, and every push would pay for it.
        import decimal

        return format(decimal.Decimal(value), ".6g")
    return shown(repr(value) if isinstance(value, float) else str(value))


def _dataset_label(name: object, kind: object) -> str:
    for label in (name, kind):
        if _is_label(label):
            return shown(str(label))
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
