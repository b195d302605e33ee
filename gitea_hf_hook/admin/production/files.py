"""Folders and files the installer makes, each recorded in the manifest, and each left alone when already right.

Only root runs this, in folders root or the admin chose (the prefix, /etc, /var/lib, the unit folder): never
inside the repositories, where Gitea's user could plant links; the package's own ``install`` goes there.
"""

from __future__ import annotations

import os
import shutil
import stat

from .manifest import Manifest, digest


def make_folder(path: str, manifest: Manifest, *, uid: int = 0, gid: int = 0, mode: int = 0o755) -> bool:
    """Create ``path`` with this owner and mode, and any missing folder above it as root's with mode 0755, each
    recorded as made by the installer; False when ``path`` was already there (it is then left as it is)."""
    if os.path.isdir(path):
        return False
    parent = os.path.dirname(path)
    if parent != path:
        make_folder(parent, manifest)
    os.mkdir(path)
    os.chown(path, uid, gid)
    os.chmod(path, mode)  # after chown, which may clear set-id bits, and past the umask
    manifest.add_folder(path)
    return True


def write_file(path: str, text: str, manifest: Manifest, *, uid: int = 0, gid: int = 0, mode: int = 0o644) -> bool:
    """Write ``path`` (atomically) unless it already holds ``text`` with this owner and mode; records it, with
    the digest of what was written. True when it wrote."""
    data = text.encode()
    try:
        st = os.lstat(path)
        with open(path, "rb") as f:
            same = (stat.S_ISREG(st.st_mode) and f.read() == data and (st.st_uid, st.st_gid) == (uid, gid)
                    and stat.S_IMODE(st.st_mode) == mode)
    except FileNotFoundError:
        same = False
    manifest.files[path] = digest(data)
    if same:
        return False
    make_folder(os.path.dirname(path), manifest)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchown(f.fileno(), uid, gid)
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return True


def file_digest(path: str) -> str | None:
    """The digest of a regular file, or None when there is none."""
    try:
        with open(path, "rb") as f:
            return digest(f.read())
    except (FileNotFoundError, IsADirectoryError):
        return None


def owners_and_modes(path: str) -> dict[str, tuple[int, int, int]]:
    """Owner, group and mode of ``path`` and of every folder below it, to tell whether a step changed any."""
    found = {}
    for folder, dirs, _files in os.walk(path):
        for entry in [folder] + [os.path.join(folder, d) for d in dirs]:
            st = os.lstat(entry)
            found[entry] = (st.st_uid, st.st_gid, st.st_mode)
    return found


def holds_files(path: str) -> int:
    """How many entries other than folders and empty files lie below ``path``: an empty file holds nothing of
    anyone's (the audit log install creates before any record, a lock file)."""
    def data(name: str) -> bool:
        info = os.lstat(name)
        return not stat.S_ISREG(info.st_mode) or info.st_size > 0

    return sum(data(os.path.join(folder, name)) for folder, _dirs, files in os.walk(path) for name in files)


def remove_tree(path: str) -> bool:
    """Remove ``path`` and everything below it, following no link; False when it was not there."""
    if not os.path.lexists(path):
        return False
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)
    return True
