"""The archive's private index copy never goes through a shared, guessable
path (issue 15 item 4).

hana's home has .backfill planted as a symlink to a directory elsewhere:
the merge refuses it (O_NOFOLLOW), says so, writes nothing there and
merges nothing.  ivan has no home: his copy lives in a private directory
next to the SQLite state store (archive-cache/ivan, mode 0700), never in
the temp directory (mail_temp_dir), where a symlink planted at the fixed
name the previous plugin used (backfill-USER-UID) stays untouched.  That
temp directory is this run's own, world-writable like /tmp: two runs at
once, or what a killed run left, never share the planted name.
"""
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import maildir_gen as mg  # noqa: E402
import statedb  # noqa: E402


class MergePrivateDir(bftest.SiteCase):

    @classmethod
    def build(cls, site):
        site.add_user("hana", mg.standard_scenario(91))
        site.add_user("ivan", mg.standard_scenario(92))
        # the temp directory the previous plugin put a homeless user's
        # copy in (Dovecot's mail_temp_dir, /tmp by default)
        tmp = os.path.join(site.base, "tmp")
        os.mkdir(tmp)
        os.chmod(tmp, 0o1777)
        site.dc.extra_conf += "mail_temp_dir = %s\n" % tmp
        site.start(plugin_on=False)
        cls.pre = {u: site.dc.snapshot(u) for u in ("hana", "ivan")}
        # hana: .backfill is a symlink to somebody else's directory
        cls.planted = tempfile.mkdtemp(prefix="bf-planted-")
        bftest.dv.chown_tree(cls.planted)
        cls.hana_home = os.path.join(site.base, "live", "hana")
        os.symlink(cls.planted, os.path.join(cls.hana_home, ".backfill"))
        # ivan: no home, an absolute mail location instead
        live = os.path.join(site.base, "live", "ivan", "Maildir")
        site.dc.set_user("ivan", home="", extra="userdb_mail=maildir:" + live)
        # the name the previous plugin gave a homeless user's copy there
        cls.old_tmp = os.path.join(tmp, "backfill-ivan-%d" % bftest.dv.MAIL_UID)
        cls.old_target = tempfile.mkdtemp(prefix="bf-planted-tmp-")
        bftest.dv.chown_tree(cls.old_target)
        os.symlink(cls.old_target, cls.old_tmp)
        site.enable_plugin()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            # (the link itself goes with the site's directory)
            for d in (cls.planted, cls.old_target):
                shutil.rmtree(d, ignore_errors=True)

    def record(self, user):
        db = statedb.connect(os.path.join(self.site.state_dir, "state.db"))
        try:
            return db.execute("SELECT status, last_error FROM merges WHERE user = ?",
                              (user,)).fetchone()
        finally:
            db.close()

    def test_planted_symlink_refused(self):
        site = self.site
        site.dc.imap("hana").logout()
        site.dc.pop3("hana").quit()
        self.assertEqual(os.listdir(self.planted), [], "the merge wrote through the symlink")
        self.assertFalse(site.finished_lines("hana"))
        lines = site.dc.log_lines(bftest.bf_log("hana") + ".*refusing it")
        self.assertTrue(lines, "\n".join(site.dc.log_lines(bftest.bf_log("hana"))))
        status, last_error = self.record("hana")
        self.assertEqual(status, "failed")
        self.assertIn(".backfill", last_error)
        self.assertEqual(bftest.multiset(site.dc.snapshot("hana")),
                         bftest.multiset(self.pre["hana"]))

    def test_homeless_user_private_cache(self):
        site = self.site
        site.wait_merged("ivan")
        got = bftest.multiset(site.dc.snapshot("ivan"))
        exp, _, _ = bftest.expected_after(self.pre["ivan"], site.views["ivan"])
        self.assertEqual(got, exp, bftest.diff(exp, got))
        cache = os.path.join(site.state_dir, "archive-cache", "ivan")
        st = os.lstat(cache)
        self.assertEqual(st.st_mode & 0o7777, 0o700)
        self.assertEqual(st.st_uid, bftest.dv.MAIL_UID)
        self.assertTrue(os.path.isdir(os.path.join(cache, "archive-control")))
        self.assertEqual(os.listdir(self.old_target), [],
                         "the merge wrote into the temp directory")
        self.assertTrue(os.path.islink(self.old_tmp))
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])


if __name__ == "__main__":
    unittest.main()
