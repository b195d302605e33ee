"""Reading a token from the file the config names: one token on the first line, read at each use.

Read at each use, so that a rotated token needs no restart. The token itself never appears in a message.
"""

from __future__ import annotations

import os
import re

from ..errors import PublishError

_WORD = re.compile(r"[\x21-\x7e]+")  # one word of printable ASCII: anything else cannot go in a header


def read(path: str, key: str, *, kind: str, hint: str) -> str:
    """The token in ``path``, which the config key ``key`` names (``kind``: "Hub token file"...); raises
    PublishError with the fix (``hint`` for an empty or missing file)."""
    named = f"the {kind} {path}, named by {key},"
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        raise PublishError(f"{named} does not exist", hint) from None
    except PermissionError:
        import pwd

        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = str(os.geteuid())
        raise PublishError(f"the worker, running as {user}, may not read the {kind} {path}, named by {key}",
                           f"make {user} its owner with mode 0600: chown {user} {path} && chmod 600 {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise PublishError(f"cannot read the {kind} {path}, named by {key}: {why}",
                           "check the path in the config, and that the file holds one token") from None
    if not lines:
        raise PublishError(f"{named} is empty", hint)
    if not _WORD.fullmatch(lines[0]):
        # Said without quoting the line: it is the token, or most of it.
        raise PublishError(f"{named} does not start with a token: its first line holds spaces or characters other "
                           "than printable ASCII", "write the token alone on the first line")
    return lines[0]
