"""Deterministic Maildir++ archives and live mailboxes for backfill's tests.

The trees are written the way Dovecot writes them (Maildir++ folders,
`cur/`/`new/`, `S=`/`W=` in file names, `dovecot-uidlist` v3 with
UIDVALIDITY, UID gaps and stored POP3 UIDLs in `P` fields,
`dovecot-keywords`, `subscriptions`, received date = file mtime), then an
"old server" (a private Dovecot without the plugin) serves the archive once
to record what its users saw: flags, keywords, dates, UIDs, UIDVALIDITY and
POP3 UIDLs. The tests compare against that recording, not against what this
module meant to write, so a mistake here shows up as a mismatch instead of
hiding one in the plugin. freeze() then makes the tree root-owned and
read-only, like a restored snapshot.
"""
import base64
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dovecot as dovecot_mod  # noqa: E402
import fingerprint_ref  # noqa: E402

FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R",
                "\\Seen": "S", "\\Deleted": "T"}

_WORDS = ("backup restore invoice meeting server project deadline report "
          "holiday contract budget offer review patch release ticket "
          "customer support quarter minutes agenda draft summary plan "
          "update network storage migration schedule").split()
_NAMES = ("alice bob carol dave erin frank grace heidi ivan judy mallory "
          "niaj olivia peggy rupert sybil trent victor walter").split()


class Msg:
    def __init__(self, raw, flags=(), date=0, pop3_uidl=None, new=False):
        self.raw = raw
        self.flags = set(flags)  # system flags and keywords
        self.date = int(date)
        self.pop3_uidl = pop3_uidl  # stored 'P' UIDL, or None
        self.new = new  # in new/ (not yet seen by a client)
        self.uid = None

    @property
    def fingerprint(self):
        return fingerprint_ref.fingerprint(self.raw)[0]


class Folder:
    def __init__(self, name, uidvalidity, msgs=None, subscribed=True):
        self.name = name  # IMAP name, '.' as separator, "INBOX"
        self.uidvalidity = uidvalidity
        self.msgs = list(msgs or [])
        self.subscribed = subscribed


class Generator:
    """Makes realistic messages, deterministic by seed."""

    def __init__(self, seed, domain="example.net"):
        self.rng = random.Random(seed)
        self.seed = seed
        self.domain = domain
        self.n = 0

    def _addr(self):
        return "%s@%s" % (self.rng.choice(_NAMES), self.rng.choice(
            ("example.org", "example.com", self.domain)))

    def _text(self, lines):
        out = []
        for _ in range(lines):
            out.append(" ".join(self.rng.choice(_WORDS)
                                for _ in range(self.rng.randint(4, 14))))
        return "\n".join(out) + "\n"

    def message(self, date, kind=None, to="user", lines=None):
        """Raw bytes (LF line ends, as Maildir stores them)."""
        self.n += 1
        rng = self.rng
        kind = kind or rng.choice(("plain",) * 6 + ("multipart", "nomsgid"))
        subj = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 6)))
        hdr = [
            "Return-Path: <%s>" % self._addr(),
            "Received: from mx%d.example.org (mx%d.example.org [192.0.2.%d])\n"
            "\tby old-mx.%s (Postfix) with ESMTPS id %X;\n\t%s" % (
                rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 250),
                self.domain, rng.getrandbits(40), _rfc2822(date)),
        ]
        if kind != "nomsgid":
            hdr.append("Message-ID: <%d.%d.%x@example.org>" % (self.seed, self.n,
                                                              rng.getrandbits(32)))
        hdr += ["Date: %s" % _rfc2822(date - rng.randint(1, 600)),
                "From: %s" % self._addr(),
                "To: %s@%s" % (to, self.domain),
                "Subject: %s #%d" % (subj, self.n),
                "MIME-Version: 1.0"]
        nlines = lines if lines is not None else rng.randint(3, 40)
        if kind == "multipart":
            boundary = "=-=b%x=-=" % rng.getrandbits(48)
            blob = rng.randbytes(rng.randint(2000, 12000))
            b64 = base64.encodebytes(blob).decode()
            hdr.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
            body = ("This is a multi-part message in MIME format.\n\n--%s\n"
                    "Content-Type: text/plain; charset=utf-8\n\n%s\n--%s\n"
                    "Content-Type: application/octet-stream; name=\"report-%d.bin\"\n"
                    "Content-Transfer-Encoding: base64\n"
                    "Content-Disposition: attachment; filename=\"report-%d.bin\"\n\n"
                    "%s\n--%s--\n") % (boundary, self._text(nlines), boundary,
                                       self.n, self.n, b64, boundary)
        else:
            hdr.append("Content-Type: text/plain; charset=utf-8")
            body = self._text(nlines)
        return ("\n".join(hdr) + "\n\n" + body).encode()

    def redelivered(self, raw, hop="new-mx"):
        """The same message as it arrived again (secondary MX queue flush):
        new trace headers on top, same fingerprint."""
        extra = ("Delivered-To: user@%s\nReceived: from backup-mx.%s by %s.%s "
                 "(Postfix) id %X\n" % (self.domain, self.domain, hop,
                                        self.domain, self.rng.getrandbits(40)))
        return extra.encode() + raw

    def flags(self, folder="INBOX", keywords=("$Label1", "Work", "$Forwarded")):
        rng = self.rng
        f = set()
        if folder in ("Sent", "Sent Messages"):
            f.add("\\Seen")
        elif folder == "Drafts":
            f.update(("\\Draft", "\\Seen"))
        elif rng.random() < 0.7:
            f.add("\\Seen")
        if rng.random() < 0.15:
            f.add("\\Answered")
        if rng.random() < 0.1:
            f.add("\\Flagged")
        if keywords and rng.random() < 0.2:
            f.add(rng.choice(keywords))
        return f


def _rfc2822(ts):
    import email.utils
    return email.utils.formatdate(ts, localtime=False)


def _vsize(raw):
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n")


def write_maildir(root, folders, host="old-mx", uid_gap=0, unlisted=(),
                  owner=(dovecot_mod.MAIL_UID, dovecot_mod.MAIL_GID)):
    """Write Folders as a Maildir++ tree at root (created).

    uid_gap: every message's UID is preceded by this many unused UIDs
    (expunged earlier). unlisted: (folder name, index) pairs of messages whose
    file is present but not in dovecot-uidlist (a delivery caught mid-way
    by the snapshot): the server gives them the next UIDs."""
    os.makedirs(root, exist_ok=True)
    pid = 4000
    usec = 0
    for folder in folders:
        d = root if folder.name == "INBOX" else os.path.join(root, "." + folder.name)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        if folder.name != "INBOX":
            open(os.path.join(d, "maildirfolder"), "w").close()
        keywords = []
        for m in folder.msgs:
            for f in sorted(m.flags):
                if not f.startswith("\\") and f not in keywords:
                    keywords.append(f)
        if keywords:
            assert len(keywords) <= 26
            with open(os.path.join(d, "dovecot-keywords"), "w") as f:
                f.write("".join("%d %s\n" % (i, k) for i, k in enumerate(keywords)))
        lines = []
        uid = 0
        for i, m in enumerate(folder.msgs):
            pid += 1
            usec = (usec + 7919) % 1000000
            base = "%d.M%dP%d.%s,S=%d,W=%d" % (m.date, usec, pid, host,
                                                len(m.raw), _vsize(m.raw))
            letters = "".join(sorted(FLAG_LETTERS[f] for f in m.flags if f in FLAG_LETTERS))
            letters += "".join(sorted(chr(ord("a") + keywords.index(f))
                                      for f in m.flags if not f.startswith("\\")))
            if m.new:
                path = os.path.join(d, "new", base)
            else:
                path = os.path.join(d, "cur", base + ":2," + letters)
            with open(path, "wb") as f:
                f.write(m.raw)
            os.utime(path, (m.date, m.date))
            if (folder.name, i) in unlisted:
                m.uid = None
                continue
            uid += 1 + uid_gap
            m.uid = uid
            ext = "" if m.pop3_uidl is None else "P%s " % m.pop3_uidl
            lines.append("%d %s:%s\n" % (uid, ext, base))
        with open(os.path.join(d, "dovecot-uidlist"), "w") as f:
            f.write("3 V%d N%d G%032x\n" % (folder.uidvalidity, uid + 1,
                                            folder.uidvalidity * 7919 + len(lines)))
            f.writelines(lines)
    with open(os.path.join(root, "subscriptions"), "w") as f:
        f.write("".join("%s\n" % fo.name for fo in folders
                        if fo.subscribed and fo.name != "INBOX"))
    if owner:
        dovecot_mod.chown_tree(root, *owner)
    return root


def freeze(root):
    """Make a tree look like a restored snapshot: root-owned, read-only."""
    for r, dirs, files in os.walk(root):
        for name in dirs:
            p = os.path.join(r, name)
            os.lchown(p, 0, 0)
            os.chmod(p, 0o755)
        for name in files:
            p = os.path.join(r, name)
            os.lchown(p, 0, 0)
            os.chmod(p, 0o644)
    os.chown(root, 0, 0)
    os.chmod(root, 0o755)


def thaw(root):
    dovecot_mod.chown_tree(root)


class OldView:
    """What the old server showed a user: snapshot() of every folder and the
    POP3 UIDL list of INBOX as [(uidl, fingerprint)]."""

    def __init__(self, snapshot, uidls):
        self.snapshot = snapshot
        self.uidls = uidls

    def messages(self):
        return [m for _, (uv, msgs) in sorted(self.snapshot.items()) for m in msgs]


def record_old_server(home, user="user", keep_running=False):
    """Serve the Maildir at home/Maildir with a plain Dovecot (the old
    server: no plugin, no auto-created folders, POP3 RETR does not set
    \\Seen) and record what the user saw. Leaves Dovecot's index files in
    the tree, as a snapshot of the old server would have them."""
    dc = dovecot_mod.Dovecot(name="old", auto_mailboxes="no", username_chars="",
                             extra_conf="pop3_no_flag_updates = yes\n")
    dc.add_user(user, home=home)
    try:
        dc.start()
        snap = dc.snapshot(user)
        uidls = dc.pop3_uidls(user)
        dc.assert_log_clean()
    finally:
        if not keep_running:
            dc.stop()
            dc.cleanup()
    return OldView(snap, uidls)


def copy_tree(src, dst):
    """cp -a (keeps owners, modes, mtimes)."""
    if os.path.exists(dst):
        shutil.rmtree(dst)
    import subprocess
    subprocess.run(["cp", "-a", src, dst], check=True)
    return dst


# ---------------------------------------------------------------- scenarios
class Scenario:
    """An archive and a live mailbox of one user, with the interesting
    messages named so tests can look for them."""

    def __init__(self):
        self.archive = []  # [Folder]
        self.live = []  # [Folder]
        self.named = {}  # name -> raw (archive form)
        self.archive_uid_gap = 0  # UIDs expunged before each archived one


def standard_scenario(seed=1):
    """Small but covers every case of issue 3 tests 1-4:
    - archive: INBOX (stored 'P' UIDLs for some, none for others, two
      identical copies of one message, multipart, two in new/), "Sent
      Messages" (\\Sent under another name than the live "Sent"), Drafts,
      Trash, Work and nested Work.Projects (missing in live), keywords;
    - live: INBOX with new mail and redelivered copies of archived mail, Sent,
      one message present in two live folders (Work.Projects and Trash) and
      once in the archive INBOX, another present in live Trash only."""
    g = Generator(seed)
    old = 1500000000 + seed * 86400
    s = Scenario()
    inbox = Folder("INBOX", 1400000000 + seed)
    for i in range(24):
        kind = "multipart" if i in (3, 11) else ("nomsgid" if i == 7 else "plain")
        m = Msg(g.message(old + i * 3600, kind=kind), g.flags("INBOX"), old + i * 3600)
        if i % 3 == 0:
            m.pop3_uidl = "UID%d-%d" % (i + 100, 1300000000 + seed)  # migrated from an older server
        inbox.msgs.append(m)
    inbox.msgs[0].flags = {"\\Seen", "\\Answered", "$Label1"}
    inbox.msgs[1].flags = {"\\Flagged", "Work"}
    inbox.msgs[2].flags = set()
    # two identical archived copies (same bytes, flags, date)
    dup = inbox.msgs[5]
    inbox.msgs.append(Msg(dup.raw, dup.flags, dup.date))
    s.named["archive_twice"] = dup.raw
    # not yet seen by a client: new/
    for i in range(2):
        inbox.msgs.append(Msg(g.message(old + 30 * 86400 + i), (), old + 30 * 86400 + i, new=True))
    sent = Folder("Sent Messages", 1400000100 + seed)
    for i in range(5):
        sent.msgs.append(Msg(g.message(old + i * 7200 + 60), {"\\Seen"}, old + i * 7200 + 60))
    drafts = Folder("Drafts", 1400000200 + seed)
    for i in range(2):
        drafts.msgs.append(Msg(g.message(old + i * 500), {"\\Draft", "\\Seen"}, old + i * 500))
    trash = Folder("Trash", 1400000300 + seed)
    for i in range(3):
        trash.msgs.append(Msg(g.message(old + i * 900), {"\\Seen", "\\Deleted"} if i == 0 else {"\\Seen"}, old + i * 900))
    work = Folder("Work", 1400000400 + seed, subscribed=False)  # the user had unsubscribed it
    for i in range(3):
        work.msgs.append(Msg(g.message(old + i * 1000), g.flags("Work"), old + i * 1000))
    proj = Folder("Work.Projects", 1400000500 + seed)
    for i in range(6):
        proj.msgs.append(Msg(g.message(old + i * 1100, kind="multipart" if i == 2 else None),
                             g.flags("Work.Projects"), old + i * 1100))
    proj.msgs[0].flags.add("$Forwarded")
    s.archive = [inbox, sent, drafts, trash, work, proj]

    now = 1700000000 + seed * 3600
    live_inbox = Folder("INBOX", 1690000000 + seed)
    for i in range(8):
        live_inbox.msgs.append(Msg(g.message(now + i * 60), g.flags("INBOX"), now + i * 60))
    # redelivered after the incident: archived INBOX #8, #9, #10 and one of
    # the two identical copies (#5 twice in the archive, once live: one added)
    for idx in (8, 9, 10, 5):
        live_inbox.msgs.append(Msg(g.redelivered(inbox.msgs[idx].raw), (), now + 900 + idx))
    s.named["overlap"] = [inbox.msgs[i].raw for i in (8, 9, 10)]
    live_sent = Folder("Sent", 1690000100 + seed)
    for i in range(2):
        live_sent.msgs.append(Msg(g.message(now + i * 300), {"\\Seen"}, now + i * 300))
    # archived INBOX #12 sits live in two folders; archived INBOX #13 only
    # in live Trash: with dedup=mailbox #13 is added to INBOX, with user not.
    live_proj = Folder("Work.Projects", 1690000200 + seed)
    live_proj.msgs.append(Msg(g.redelivered(inbox.msgs[12].raw), {"\\Seen"}, now + 1000))
    live_trash = Folder("Trash", 1690000300 + seed)
    live_trash.msgs.append(Msg(g.redelivered(inbox.msgs[12].raw), {"\\Seen"}, now + 1001))
    live_trash.msgs.append(Msg(g.redelivered(inbox.msgs[13].raw), {"\\Seen"}, now + 1002))
    s.named["live_two_folders"] = inbox.msgs[12].raw
    s.named["live_trash_only"] = inbox.msgs[13].raw
    s.live = [live_inbox, live_sent, live_proj, live_trash,
              Folder("Drafts", 1690000400 + seed), Folder("Junk", 1690000500 + seed)]
    return s


def bulk_scenario(seed, n_archive, n_live, n_overlap, folders=("INBOX", "Sent Messages", "Work", "Work.Projects", "Trash"),
                  lines=None, multipart_share=0.1):
    """A big archive spread over folders (half in INBOX), n_live live INBOX
    messages of which n_overlap are redelivered archived messages."""
    g = Generator(seed)
    s = Scenario()
    old = 1500000000
    arch = {name: Folder(name, 1400000000 + i * 1000 + seed) for i, name in enumerate(folders)}
    weights = [len(folders)] + [1] * (len(folders) - 1)
    names = list(folders)
    for i in range(n_archive):
        name = g.rng.choices(names, weights)[0]
        kind = "multipart" if g.rng.random() < multipart_share else "plain"
        m = Msg(g.message(old + i * 97, kind=kind, lines=lines), g.flags(name), old + i * 97)
        if i % 5 == 0:
            m.pop3_uidl = "UID%d-%d" % (i, 1300000000 + seed)
        arch[name].msgs.append(m)
    s.archive = list(arch.values())
    now = 1700000000
    inbox = Folder("INBOX", 1690000000 + seed)
    pool = [m for m in arch["INBOX"].msgs]
    overlap = g.rng.sample(pool, min(n_overlap, len(pool)))
    for i in range(n_live - len(overlap)):
        inbox.msgs.append(Msg(g.message(now + i * 13, lines=lines), g.flags("INBOX"), now + i * 13))
    for i, m in enumerate(overlap):
        inbox.msgs.append(Msg(g.redelivered(m.raw), (), now + 50000 + i))
    s.live = [inbox, Folder("Sent", 1690000100 + seed)]
    return s


def build_user(base, user, scenario, freeze_archive=True, record=True):
    """Write scenario's archive under base/archive/<user>/Maildir and its
    live mailbox under base/live/<user>/Maildir; record the old server's
    view of the archive; freeze the archive. Returns (archive_home,
    live_home, OldView or None)."""
    arch_home = os.path.join(base, "archive", user)
    live_home = os.path.join(base, "live", user)
    os.makedirs(os.path.join(base, "archive"), exist_ok=True)
    os.makedirs(os.path.join(base, "live"), exist_ok=True)
    os.chmod(base, 0o755)
    write_maildir(os.path.join(arch_home, "Maildir"), scenario.archive,
                  uid_gap=scenario.archive_uid_gap)
    dovecot_mod.chown_tree(arch_home)
    write_maildir(os.path.join(live_home, "Maildir"), scenario.live, host="new-mx")
    dovecot_mod.chown_tree(live_home)
    view = record_old_server(arch_home, user) if record else None
    if freeze_archive:
        freeze(arch_home)
    return arch_home, live_home, view


def main(argv=None):
    """Write a scenario for a demo or by hand:
    maildir_gen.py OUT USER [--bulk N_ARCHIVE N_LIVE N_OVERLAP] [--seed S]
    gives OUT/archive/USER/Maildir (frozen) and OUT/live/USER/Maildir."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("out")
    ap.add_argument("user")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bulk", type=int, nargs=3, metavar=("ARCHIVE", "LIVE", "OVERLAP"))
    ap.add_argument("--no-record", action="store_true",
                    help="do not serve the archive once with a plain Dovecot")
    ap.add_argument("--writable", action="store_true", help="do not freeze the archive")
    a = ap.parse_args(argv)
    scen = bulk_scenario(a.seed, *a.bulk) if a.bulk else standard_scenario(a.seed)
    os.makedirs(a.out, exist_ok=True)
    arch, live, view = build_user(a.out, a.user, scen, freeze_archive=not a.writable,
                                  record=not a.no_record)
    print("archive %s/Maildir\nlive %s/Maildir" % (arch, live))
    if view:
        print("old server showed %d messages, %d POP3 UIDLs" % (len(view.messages()), len(view.uidls)))


if __name__ == "__main__":
    main()
