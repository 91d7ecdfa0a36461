"""An offline IMAP client that caches the way Thunderbird, Outlook's cache
and phone mail apps do, for the IMAP-cache tests (issue 19).

Stdlib only (imaplib), run by /usr/bin/python3.  Per folder it keeps the
UIDVALIDITY it last saw and the messages it holds by UID (their bodies).
A sync of a folder:
  - SELECTs it (as those clients do; BODY.PEEK keeps \\Seen unchanged),
    or EXAMINEs it (examine=True: K-9 Mail, Thunderbird for Android, which
    then fetch the message list first, K9_LIST_ITEMS, and the bodies after);
  - if the folder's UIDVALIDITY differs from the cached one, throws the
    folder's cache away (RFC 3501 2.3.1.1: the UIDs it holds no longer
    mean anything) and downloads the folder again;
  - else downloads only the UIDs it lacks and forgets the ones the server
    no longer has (expunged).
It keeps each message's flags, keywords and INTERNALDATE too (flags
refreshed at every sync, as those clients do).
It counts, per folder and per sync, what it downloaded, so a test can say
"the laptop downloaded 170 messages of INBOX again".

    c = CacheClient("phone", "127.0.0.1", port, "alice", "secret")
    r = c.sync()                 # every selectable folder
    r = c.sync(["INBOX"])        # only the folders the app opened
    r["INBOX"].downloaded, r["INBOX"].invalidated
    c.port = new_port            # the same account, now on the new server
"""
import os
import re
import sys

import imaplib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fingerprint_ref  # noqa: E402
# the IMAP quoting and LIST parsing of the tests' own Dovecot client
from dovecot import _LIST_RE, _imap_quote as _quote, _imap_unquote as _unquote  # noqa: E402

# What K-9 Mail (and Thunderbird for Android, its successor) fetches for
# its message list: RealImapFolder's FetchProfile ENVELOPE item.
K9_HEADER_FIELDS = ("date subject from content-type to cc reply-to message-id "
                    "references in-reply-to")
K9_LIST_ITEMS = ("(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (%s)])"
                 % K9_HEADER_FIELDS)

_UID_RE = re.compile(rb"\bUID (\d+)")
_FLAGS_RE = re.compile(rb"\bFLAGS \(([^)]*)\)")
_DATE_RE = re.compile(rb'\bINTERNALDATE "([^"]*)"')


class FolderCache:
    """What the client holds of one folder."""

    def __init__(self, uidvalidity):
        self.uidvalidity = uidvalidity
        self.msgs = {}  # uid -> raw bytes
        self.flags = {}  # uid -> frozenset of flags and keywords (no \\Recent)
        self.dates = {}  # uid -> INTERNALDATE as the server wrote it

    def fingerprints(self):
        return {uid: fingerprint_ref.fingerprint(raw)[0] for uid, raw in self.msgs.items()}


class FolderSync:
    """What one sync of one folder did."""

    def __init__(self, folder, uidvalidity):
        self.folder = folder
        self.uidvalidity = uidvalidity
        self.invalidated = None  # the UIDVALIDITY it threw away, or None
        self.downloaded = 0
        self.forgotten = 0  # cached UIDs the server no longer has
        self.new_fingerprints = []  # fingerprints of what it downloaded
        self.uids = []  # the folder's UIDs on the server
        self.had_before = set()  # fingerprints cached before this sync

    def redownloaded(self):
        """Downloaded messages the client already had before this sync
        (in this folder): the waste issue 19 is about."""
        return [fp for fp in self.new_fingerprints if fp in self.had_before]

    def __repr__(self):
        return "<%s: uidvalidity %s, downloaded %d%s>" % (
            self.folder, self.uidvalidity, self.downloaded,
            ", cache dropped (was %d)" % self.invalidated if self.invalidated else "")


class CacheClient:
    def __init__(self, name, host, port, user, password, timeout=60, examine=False):
        self.name = name
        # open folders read-only (EXAMINE), as K-9 Mail / Thunderbird for
        # Android do when they sync; SELECT otherwise (Thunderbird, mbsync)
        self.examine = examine
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.timeout = timeout
        self.folders = {}  # name -> FolderCache
        self.history = []  # every sync's {folder: FolderSync}

    # ------------------------------------------------------------ server
    def _connect(self):
        c = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
        try:
            c.login(self.user, self.password)
        except BaseException:
            c.shutdown()
            raise
        return c

    @staticmethod
    def list_folders(conn):
        """Selectable folder names the server LISTs."""
        typ, data = conn.list('""', "*")
        if typ != "OK":
            raise imaplib.IMAP4.error("LIST failed: %r" % data)
        out = []
        for line in data:
            if line is None:
                continue
            if isinstance(line, tuple):  # a literal name
                line = line[0] + b'"' + line[1] + b'"'
            m = _LIST_RE.match(line.decode("utf-8", "replace"))
            if not m:
                continue
            flags = m.group("flags").lower().split()
            if "\\noselect" in flags or "\\nonexistent" in flags:
                continue
            out.append(_unquote(m.group("name")))
        return sorted(out)

    def _server_uids(self, conn):
        typ, data = conn.uid("SEARCH", None, "ALL")
        if typ != "OK":
            raise imaplib.IMAP4.error("UID SEARCH failed: %r" % data)
        return {int(x) for x in b" ".join(d for d in data if d).split()}

    def _fetch(self, conn, uids, items="(UID FLAGS INTERNALDATE BODY.PEEK[])"):
        """{uid: (raw or None, flags, internaldate or None)} of uids, a
        chunk at a time."""
        out = {}
        uids = sorted(uids)
        for i in range(0, len(uids), 200):
            chunk = ",".join(str(u) for u in uids[i:i + 200])
            typ, data = conn.uid("FETCH", chunk, items)
            if typ != "OK":
                raise imaplib.IMAP4.error("UID FETCH failed: %r" % data)
            for item in data:
                head, raw = (item[0], item[1]) if isinstance(item, tuple) else (item, None)
                if not isinstance(head, bytes):
                    continue
                m = _UID_RE.search(head)
                if not m:
                    continue
                f = _FLAGS_RE.search(head)
                d = _DATE_RE.search(head)
                flags = frozenset(x for x in (f.group(1).decode().split() if f else ())
                                  if x != "\\Recent")
                out[int(m.group(1))] = (raw, flags, d.group(1).decode() if d else None)
        return out

    # ------------------------------------------------------------ sync
    def sync_folder(self, conn, folder):
        typ, data = conn.select(_quote(folder), readonly=self.examine)
        if typ != "OK":
            raise imaplib.IMAP4.error("SELECT %s failed: %r" % (folder, data))
        uv = int(conn.untagged_responses.get("UIDVALIDITY", [b"0"])[-1])
        res = FolderSync(folder, uv)
        cache = self.folders.get(folder)
        if cache is not None:
            res.had_before = set(cache.fingerprints().values())
        if cache is not None and cache.uidvalidity != uv:
            res.invalidated = cache.uidvalidity
            cache = None
        if cache is None:
            cache = self.folders[folder] = FolderCache(uv)
        on_server = self._server_uids(conn)
        res.uids = sorted(on_server)
        for uid in set(cache.msgs) - on_server:
            del cache.msgs[uid]
            res.forgotten += 1
        # flag changes of what it has (cheap: no bodies), then the new mail
        if cache.msgs:
            for uid, (_, flags, _) in self._fetch(conn, cache.msgs, "(UID FLAGS)").items():
                cache.flags[uid] = flags
        for uid in set(cache.flags) - set(cache.msgs):
            cache.flags.pop(uid, None)
            cache.dates.pop(uid, None)
        new = on_server - set(cache.msgs)
        if self.examine and new:
            # the list first (what the app shows), as K-9 does
            self._fetch(conn, new, K9_LIST_ITEMS)
        got = self._fetch(conn, new)
        for uid, (raw, flags, date) in sorted(got.items()):
            cache.msgs[uid] = raw
            cache.flags[uid] = flags
            cache.dates[uid] = date
            res.new_fingerprints.append(fingerprint_ref.fingerprint(raw)[0])
        res.downloaded = len(got)
        conn.close()
        return res

    def store_flags(self, folder, uid, flags):
        """What the user does on the device: add flags (and keywords) to
        a cached message; the server and the cache both get them."""
        conn = self._connect()
        try:
            conn.select(_quote(folder))
            typ, data = conn.uid("STORE", str(uid), "+FLAGS.SILENT", "(%s)" % " ".join(flags))
            if typ != "OK":
                raise imaplib.IMAP4.error("UID STORE failed: %r" % data)
            cache = self.folders[folder]
            cache.flags[uid] = cache.flags.get(uid, frozenset()) | frozenset(flags)
            conn.close()
        finally:
            try:
                conn.logout()
            except (OSError, imaplib.IMAP4.error):
                pass

    def sync(self, folders=None):
        """Sync folders (default: every selectable folder the server
        lists; cached folders it no longer lists are dropped, as
        Thunderbird does on folder discovery).  Returns {folder: FolderSync}."""
        conn = self._connect()
        try:
            listed = self.list_folders(conn)
            if folders is None:
                for gone in set(self.folders) - set(listed):
                    del self.folders[gone]
                folders = listed
            out = {}
            for f in folders:
                out[f] = self.sync_folder(conn, f)
        finally:
            try:
                conn.logout()
            except (OSError, imaplib.IMAP4.error):
                pass
        self.history.append(out)
        return out

    # ------------------------------------------------------------ cache
    def cached(self, folder):
        """(uidvalidity, {uid: fingerprint}) the client holds of folder."""
        c = self.folders[folder]
        return c.uidvalidity, c.fingerprints()

    def cached_meta(self, folder):
        """{fingerprint: [(flags, internaldate)]} of what it holds of folder."""
        c = self.folders[folder]
        out = {}
        for uid, fp in c.fingerprints().items():
            out.setdefault(fp, []).append((c.flags.get(uid), c.dates.get(uid)))
        return out

    def total(self):
        return sum(len(c.msgs) for c in self.folders.values())
