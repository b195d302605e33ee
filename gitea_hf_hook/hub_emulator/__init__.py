"""A local, standard-library-only emulator of the Hugging Face Hub HTTP API.

It implements what the unmodified ``huggingface_hub`` client (2.4) uses to create repositories, commit files
(regular and Git LFS, basic and multipart transfers), list trees, refs and commits, manage branches and tags,
and download files, so that publishing can be tested end to end without reaching huggingface.co. The client
must run with ``HF_HUB_DISABLE_XET=1``: the emulator speaks Git LFS, not Xet.

Tests drive faults and read what happened over HTTP, under ``/_emulator/`` (see :mod:`.faults`).

Entry points: :func:`serve` (blocking), :func:`make_server` (bind only), and
``python -m gitea_hf_hook.hub_emulator --port 0 --data DIR --token TOKEN``.
"""

from __future__ import annotations

from .server import Emulator, EmulatorConfig, make_server, serve, server_url

__all__ = ["Emulator", "EmulatorConfig", "make_server", "serve", "server_url"]
