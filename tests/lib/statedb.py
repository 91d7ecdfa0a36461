"""The tests' own connection to a SQLite state store that Dovecot's mail
processes, doveadm or the milter may be using at the same moment.

The tests run as root; the store's processes do not.  A WAL database's
-wal and -shm files are made by the first connection that needs them, and
SQLite, when that is root, creates them owned by root and gives them to
the database file's owner a moment later (fchown).  A mail process
opening the store inside that moment gets "unable to open database file
(Permission denied)" and postpones its merge: the Dovecot 2.4 run of
test_merge_imap_uids_hostile lost a merge so, its poll connecting every
2 ms while doveadm made the store.

connect() therefore opens the store, and reads it once (which opens the
-wal and -shm files, kept open until close()), under the file system
identity of the database file's owner: setfsuid() and setfsgid() act on
the calling thread alone, so the test's other threads stay root.  Files
SQLite makes then are the owner's from the start."""

import contextlib
import ctypes
import os
import sqlite3
import urllib.parse

_libc = ctypes.CDLL(None)


def _made(path):
    """The store has its header: every program of backfill switches a new
    file to WAL mode before it writes anything else (shared/
    state-sqlite.c).  Known by its size, without opening the file: closing
    any descriptor of it would drop the POSIX locks that this process's
    other SQLite connections hold on it."""
    try:
        return os.stat(path).st_size > 0
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _files_as(uid, gid):
    """This thread creates and opens files as uid:gid meanwhile."""
    old_gid = _libc.setfsgid(gid)
    old_uid = _libc.setfsuid(uid)
    try:
        # both calls say nothing of a failure: an invalid id (-1) changes
        # nothing and returns the current one
        if (_libc.setfsuid(-1), _libc.setfsgid(-1)) != (uid, gid):
            raise OSError("setfsuid/setfsgid to %d:%d refused (not root?)" % (uid, gid))
        yield
    finally:
        _libc.setfsuid(old_uid)
        _libc.setfsgid(old_gid)


def connect(path, readonly=False, pragmas=(), **kw):
    """sqlite3.connect() to the state store at path (a file path, not a
    URI), safe beside the store's own processes.  readonly opens it
    mode=ro.  A missing store is not made here (it would be root's):
    sqlite3.OperationalError, as for a busy one, so that a poll tries
    again.

    A store that exists but has no header yet is being made by a process
    right now (it switches the new file to WAL before anything else):
    OperationalError too.  Connected before the switch, SQLite
    would open the -wal and -shm files at a later read, as root.

    pragmas run before that first read (PRAGMA locking_mode = EXCLUSIVE
    acts only if it comes first)."""
    if not os.path.exists(path):
        raise sqlite3.OperationalError("%s: no state store yet" % path)
    if not _made(path):
        raise sqlite3.OperationalError("%s: no header yet (being made)" % path)
    st = os.stat(path)
    uri = "file:%s?mode=%s" % (urllib.parse.quote(path), "ro" if readonly else "rw")
    with _files_as(st.st_uid, st.st_gid):
        db = sqlite3.connect(uri, uri=True, **kw)
        try:
            for pragma in pragmas:
                db.execute(pragma).fetchall()
            db.execute("PRAGMA schema_version").fetchone()
        except BaseException:
            db.close()
            raise
    return db
