"""The IMAP-cache test clients of issue 19 against a plain Dovecot (no
plugin): proves that tests/lib/imapcache.py (a client that caches like
Thunderbird) and tests/lib/mbsync.py (the real mbsync) see what the
issue's tests rely on them to see, so that test_imap_clients.py can fail:

  - a first sync downloads every message, a later one only new mail;
  - a folder whose UIDVALIDITY changed while its messages kept their UIDs
    (a restore that wrote a new UIDVALIDITY): the cache client throws the
    folder away and downloads it again; mbsync recognises the messages
    and recovers without pulling anything;
  - an empty folder whose UIDVALIDITY changed, then got mail: both
    download only that mail (mbsync recovers: it knew no UID);
  - a folder whose UIDVALIDITY and UIDs changed (a folder rebuilt, its
    messages renumbered): the cache client downloads it again; mbsync
    refuses it ("UIDVALIDITY genuinely changed"), and once its state is
    reset, as a user must, pulls every message again.

The mailbox has the shape of the issue's old server: INBOX, Sent and
Projects.Work with UID gaps and non-default UIDVALIDITYs.
"""
import os
import re
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("BACKFILL_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))

import dovecot as dv  # noqa: E402
import imapcache  # noqa: E402
import maildir_gen as mg  # noqa: E402
import mbsync  # noqa: E402

SIZES = {"INBOX": 14, "Sent": 6, "Projects.Work": 5, "Trash": 0}
UVS = {"INBOX": 1234500001, "Sent": 1234500002, "Projects.Work": 1234500003,
       "Trash": 1234500004}
# mail that appears in the empty Trash when its UIDVALIDITY changes
TRASH_NEW = 2


class ClientHarness(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: starts a private Dovecot with mail uid 8")
        # isync is in scripts/install-deps: a machine without it is broken
        assert mbsync.available(), "mbsync (isync) is not installed: run scripts/install-deps"
        cls.base = tempfile.mkdtemp(prefix="bf-imapc-")
        os.chmod(cls.base, 0o755)
        g = mg.Generator(19)
        folders = []
        for name, n in SIZES.items():
            f = mg.Folder(name, UVS[name])
            for i in range(n):
                t = 1500000000 + i * 3600
                # with a Message-ID each: isync 1.4 recognises a folder by them
                f.msgs.append(mg.Msg(g.message(t, kind="plain"), g.flags(name), t))
            folders.append(f)
        cls.home = os.path.join(cls.base, "home", "hana")
        cls.maildir = os.path.join(cls.home, "Maildir")
        mg.write_maildir(cls.maildir, folders, uid_gap=2)
        dv.chown_tree(cls.home)
        cls.later = [g.message(1700000000 + i) for i in range(2)]
        cls.dc = dv.Dovecot(name="plain", auto_mailboxes="no",
                            workdir=os.path.join(cls.base, "dovecot"))
        cls.dc.add_user("hana", home=cls.home)
        try:
            cls.run_story()
        except BaseException:
            cls.close()
            raise

    @classmethod
    def run_story(cls):
        dc = cls.dc
        dc.start()
        cls.tb = imapcache.CacheClient("tb", "127.0.0.1", dc.ports["imap"], "hana", dv.PASSWORD)
        cls.lap = mbsync.Mbsync(os.path.join(cls.base, "laptop"), "hana", dv.PASSWORD,
                                dc.ports["imap"])
        cls.first = (cls.tb.sync(), cls.lap.sync())
        for raw in cls.later:
            dc.lmtp_deliver("hana", raw)
        cls.second = (cls.tb.sync(), cls.lap.sync())
        dc.stop()
        # Sent: a new UIDVALIDITY, the same UIDs
        sent = os.path.join(cls.maildir, ".Sent")
        cls._rewrite_uidlist(sent, lambda t: t.replace("V%d " % UVS["Sent"], "V%d " % (UVS["Sent"] + 777), 1))
        # Projects.Work: rebuilt, UIDs 1..n and a new UIDVALIDITY
        work = os.path.join(cls.maildir, ".Projects.Work")
        cls._rewrite_uidlist(work, None)
        # Trash, empty so far: a new UIDVALIDITY, then mail in it (a
        # restore filling a folder the clients knew empty)
        trash = os.path.join(cls.maildir, ".Trash")
        cls._rewrite_uidlist(trash, lambda t: t.replace("V%d " % UVS["Trash"], "V%d " % (UVS["Trash"] + 777), 1))
        dc.start()
        for i in range(TRASH_NEW):
            dc.append("hana", "Trash", cls.later[0].replace(b"Subject: ", b"Subject: %d " % i, 1))
        cls.third = (cls.tb.sync(), cls.lap.sync())
        cls.lap.reset_state("Projects.Work")
        cls.fourth = cls.lap.sync()
        cls.uvs = {f: dc.mailbox("hana", f)[0] for f in SIZES}
        dc.assert_log_clean()

    @staticmethod
    def _rewrite_uidlist(folder_dir, change):
        path = os.path.join(folder_dir, "dovecot-uidlist")
        if change is None:
            os.unlink(path)
        else:
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(change(text))
        for n in os.listdir(folder_dir):
            if n.startswith("dovecot.index"):
                os.unlink(os.path.join(folder_dir, n))

    @classmethod
    def close(cls):
        cls.dc.stop()
        if os.environ.get("BF_KEEP_TMP"):
            print("kept", cls.base, file=sys.stderr)
        else:
            shutil.rmtree(cls.base, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        cls.close()

    def test_first_sync_downloads_everything(self):
        tb, lap = self.first
        self.assertEqual({f: r.downloaded for f, r in tb.items()}, SIZES)
        self.assertEqual(lap.pulled, SIZES, lap.output)
        self.assertEqual(lap.refused, {})
        self.assertEqual(lap.returncode, 0, lap.output)
        uv, uids = tb["INBOX"].uidvalidity, tb["INBOX"].uids
        self.assertEqual(uv, UVS["INBOX"])
        self.assertEqual(uids, list(range(3, 3 * SIZES["INBOX"] + 1, 3)), "UID gaps")

    def test_later_sync_downloads_only_new_mail(self):
        tb, lap = self.second
        want = dict({f: 0 for f in SIZES}, INBOX=len(self.later))
        self.assertEqual({f: r.downloaded for f, r in tb.items()}, want)
        self.assertEqual(lap.pulled, want, lap.output)
        self.assertEqual(tb["INBOX"].redownloaded(), [])

    def test_new_uidvalidity_same_uids(self):
        tb, lap = self.third
        self.assertNotEqual(self.uvs["Sent"], UVS["Sent"])
        self.assertEqual(tb["Sent"].invalidated, UVS["Sent"])
        self.assertEqual(tb["Sent"].downloaded, SIZES["Sent"])
        self.assertEqual(len(tb["Sent"].redownloaded()), SIZES["Sent"])
        self.assertIn("Sent", lap.recovered, lap.output)
        self.assertNotIn("Sent", lap.refused)
        self.assertEqual(lap.pulled["Sent"], 0)

    def test_new_uidvalidity_of_an_empty_folder_costs_nothing(self):
        """A client that knew a folder empty loses nothing when it shows
        another UIDVALIDITY: the cache has nothing to drop, mbsync has no
        UID to mistrust and recovers."""
        tb, lap = self.third
        self.assertEqual(tb["Trash"].invalidated, UVS["Trash"])
        self.assertEqual(tb["Trash"].downloaded, TRASH_NEW)
        self.assertEqual(lap.pulled["Trash"], TRASH_NEW, lap.output)
        self.assertIn("Trash", lap.recovered, lap.output)

    def test_renumbered_folder_refused_then_pulled_again(self):
        tb, lap = self.third
        self.assertEqual(tb["Projects.Work"].invalidated, UVS["Projects.Work"])
        self.assertEqual(tb["Projects.Work"].downloaded, SIZES["Projects.Work"])
        self.assertEqual(tb["INBOX"].downloaded, 0)
        self.assertIsNone(tb["INBOX"].invalidated)
        self.assertRegex(lap.refused.get("Projects.Work", ""), r"UIDVALIDITY genuinely changed",
                         lap.output)
        self.assertEqual(sorted(lap.refused), ["Projects.Work"])
        self.assertEqual(lap.pulled["Projects.Work"], 0)
        self.assertNotEqual(lap.returncode, 0)
        # the state reset a user must do: every message pulled again
        self.assertEqual(self.fourth.refused, {}, self.fourth.output)
        self.assertEqual(self.fourth.pulled["Projects.Work"], SIZES["Projects.Work"])
        self.assertEqual(sorted(self.fourth.new_fingerprints["Projects.Work"]),
                         sorted(set(self.lap.near_fingerprints("Projects.Work"))))


if __name__ == "__main__":
    unittest.main(verbosity=2)
