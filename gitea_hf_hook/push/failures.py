"""Where the hooks put what went wrong: a traceback in the hook log, and one line for the pusher."""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..config.model import Config
    from ..gitea.environment import Push


def log_failure(config: Config | None, push: Push | None, hook: str) -> str:
    """Append the current exception's traceback to the hook log; return where it went."""
    import traceback  # only on this path: importing it costs every push milliseconds

    from ..redact import redact

    candidates = [config.hook_log] if config is not None else []
    candidates.append(os.path.join(os.path.expanduser("~"), "gitea-hf-hook.log"))
    who = f"{push.full_name} pusher={push.pusher or '-'}" if push is not None else os.path.abspath(".")
    record = (f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {hook} {who}\n"
              f"{redact(traceback.format_exc())}")
    for path in candidates:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(record)
            return path
        except OSError:
            continue
    return "the hook log (not writable)"
