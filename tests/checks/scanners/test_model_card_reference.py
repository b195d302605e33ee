"""read_card against huggingface_hub's own card readers: the same license and the same reported metric values.

For each card the Hub's reading is taken from ``metadata_load`` (the metadata and license), ``ModelCardData`` over
its ``model-index`` (which runs ``model_index_to_eval_results``; any error there means no results at all) and,
where it loads, ``ModelCard.load``. The cards are a table of real-looking ones (``fixtures/cards.py``) and
seeded mutations of them.

Where read_card deliberately refuses what the Hub reads, the case and its reason are listed (``DELIBERATE``):
budgets (front matter over 1 MiB, nesting past 64 levels, aliases expanding past the node budget), NUL bytes
(never in a Markdown card), and CR-only line breaks that make ``metadata_load`` (universal newlines) and
``ModelCard.load`` (the file as it is) find different front matter.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from fixtures.cards import CARDS, EMBEDDING_100K, OPEN_LLM, TEXT_CLASSIFIER, embedding_card
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard import REGEX_YAML_BLOCK, metadata_load

from gitea_hf_hook.checks.scanners import Finding, model_card
from gitea_hf_hook.checks.scanners.model_card import CardFacts, read_card

SEED, MUTANTS = 20250301, 2500
BUDGET_PROBLEMS = ("model card front matter nests deeper than", "model card front matter's aliases expand it beyond",
                   "model card front matter is larger than", "model card front matter holds a number longer than")
LINE_ENDINGS = "model card front matter depends on how its line breaks are read"

DELIBERATE = {
    "cr-only, body after": LINE_ENDINGS,  # metadata_load reads the license, ModelCard.load finds no front matter
    "cr-only closing, lf elsewhere": LINE_ENDINGS,
    "crlf, no block between delimiters": LINE_ENDINGS,  # "---\r" + "\n---\r\n" is an empty block, as LF it is none
}


class HubReading(NamedTuple):
    """``kind``: "error" (the Hub cannot read the metadata), "none" (no front matter) or "read"."""

    kind: str
    license: Any = None
    results: list[str] | None = None  # None: the model-index is dropped


def result_key(task_type: Any, dataset_type: Any, dataset_name: Any, metric_type: Any, metric_name: Any,
               value: Any) -> str:
    return repr((task_type, dataset_type, dataset_name, metric_type, metric_name, value))  # repr: nan == nan


def hub_reading(path: Path) -> HubReading:
    try:
        text = path.read_text(encoding="utf-8-sig")
        metadata = metadata_load(path)
    except Exception:  # noqa: BLE001 - any failure is "the Hub cannot read it"
        return HubReading("error")
    if REGEX_YAML_BLOCK.search(text) is None:
        return HubReading("none")
    metadata = metadata or {}
    try:
        data = ModelCardData(**{"model-index": metadata.get("model-index")})
    except Exception:  # noqa: BLE001
        return HubReading("read", metadata.get("license"))
    results = [result_key(r.task_type, r.dataset_type, r.dataset_name, r.metric_type, r.metric_name, r.metric_value)
               for r in data.eval_results or []]
    return HubReading("read", metadata.get("license"), results)


def blocks(path: Path) -> tuple[str | None, str | None]:
    """The front matter as metadata_load finds it (universal newlines) and as ModelCard.load does (as it is)."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        raw = REGEX_YAML_BLOCK.search(f.read())
    normal = REGEX_YAML_BLOCK.search(path.read_text(encoding="utf-8-sig"))
    as_lf = None if raw is None else raw[2].replace("\r\n", "\n").replace("\r", "\n")
    return (None if normal is None else normal[2]), as_lf


def ours(facts: CardFacts) -> tuple[Any, list[str] | None]:
    results = [result_key(r.task_type, r.dataset_type, r.dataset_name, r.metric_type, r.metric_name, r.value)
               for r in facts.results]
    return facts.license, (None if facts.malformed else results)


def deliberate(data: bytes, path: Path, finding: Finding) -> str | None:
    """Why we refuse a card the Hub reads, or None when that refusal is no listed difference."""
    if finding.problem.startswith(BUDGET_PROBLEMS):
        return "budget"
    if finding.problem == LINE_ENDINGS:
        normal, raw = blocks(path)
        return "line endings" if normal != raw else None
    if finding.problem == "model card is not UTF-8 text" and b"\x00" in data:
        return "NUL"
    return None


def disagreement(data: bytes, path: Path) -> str | None:
    """None when read_card reads ``data`` as the Hub does (or refuses it for a listed reason), else what differs."""
    path.write_bytes(data)
    hub, facts = hub_reading(path), read_card(data)
    if isinstance(facts, Finding):
        if deliberate(data, path, facts) is not None:
            return None
        expected = "none" if facts.problem == "model card has no YAML front matter" else "error"
        return None if hub.kind == expected else f"we say {facts.problem!r}, the Hub {hub}"
    if hub.kind != "read":
        return f"we read {ours(facts)}, the Hub says {hub.kind}"
    normal, raw = blocks(path)
    if normal != raw:
        return "the Hub's readers find different front matter, and we picked one"
    if repr(ours(facts)) != repr((hub.license, hub.results)):
        return f"we read {ours(facts)}, the Hub {hub.license!r} {hub.results}"
    return None


@pytest.fixture
def readme(tmp_path: Path) -> Path:
    return tmp_path / "README.md"


def test_the_table_is_varied() -> None:
    assert len(CARDS) >= 40
    assert len(EMBEDDING_100K) > 100_000


@pytest.mark.parametrize("name", sorted(set(CARDS) - set(DELIBERATE)))
def test_table_card_reads_as_the_hub_reads_it(name: str, readme: Path) -> None:
    assert disagreement(CARDS[name], readme) is None


@pytest.mark.parametrize("name", sorted(DELIBERATE))
def test_table_card_we_deliberately_refuse(name: str, readme: Path) -> None:
    data = CARDS[name]
    facts = read_card(data)
    assert isinstance(facts, Finding) and facts.problem == DELIBERATE[name]
    readme.write_bytes(data)
    normal, raw = blocks(readme)
    assert normal != raw  # the Hub's own readers disagree on this card


@pytest.mark.parametrize("name", ["text classifier", "open llm leaderboard", "speech recognition", "crlf", "bom",
                                  "two models", "embedding 100 KB", "value plus-minus", "type acc name Accuracy"])
def test_model_card_load_reads_the_same_results(name: str, readme: Path) -> None:
    readme.write_bytes(CARDS[name])
    card = ModelCard.load(readme)
    facts = read_card(CARDS[name])
    assert isinstance(facts, CardFacts)
    assert facts.license == card.data.license
    assert [result_key(r.task_type, r.dataset_type, r.dataset_name, r.metric_type, r.metric_name, r.metric_value)
            for r in card.data.eval_results or []] == ours(facts)[1]


def test_what_the_hub_reads_from_the_tricky_cards() -> None:
    # Pinned so that a change in either reader shows up here as well as in the comparison.
    def reading(name: str) -> tuple[Any, list[tuple[Any, Any, Any]] | None]:
        facts = read_card(CARDS[name])
        assert isinstance(facts, CardFacts)
        results = [(r.metric_type, r.metric_name, r.value) for r in facts.results]
        return facts.license, (None if facts.malformed else results)

    assert reading("open llm leaderboard")[0] == ["apache-2.0", "mit"]
    assert reading("open llm leaderboard")[1] == [("acc_norm", "normalized accuracy", 59.56),
                                                  ("acc", "accuracy", 64.6), ("acc", "accuracy", 35.33)]
    assert reading("duplicate license") == ("mit", [])  # the last one, as YAML keeps it
    assert reading("dashes in a block scalar") == ("mit", [])  # the block ends at the first "---" line
    four_dashes = read_card(CARDS["four dashes"])  # "----" does not close the block, and is no YAML there
    assert isinstance(four_dashes, Finding) and four_dashes.line == 4
    assert reading("value percent")[1] == [("accuracy", None, "79%")]
    assert reading("value exponent")[1] == [("accuracy", None, "93e-2")]  # YAML 1.1: a string
    assert reading("value sexagesimal")[1] == [("accuracy", None, 90)]  # YAML 1.1: 1:30 is 90
    assert reading("first model unnamed")[1] == [("accuracy", None, 0.8)]
    for dropped in ("last model unnamed", "task without dataset", "metric without value", "model-index as mapping",
                    "source without url", "source as string", "task as string", "results null"):
        assert reading(dropped)[1] is None, dropped
    for empty in ("metrics empty mapping", "results empty string", "model-index empty", "model-index null"):
        assert reading(empty)[1] == [], empty


VALUES = ["0.9", "'0.91'", "79%", "65.80 +/- 13.11", "20.0 ± 1.2", "null", "", "[0.9]", "{a: 1}", ".nan", "-.inf",
          "true", "1e-3", "1:30", "0x1F", "2024-01-01", "'high'", "*a", "&a 0.95"]
TOKENS = ["-", "---", ":", " ", "  ", "\n", "\r", "\r\n", "\t", "#", "[", "]", "{", "}", ",", "'", '"', "&a ", "*a",
          "!!str ", "! ", "!", "|-#", ">#", "? ", "|", ">", "null", "0.5", "%", "\ufeff", "\x85", "\u2028", "...", "- ", "name: x\n",
          "type: accuracy\n", "value: 0.9\n", "<<: ", "model-index:\n", "license: mit\n", "results: []\n"]


def mutate(rnd: random.Random, text: str) -> str:
    """One random edit of the kind people and tools make to cards: a stray token, a lost or doubled line, an
    indent, another value, other line endings."""
    lines = text.split("\n")
    op = rnd.randrange(8)
    where = rnd.randrange(len(text) + 1)
    if op == 0:
        return text[:where] + rnd.choice(TOKENS) + text[where:]
    if op == 1:
        return text[:where] + text[where + rnd.randint(1, 8):]
    i = rnd.randrange(len(lines))
    if op == 2:
        del lines[i]
    elif op == 3:
        lines.insert(i, lines[i])
    elif op == 4 and i + 1 < len(lines):
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    elif op == 5:
        lines[i] = "  " + lines[i] if rnd.random() < 0.5 else lines[i].removeprefix("  ")
    elif op == 6:
        for j in rnd.sample(range(len(lines)), min(3, len(lines))):
            if "value:" in lines[j] or "type:" in lines[j] or "license:" in lines[j]:
                head = lines[j].split(":")[0]
                lines[j] = f"{head}: {rnd.choice(VALUES if 'value' in head else ['acc', 'Accuracy', 'f1', 'mit', ''])}"
    else:
        ending = rnd.choice(["\r\n", "\r"])
        return ending.join(lines) if rnd.random() < 0.5 else text[:where] + text[where:].replace("\n", ending, 1)
    return "\n".join(lines)


def mutants() -> list[bytes]:
    rnd = random.Random(SEED)
    bases = [data.decode("utf-8", "surrogateescape") for name, data in sorted(CARDS.items()) if len(data) < 8000]
    bases.append(embedding_card(3000, seed=7).decode())
    out = []
    for _ in range(MUTANTS):
        text = rnd.choice(bases)
        for _ in range(rnd.randint(1, 3)):
            text = mutate(rnd, text)
        out.append(text.encode("utf-8", "surrogateescape"))
    return out


MUTANT_CARDS = mutants()


def test_mutated_cards_read_as_the_hub_reads_them(readme: Path) -> None:
    problems = [(i, why) for i, data in enumerate(MUTANT_CARDS) if (why := disagreement(data, readme))]
    assert problems == []


def test_the_mutants_reach_every_verdict(readme: Path) -> None:
    # A mutation set that only ever breaks the YAML would compare nothing.
    kinds: dict[str, int] = {}
    for data in MUTANT_CARDS:
        facts = read_card(data)
        kind = facts.problem.split(":")[0] if isinstance(facts, Finding) else (
            "dropped model-index" if facts.malformed else "results" if facts.results else "no results")
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds["results"] > 300 and kinds["dropped model-index"] > 300 and kinds["no results"] > 300
    assert kinds["model card front matter is not valid YAML"] > 300 and kinds["model card has no YAML front matter"] > 300
    assert kinds[LINE_ENDINGS] > 100


def same_reading(data: bytes) -> str:
    facts = read_card(data)
    return repr(facts) if isinstance(facts, Finding) else repr((ours(facts), facts.metadata))


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML was built without libyaml")
def test_libyaml_path_reads_every_card_as_the_pure_python_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks over 64 KiB are tokenised by libyaml; run every card and mutant through that path to compare.
    cards = [*CARDS.values(), *MUTANT_CARDS]
    pure = [same_reading(data) for data in cards]
    monkeypatch.setattr(model_card, "LIBYAML_FROM_BYTES", -1)
    fast = [same_reading(data) for data in cards]
    assert [i for i, (a, b) in enumerate(zip(pure, fast, strict=True)) if a != b] == []


def test_deliberate_budget_differences(readme: Path) -> None:
    # Each is read by the Hub and refused here, with the budget's own message.
    deep = b"---\nlicense: mit\ndeep: " + b"[" * 70 + b"]" * 70 + b"\n---\n"
    loop = b"---\nlicense: mit\nloop: &loop [*loop]\n---\n"
    large = b"---\nlicense: mit\ndescription: " + b"x" * (1024 * 1024) + b"\n---\n"
    laughs = b"---\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" + (
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n---\n")
    nul = b"---\nlicense: mit\n---\n# Model\x00\n"
    for data, reason in [(deep, "budget"), (loop, "budget"), (large, "budget"), (laughs, "budget"), (nul, "NUL")]:
        readme.write_bytes(data)
        facts = read_card(data)
        assert isinstance(facts, Finding) and deliberate(data, readme, facts) == reason
        assert hub_reading(readme).kind == "read"


def test_the_big_cards_are_compared_too(readme: Path) -> None:
    for data in (embedding_card(300_000, seed=3), TEXT_CLASSIFIER.replace(b"\n", b"\r\n"), OPEN_LLM):
        assert disagreement(data, readme) is None
