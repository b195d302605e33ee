"""The pre-receive entry point that hooks installed by release 0.1 import.

Kept for one release, so a server that upgrades the package before running ``gitea-hf-hook install`` again keeps
handling pushes. Hooks written by this release import :mod:`gitea_hf_hook.push.pre_receive` directly.
"""

from .push.pre_receive import main

__all__ = ["main"]
