"""``demo/run [--dir DIR]``: make the sandbox, tell the story, stop what it started, say where everything is."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path


def _sandbox_folder(given: str | None) -> Path:
    """A new folder only the demo's user may enter: the worker refuses folders others could change."""
    if given is None:
        return Path(tempfile.mkdtemp(prefix="gitea-hf-hook-demo-"))
    folder = Path(given).absolute()
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        sys.exit(f"demo: {folder} already exists (name a new folder with --dir, or leave --dir out for a temp one)")
    except OSError as exc:
        sys.exit(f"demo: cannot create {folder} ({exc.strerror}; its parent folder must exist and be writable)")
    return folder


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="demo/run", description="gitea-hf-hook end to end, in a sandbox folder.")
    parser.add_argument("--dir", metavar="DIR", help="the sandbox folder, created by the demo (default: a new "
                        "folder in the system's temp folder)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # in order with the commands' output
    os.umask(0o022)  # the worker refuses a config or spool that its group or others may write
    base = _sandbox_folder(args.dir)
    # Stopped by a signal, the demo still stops the emulator it started (a SystemExit runs the finally below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    from .sandbox import isolate

    isolate(base)  # before huggingface_hub is imported: it reads its settings once, at import time

    from . import story
    from .sandbox import program, start

    print(f"gitea-hf-hook demo, in {base}")
    print(f"(gitea-hf-hook below is {shlex.join(program())})")
    sandbox = start(base)
    try:
        story.setup(sandbox)
        story.non_publisher(sandbox)
        work = story.bad_content(sandbox)
        commit, weights = story.valid_push(sandbox, work)
        story.worker(sandbox, commit)
        story.on_the_hub(sandbox, weights)
        story.operations(sandbox)
    except (story.DemoError, KeyboardInterrupt) as exc:
        why = str(exc) if isinstance(exc, story.DemoError) else "interrupted"
        print(f"demo: {why}; the sandbox stays in {base} (rm -rf {base} removes it)", file=sys.stderr)
        return 1 if isinstance(exc, story.DemoError) else 130
    finally:
        sandbox.stop()
    story.closing(sandbox)
    return 0
