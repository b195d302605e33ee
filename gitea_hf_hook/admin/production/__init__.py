"""The production install behind ``./install.sh``: a virtual environment under a prefix, the worker's user, the
spool, an example config, the hooks, the template directory and the systemd units, with a manifest of what it
made so that ``--uninstall`` removes exactly that.

It runs from the checkout, before the virtual environment exists, under the interpreter that environment is built
from, started with ``-I -S``: these modules import the standard library only. Whatever needs the package itself
(the config, the spool's layout, the hooks) is asked of the environment's own ``gitea-hf-hook``, once it is there.
"""
