"""The privilege line, kept by the imports: what runs inside ``git push`` never reaches the code that holds the
Hub tokens, and the reverse. Every import counts, the lazy ones inside functions included."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gitea_hf_hook"
SHARED = ("config", "gitea", "spool", "checks")
ABOVE_SHARED = ("push", "worker", "admin", "hub_emulator")
THIRD_PARTY_OFF_THE_PUSH_PATH = ("huggingface_hub", "click", "filelock", "httpx", "httpx2")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it, as absolute names."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            # "from . import git" imports the module gitea_hf_hook.<package>.git
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def ours(name: str) -> str | None:
    """The top-level part of the package ``name`` lies in (``push``, ``errors``...), or None if not ours."""
    parts = name.split(".")
    return parts[1] if parts[0] == "gitea_hf_hook" and len(parts) > 1 else None


def part_of(module: str) -> str:
    return ours(module) or ""


def offences(allowed: Callable[[str, str], bool], modules: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} imports {i}" for m, found in modules.items() for i in found if not allowed(m, i))


def in_part(*parts: str) -> dict[str, set[str]]:
    return {m: found for m, found in MODULES.items() if part_of(m) in parts}


def test_the_walk_sees_lazy_imports() -> None:
    # worker/loop.py imports the publisher inside a function, and that must count.
    assert "gitea_hf_hook.worker.publish" in MODULES["gitea_hf_hook.worker.loop"]


def test_push_time_code_never_imports_the_worker_the_commands_the_emulator_claims_or_the_hub_client() -> None:
    def allowed(_module: str, name: str) -> bool:
        return (ours(name) not in ("worker", "admin", "hub_emulator") and name != "gitea_hf_hook.spool.claims"
                and name.split(".")[0] not in THIRD_PARTY_OFF_THE_PUSH_PATH)

    assert offences(allowed, in_part("push")) == []


def test_the_worker_never_imports_push_time_code() -> None:
    assert offences(lambda _m, name: ours(name) != "push", in_part("worker")) == []


@pytest.mark.parametrize("layer", SHARED)
def test_the_shared_layers_import_nothing_above_them(layer: str) -> None:
    assert offences(lambda _m, name: ours(name) not in ABOVE_SHARED, in_part(layer)) == []


def test_the_shared_layers_keep_the_hub_client_filelock_and_click_out_except_for_claims() -> None:
    def allowed(module: str, name: str) -> bool:
        top = name.split(".")[0]
        return top not in THIRD_PARTY_OFF_THE_PUSH_PATH or (module, top) == ("gitea_hf_hook.spool.claims", "filelock")

    assert offences(allowed, in_part(*SHARED)) == []


def test_the_hub_emulator_imports_nothing_of_ours() -> None:
    def allowed(_module: str, name: str) -> bool:
        return ours(name) in (None, "hub_emulator")

    assert offences(allowed, in_part("hub_emulator")) == []


def test_the_entry_points_of_the_previous_release_lead_to_push_time_code_alone() -> None:
    for old in ("gitea_hf_hook.pre_receive", "gitea_hf_hook.post_receive"):
        assert {ours(name) for name in MODULES[old]} == {"push"}


def test_every_package_init_on_the_push_path_is_empty() -> None:
    # checks/scanners/__init__.py is a module of its own: the scanners' shared Finding record.
    for folder in ("", "config", "gitea", "spool", "checks", "push"):
        assert (PACKAGE / folder / "__init__.py").read_text() == "", folder
