"""The demo behind ``./install.sh --demo``: gitea-hf-hook's main job, end to end, in a sandbox folder.

It lays out a Gitea server's disk as the tests do (``tests/support/gitea_server.py``: repositories with Gitea's
dispatcher hooks, the LFS store, Gitea's environment for each push), starts the Hub emulator and the stand-in for
Gitea's API, installs our hooks, and then runs real ``git push`` commands, the real worker and the real
``huggingface_hub`` client, printing each command with its output.
"""
