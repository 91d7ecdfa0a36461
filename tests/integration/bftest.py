"""Shared set-up of the Dovecot plugin's integration tests.

meson passes BACKFILL_PLUGIN_DIR (the build dir's dovecot-plugin) and
BACKFILL_SOURCE_DIR; run by hand:
    BACKFILL_PLUGIN_DIR=build/dovecot-plugin /usr/bin/python3 tests/integration/test_merge_basic.py
BF_KEEP_TMP=1 keeps the temp dirs (Dovecot config, logs, mailboxes).
"""
import collections
import imaplib
import os
import poplib
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("BACKFILL_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))

import dovecot as dv  # noqa: E402
import maildir_gen as mg  # noqa: E402

KEYWORD = "$Backfilled"
HIDE = "$POP3Deleted"


def plugin_dir():
    d = os.environ.get("BACKFILL_PLUGIN_DIR")
    if not d:
        for cand in ("build", "build-tests"):
            p = os.path.join(SRC, cand, "dovecot-plugin")
            if os.path.exists(os.path.join(p, "lib95_backfill_plugin.so")):
                d = p
                break
    if not d or not os.path.exists(os.path.join(d, "lib95_backfill_plugin.so")):
        raise unittest.SkipTest("lib95_backfill_plugin.so not built (set BACKFILL_PLUGIN_DIR)")
    return os.path.abspath(d)


def require_root():
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root: starts a private Dovecot with mail uid 8")


class Site:
    """A temp dir with archives (base/archive/<user>/Maildir, frozen), live
    homes (base/live/<user>), a state store dir and a live Dovecot."""

    def __init__(self, plugin=None, extra_conf="", username_chars=None,
                 archive_spec=None):
        require_root()
        self.plugin_dir = plugin_dir()
        self.base = tempfile.mkdtemp(prefix="bf-it-")
        os.chmod(self.base, 0o755)
        self.state_dir = os.path.join(self.base, "state")
        os.makedirs(self.state_dir)
        dv.chown_tree(self.state_dir)
        self.archive_root = os.path.join(self.base, "archive")
        os.makedirs(self.archive_root, exist_ok=True)
        self.settings = {
            "backfill_archive": archive_spec or ("maildir:%s/%%Ln/Maildir" % self.archive_root),
            "backfill_state": "sqlite:%s/state.db" % self.state_dir,
            "backfill_login_budget": "300ms",
        }
        self.settings.update(plugin or {})
        self.dc = dv.Dovecot(plugin_dir=self.plugin_dir, mail_plugins="",
                             plugin=self.settings, workdir=os.path.join(self.base, "dovecot"),
                             mail_root=os.path.join(self.base, "live"),
                             username_chars=username_chars,
                             extra_conf='pop3_deleted_flag = "$POP3Deleted"\n'
                                        'pop3_no_flag_updates = yes\n' + extra_conf)
        self.views = {}

    def add_user(self, user, scenario, record=True, freeze=True, extra=""):
        """Write the user's archive and live mailbox, record the old
        server's view of the archive."""
        _, live_home, view = mg.build_user(self.base, user, scenario,
                                           freeze_archive=freeze, record=record)
        self.dc.add_user(user, home=live_home, extra=extra)
        self.views[user] = view
        return view

    def start(self, plugin_on=True):
        self.dc.mail_plugins = "backfill" if plugin_on else ""
        self.dc.start()

    def enable_plugin(self, **settings):
        self.settings.update(settings)
        self.dc.restart(mail_plugins="backfill", plugin=self.settings)

    def close(self):
        self.dc.stop()
        if not os.environ.get("BF_KEEP_TMP"):
            # the archive is root-owned read-only: rmtree as root is fine
            shutil.rmtree(self.base, ignore_errors=True)
        else:
            print("kept", self.base, file=sys.stderr)

    # ---------------------------------------------------------------- merge
    def finished_lines(self, user):
        return self.dc.log_lines(bf_log(user) + "merge finished")

    def wait_merged(self, user, timeout=120, service="imap", count=1):
        """Log in (IMAP: keep the session busy with NOOPs so the background
        slices run; POP3: log in again and again) until the log shows
        `count` "merge finished" lines for the user."""
        n0 = count - 1
        if len(self.finished_lines(user)) > n0:
            return
        deadline = time.time() + timeout
        while time.time() < deadline:
            # A session that dies (a plugin crash) is logged in again, as
            # a client would; the tests look for Panic lines separately.
            try:
                if service == "imap":
                    c = self.dc.imap(user)
                    try:
                        t_end = min(deadline, time.time() + 30)
                        while time.time() < t_end:
                            if len(self.finished_lines(user)) > n0:
                                return
                            c.noop()
                            time.sleep(0.05)
                    finally:
                        try:
                            c.logout()
                        except (OSError, imaplib.IMAP4.error):
                            pass
                else:
                    c = self.dc.pop3(user)
                    c.quit()
            except (OSError, imaplib.IMAP4.error, poplib.error_proto) as e:
                print("wait_merged(%s): session lost: %r" % (user, e), file=sys.stderr)
                time.sleep(0.2)
            if len(self.finished_lines(user)) > n0:
                return
        raise AssertionError("merge of %s did not finish in %ds\n%s" % (
            user, timeout, self.dc.log_tail()))



class SiteCase(unittest.TestCase):
    """A test class whose tests share one private site: SITE holds the
    Site() arguments, build(site) fills and starts it.  The site is
    closed after the last test, or at once when build() fails."""

    SITE = {}

    @classmethod
    def build(cls, site):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.site = Site(**cls.SITE)
        try:
            cls.build(cls.site)
        except BaseException:
            cls.site.close()
            cls._unmount()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.site.close()
        finally:
            cls._unmount()

    @classmethod
    def _unmount(cls):
        mounts = cls.__dict__.get("_mounts", [])
        for path in reversed(mounts):
            subprocess.run(["umount", "-l", path], check=False)
        if mounts and not os.environ.get("BF_KEEP_TMP"):
            # the mount points themselves, left by Site.close()
            shutil.rmtree(cls.site.base, ignore_errors=True)

    @classmethod
    def mount_tmpfs(cls, path, size):
        """A tmpfs of size (e.g. "3m") at path (created), unmounted after
        the class's site is closed."""
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "bftest", path],
                       check=True)
        if "_mounts" not in cls.__dict__:
            cls._mounts = []
        cls._mounts.append(path)

def _re(s):
    import re
    return re.escape(s)


def bf_log(user):
    """The start of a backfill log line of user, for a regular expression:
    Dovecot's own prefix (imap(user)<pid><session>: Info: ) and then
    "backfill: " once, as the merge logs through its event; also the older
    "backfill(user): " that parts of the plugin may still write."""
    u = _re(user.lower())
    return r"(?:backfill\(%s\)|\(%s\)(?:<[^>]*>)*: \w+: backfill): " % (u, u)


def map_folder(name, live_folders):
    """Where the plugin is to put an archive folder of the test scenarios:
    same name if the live has it or no special-use differs; the archive's
    "Sent Messages" goes to the live \\Sent folder "Sent"."""
    if name == "Sent Messages" and "Sent" in live_folders:
        return "Sent"
    return name


def expected_after(pre, view, dedup="user", keyword=KEYWORD, hide="seen"):
    """Multiset of (folder, fingerprint, flags, date) an exact merge gives,
    and per INBOX fingerprint how many archived copies are added.

    pre: live snapshot before the merge; view: the old server's OldView.
    Archive folders are walked as the plugin does (INBOX, then by name); an
    archived message that matches a pre-existing live one (by fingerprint,
    in the account or in the mapped folder) uses that one up."""
    live_count = collections.Counter()
    out = []
    for folder, (uv, msgs) in pre.items():
        for m in msgs:
            out.append((folder, m.fingerprint, tuple(sorted(m.flags)), m.internaldate))
            live_count[(folder if dedup == "mailbox" else None, m.fingerprint)] += 1
    added_inbox = collections.Counter()
    added_inbox_msgs = []
    order = sorted(view.snapshot, key=lambda n: (n != "INBOX", n))
    for folder in order:
        target = map_folder(folder, pre)
        for m in view.snapshot[folder][1]:
            k = (target if dedup == "mailbox" else None, m.fingerprint)
            if dedup != "off" and live_count[k] > 0:
                live_count[k] -= 1
                continue
            flags = set(m.flags)
            if keyword:
                flags.add(keyword)
            if target == "INBOX" and (hide == "all" or (hide == "seen" and "\\Seen" in m.flags)):
                flags.add(HIDE)
            out.append((target, m.fingerprint, tuple(sorted(flags)), m.internaldate))
            if target == "INBOX":
                added_inbox[m.fingerprint] += 1
                added_inbox_msgs.append((m, flags))
    return sorted(out), added_inbox, added_inbox_msgs


def multiset(snap):
    return dv.messages_multiset(snap)


def diff(expected, got):
    e, g = collections.Counter(expected), collections.Counter(got)
    return "missing: %s\nunexpected: %s" % (list((e - g).elements())[:10],
                                             list((g - e).elements())[:10])


# Crash points (BACKFILL_TEST_CRASH=POINT[:N], dovecot-plugin/renumber.c
# backfill_crash_point()): doveconf hands doveadm only the environment
# import_environment lists.
CRASH_CONF = ("import_environment {\n  BACKFILL_TEST_CRASH = %{env:BACKFILL_TEST_CRASH}\n}\n"
              if dv.IS_24 else
              "import_environment = $import_environment BACKFILL_TEST_CRASH\n")


def remove_locks(dc, user):
    """The Maildir locks (dovecot-uidlist.lock, ...) a killed process
    leaves behind, which the next run would wait for."""
    for root, _, names in os.walk(dc.home(user)):
        for name in names:
            if name.endswith(".lock"):
                os.unlink(os.path.join(root, name))


def maildir_cut_commit(maildir, want, link=False, rename=True):
    """What a kill inside Dovecot's Maildir commit leaves: the files of the
    messages whose dovecot-uidlist UID want(uid) accepts, in cur/ under new
    names that are not their GUIDs.  link: linked there, the originals
    stay (a move's copies); else renamed, their uidlist lines dropped and
    the index removed (a batch's copies, the commit never written).
    rename=False: the files keep the names the commit gave them, only their
    uidlist lines and the index go (names maildir_filename_generate() made
    in the committing process: a save whose GUID is no file name).
    Returns how many."""
    import re
    path = os.path.join(maildir, "dovecot-uidlist")
    with open(path) as f:
        lines = f.readlines()
    names, kept = {}, [lines[0]]
    for ln in lines[1:]:
        uid, rest = ln.split(" ", 1)
        if want(int(uid)):
            names[re.split(r"[,:]", rest.rsplit(":", 1)[-1].strip(), 1)[0]] = int(uid)
        else:
            kept.append(ln)
    done = 0
    for sub in ("cur", "new"):
        for name in sorted(os.listdir(os.path.join(maildir, sub))):
            base = re.split(r"[,:]", name, 1)[0]
            if base not in names:
                continue
            if not rename:
                done += 1
                continue
            tail = name[len(base):]
            if ":2," not in tail:
                tail += ":2,"
            (os.link if link else os.rename)(
                os.path.join(maildir, sub, name),
                os.path.join(maildir, "cur", "1700099999.M%dP4242.bfcut%s"
                             % (names[base], tail)))
            done += 1
    assert done == len(names) > 0, (done, names)
    if link:
        return done
    st = os.stat(path)
    with open(path + ".new", "w") as f:
        f.writelines(kept)
    os.chown(path + ".new", st.st_uid, st.st_gid)
    os.rename(path + ".new", path)
    # the index knows their UIDs: gone with a kill before its commit
    for name in os.listdir(maildir):
        if name.startswith("dovecot.index"):
            os.unlink(os.path.join(maildir, name))
    return done
