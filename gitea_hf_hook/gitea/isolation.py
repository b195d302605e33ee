"""What confines the worker's git processes: an environment built from scratch, and command-line settings that
outrank every configuration file a repository can bring.

The repositories and their ``config`` files are written by Gitea's user, and the worker that reads them holds
the Hub tokens. So nothing a repository configures may make the worker's git start a program or open a
connection. Imported only by ``git.confined()``: the hooks never pay for it.

Settings given with ``-c`` belong to the "command" scope, which git reads after the system, global, repository
and worktree files (git-config(1), SCOPES); a key with one value takes the last one read, so each value below
wins over whatever the repository says, in its own file or in a file it includes. A key holding a command is
set to the empty string where git documents no "off" value: git then fails to start the empty command before
it forks, so nothing runs.

What ``-c`` cannot reach, and why the git commands of ``git.py`` still run nothing when a repository sets it:

- ``include.path`` and ``includeIf.<condition>.path``: an include only adds values where it appears, inside the
  repository's scope; the command scope is still read last.
- ``extensions.*`` (``extensions.partialClone`` among them): read from the repository's own file when git opens
  it. A partial clone fetches missing objects from its promisor remote, and so does any ``remote.<name>.promisor``
  even without the extension: ``GIT_NO_LAZY_FETCH`` stops that fetch, ``GIT_ALLOW_PROTOCOL`` any transport.
- Keys under a name the repository chooses: ``remote.<name>.url``, ``.uploadpack``, ``.receivepack``, ``.vcs``,
  ``.proxy``, ``url.<base>.insteadOf``, ``http.<url>.*``, ``protocol.<name>.allow`` for a helper we cannot name.
  Only a transport reads them, and the environment allows none (see ``ENVIRONMENT``).
- ``core.gitProxy``: the first match wins, not the last, so ours only covers hosts the repository's own entries
  do not name. The git transport it serves is never allowed.
- Drivers chosen by attributes (``$GIT_DIR/info/attributes`` belongs to the repository): ``filter.<driver>.clean``,
  ``.smudge``, ``.process``, ``diff.<driver>.command``, ``.textconv``, ``merge.<driver>.driver``. Only commands
  that convert or diff file content run them: ``cat-file --filters``/``--textconv``, ``diff -p``, checkout,
  merge. We run ``cat-file --batch``/``--batch-check``, ``cat-file commit``, ``ls-tree``, ``diff-tree -r``
  without a patch, ``merge-base``, ``rev-list``, ``rev-parse`` and ``for-each-ref``.
- ``pager.<cmd>``: ``--no-pager`` (see ``ARGUMENTS``) turns every pager off.
- ``alias.*``: an alias never replaces a built-in command, and we run built-ins only.
- Porcelain we never run: ``difftool.<tool>.cmd``, ``mergetool.<tool>.cmd``, ``guitool.<name>.cmd``,
  ``browser.<tool>.cmd``, ``man.<tool>.cmd``, ``trailer.<token>.command``, ``tar.<format>.command``,
  ``submodule.<name>.update``, ``interactive.diffFilter``, ``sendemail.*``, ``imap.*``, ``instaweb.*``, and the
  config-defined hooks (``hook.<name>.command``) of newer git, which only porcelain and receive-pack run.
- ``trace2.*`` is read from the system and global files only; ``uploadpack.packObjectsHook`` and
  ``safe.directory`` from those and the command line. A repository cannot set them, and here no system or
  global file is read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Every configuration key, under a name of its own, that can make git start a program or open a connection,
# with the value that turns it off. Grouped by the section of git-config(1) (Documentation/config/<section>.txt)
# that documents them.
OVERRIDES: tuple[tuple[str, str], ...] = (
    # core.txt: programs git itself starts.
    ("core.fsmonitor", "false"),  # a hook pathname, or the built-in daemon, asked before the index is read
    ("core.hooksPath", "/dev/null"),  # no hook can live under /dev/null
    ("core.sshCommand", ""),  # in place of ssh
    ("core.gitProxy", "none"),  # first match wins: see the module docstring
    ("core.askPass", ""),  # an empty helper is skipped, and GIT_TERMINAL_PROMPT=0 forbids the terminal
    ("core.pager", "cat"),  # "cat" means no pager at all
    ("core.editor", ":"),  # ":" is the editor that does nothing, without a process
    ("core.alternateRefsCommand", ""),  # run to list an alternate's refs during fetch and receive-pack
    ("core.attributesFile", "/dev/null"),  # attributes choose the filter and diff drivers, which are programs
    # attr.txt (newer git): attributes read from a tree; a value that names no tree means an empty one.
    ("attr.tree", ""),
    # sequencer.txt
    ("sequence.editor", ":"),
    # credential.txt: an empty helper resets the list of helpers, dropping every one set before it.
    ("credential.helper", ""),
    # diff.txt: the external diff of porcelain diff and log -p.
    ("diff.external", ""),
    # gpg.txt: the programs that sign and verify, and the command that picks the ssh key.
    ("gpg.program", ""),
    ("gpg.openpgp.program", ""),
    ("gpg.x509.program", ""),
    ("gpg.ssh.program", ""),
    ("gpg.ssh.defaultKeyCommand", ""),
    # log.txt, merge.txt, commit.txt, tag.txt, push.txt: what would call those programs unasked.
    ("log.showSignature", "false"),
    ("merge.verifySignatures", "false"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("tag.forceSignAnnotated", "false"),
    ("push.gpgSign", "false"),
    # protocol.txt: no transport at all. A protocol's own policy outranks protocol.allow, so each name git uses
    # is closed as well; GIT_ALLOW_PROTOCOL in the environment closes the names no list can hold.
    ("protocol.allow", "never"),
    *((f"protocol.{name}.allow", "never") for name in ("file", "git", "ssh", "http", "https", "ftp", "ftps",
                                                        "ext", "fd")),
    # fetch.txt, submodule.txt, push.txt, transfer.txt: commands that would start fetches of their own.
    ("fetch.recurseSubmodules", "false"),
    ("submodule.recurse", "false"),
    ("push.recurseSubmodules", "no"),
    ("transfer.bundleURI", "false"),
    # uploadpack.txt: the program upload-pack runs instead of pack-objects.
    ("uploadpack.packObjectsHook", ""),
    # gc.txt, maintenance.txt: background work after a command, with its own hooks and processes.
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
)

# Global options first, then the settings: what every confined git command line starts with. The repository's
# own folder comes last, per call, as ``safe.directory`` (see ``git._spawn``).
ARGUMENTS: tuple[str, ...] = ("--no-pager", *(arg for key, value in OVERRIDES for arg in ("-c", f"{key}={value}")))

# The plumbing the worker runs, the only git commands run while confined: none of them converts content through a
# driver the repository's attributes choose, which no setting can turn off (diff, log -p, show, archive can).
PLUMBING = frozenset(("cat-file", "ls-tree", "diff-tree", "merge-base", "rev-list", "rev-parse", "for-each-ref"))
CONVERTING_OPTIONS = frozenset(("--filters", "--textconv", "--ext-diff", "-p", "--patch"))

# The whole environment of a confined git process, apart from PATH. Nothing else is inherited: no GIT_* variable
# (GIT_DIR, GIT_CONFIG_PARAMETERS, GIT_SSH_COMMAND, GIT_ASKPASS, GIT_EXTERNAL_DIFF, GIT_PAGER, GIT_EDITOR,
# GIT_TRACE*...), no PAGER, EDITOR, VISUAL, SSH_ASKPASS, XDG_CONFIG_HOME, proxy or loader variables.
ENVIRONMENT: dict[str, str] = {
    # Defence in depth: the worker checks that its home is its own, but git and its helpers read files under
    # HOME even with no global config (~ in configured paths, $HOME/.config/git/attributes, curl's
    # $HOME/.netrc). This folder does not exist and only root could create it.
    "HOME": "/nonexistent",
    "LC_ALL": "C",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",  # neither $HOME/.gitconfig nor $XDG_CONFIG_HOME/git/config
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_NO_REPLACE_OBJECTS": "1",  # refs/replace/ must not change what an object id means
    # A missing object is missing: no fetch from a promisor remote. Honoured by the 2024 security releases on
    # (2.39.5 included); a git older still would try the fetch, and GIT_ALLOW_PROTOCOL would stop its transport.
    "GIT_NO_LAZY_FETCH": "1",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_PROTOCOL_FROM_USER": "0",
    # An empty list of allowed protocols "overrides any existing configuration" (git(1)): no transport, whatever
    # protocol.<name>.allow the repository sets for a remote helper installed on this machine.
    "GIT_ALLOW_PROTOCOL": "",
}


def environment(inherited: Mapping[str, str]) -> dict[str, str]:
    """The environment of a confined git process: ``ENVIRONMENT`` and ``inherited``'s PATH, nothing else of it."""
    return {"PATH": inherited.get("PATH", os.defpath), **ENVIRONMENT}
