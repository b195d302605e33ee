"""gitea-hf-hook: publish Gitea repositories to the Hugging Face Hub from server-side git hooks.

The package has two paths. The push-time path (``pre_receive``, ``post_receive``, ``config``, ``gitea``,
``git``, ``lfs``, ``globs``, ``policy``, ``content``, ``scanners``, ``report``, ``queueing``, ``spool``) runs
inside ``git push`` and imports only the standard library and PyYAML. The worker path (``spool``, ``worker``, ``publish``, ``hub_emulator``, ``cli``) may import anything.
"""

__version__ = "0.1.0"
