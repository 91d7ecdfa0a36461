"""Issue 3, tests 7-11: read-only archives, broken archive messages, an
unwritable state store, users without an archive, hostile user names.

The file re-executes itself under `unshare -m` so that it can bind-mount an
archive read-only without touching the host's mount table. One private
Dovecot serves every user; per-user settings come from userdb extra fields.
"""
import os
import subprocess
import sys
import time
import unittest

if os.geteuid() == 0 and not os.environ.get("BF_IN_UNSHARE"):
    os.environ["BF_IN_UNSHARE"] = "1"
    os.execvp("unshare", ["unshare", "-m", "--propagation", "private",
                          sys.executable] + sys.argv)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import dovecot as dv  # noqa: E402
import maildir_gen as mg  # noqa: E402
import statedb  # noqa: E402

BROKEN = {
    "truncated": None,  # filled in: a real message cut in half, S= unchanged
    "binary": (b"From: x@example.org\nSubject: \x00\xff\xfe bin\nMessage-ID: <bin@x>\n\n"
               + bytes(range(256)) * 8 + b"\n"),
    "headerless": b"\njust a body, the header section is empty\n",
    "nocolon": b"no header here at all\nand no empty line either\n",
    "empty": b"",
}


def add_broken(maildir, gen):
    """Files a damaged restore leaves behind, not in dovecot-uidlist (they
    get the next UIDs, as the old server would have given them)."""
    cur = os.path.join(maildir, "cur")
    out = {}
    for i, (name, raw) in enumerate(sorted(BROKEN.items())):
        if raw is None:
            raw = gen.message(1500000000 + i, kind="multipart")
            size = len(raw)
            raw = raw[: size // 2]
        else:
            size = len(raw)
        base = "%d.M%dP%d.restore,S=%d,W=%d:2,S" % (1500000000 + i, i, 9000 + i, size, size)
        p = os.path.join(cur, base)
        with open(p, "wb") as f:
            f.write(raw)
        os.utime(p, (1500000000 + i, 1500000000 + i))
        out[name] = raw
    # and one the mail user cannot read at all
    p = os.path.join(cur, "1500000100.M1P9100.restore,S=40,W=41:2,")
    with open(p, "wb") as f:
        f.write(b"Subject: unreadable\n\nroot only 0600 mode\n")
    out["unreadable"] = p
    return out


class MergeRobust(bftest.SiteCase):
    SITE = dict(username_chars="")

    @classmethod
    def build(cls, site):
        base = site.base
        cls.pre, cls.sums = {}, {}
        # 7: mail-owned archive on a read-only bind mount (seen as writable by
        # ownership: the plugin must not try), and a root-owned one
        site.add_user("rosa", mg.standard_scenario(11), freeze=False)
        cls.rosa_arch = os.path.join(base, "archive", "rosa")
        subprocess.run(["mount", "--bind", cls.rosa_arch, cls.rosa_arch], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", cls.rosa_arch], check=True)
        site.add_user("rita", mg.standard_scenario(12))
        # 8: broken messages
        site.add_user("bert", mg.standard_scenario(13), freeze=False)
        cls.broken = add_broken(os.path.join(base, "archive", "bert", "Maildir"), mg.Generator(99))
        mg.freeze(os.path.join(base, "archive", "bert"))
        os.chmod(cls.broken["unreadable"], 0o600)
        # 9: state store unwritable (root-owned dir), and unreachable
        ro_state = os.path.join(base, "ro-state")
        os.makedirs(ro_state)
        os.chmod(ro_state, 0o755)
        cls.ro_state = ro_state
        site.add_user("sven", mg.standard_scenario(14),
                      extra="userdb_backfill_state=sqlite:%s/state.db" % ro_state)
        site.add_user("stan", mg.standard_scenario(15),
                      extra="userdb_backfill_state=sqlite:%s/missing/dir/state.db" % base)
        # a live folder the mail user cannot save into (full or broken
        # disk alike: the live side's problem, not the message's)
        site.add_user("perry", mg.standard_scenario(21))
        cls.perry_tmp = os.path.join(base, "live", "perry", "Maildir", "tmp")
        os.chown(cls.perry_tmp, 0, 0)
        os.chmod(cls.perry_tmp, 0o555)
        # an archive folder that cannot be read (its cur/ lost its
        # permissions in the restore)
        site.add_user("sid", mg.standard_scenario(22))
        cls.sid_cur = os.path.join(base, "archive", "sid", "Maildir", ".Work", "cur")
        os.chmod(cls.sid_cur, 0o000)
        # 10: no archive
        live_home = os.path.join(base, "live", "nora")
        mg.write_maildir(os.path.join(live_home, "Maildir"), mg.standard_scenario(16).live)
        dv.chown_tree(live_home)
        site.dc.add_user("nora", home=live_home)
        # 11: names
        for user, seed in (("john.doe", 17), ("a+tag", 18), ("Capital", 19)):
            site.add_user(user.lower(), mg.standard_scenario(seed))
        cls.evil = {}
        gen = mg.Generator(20)
        # archives planted where a "../" name would lead
        for user, target in (("../evil", os.path.join(base, "evil")),
                             ("..", base)):
            if target:
                mg.write_maildir(os.path.join(target, "Maildir"),
                                 [mg.Folder("INBOX", 1400000999, [mg.Msg(gen.message(1500000000), (), 1500000000)])])
                mg.freeze(os.path.join(target, "Maildir"))
            home = os.path.join(base, "live", "evil-%d" % len(cls.evil))
            os.makedirs(home)
            dv.chown_tree(home)
            site.dc.add_user(user, home=home)
            cls.evil[user] = home
        cls.evil_fps = set()
        for p in (os.path.join(base, "evil", "Maildir", "cur"), os.path.join(base, "Maildir", "cur")):
            for f in os.listdir(p):
                with open(os.path.join(p, f), "rb") as fh:
                    cls.evil_fps.add(mg.fingerprint_ref.fingerprint(fh.read())[0])
        for user in ("rosa", "rita", "bert"):
            cls.sums[user] = dv.tree_checksum(os.path.join(base, "archive", user))
        site.start(plugin_on=False)
        for user in ("rosa", "rita", "bert", "sven", "stan", "nora", "john.doe", "a+tag", "capital",
                     "perry", "sid"):
            cls.pre[user] = site.dc.snapshot(user)
        site.enable_plugin()

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["umount", cls.rosa_arch], check=False)
        super().tearDownClass()

    def merged_ok(self, user, allow_errors=False):
        self.site.wait_merged(user)
        post = self.site.dc.snapshot(user)
        exp, _, _ = bftest.expected_after(self.pre[user], self.site.views[user])
        got = bftest.multiset(post)
        self.assertEqual(got, exp, bftest.diff(exp, got))
        return post

    def user_log(self, user, level=None):
        rx = bftest.bf_log(user)
        lines = self.site.dc.log_lines(rx)
        if level:
            lines = [l for l in lines if (" %s: " % level) in l]
        return lines

    # ---------------------------------------------------------- test 7
    def test_7_readonly_bind_mount(self):
        with self.assertRaises(OSError):
            open(os.path.join(self.rosa_arch, "Maildir", "probe"), "w")
        self.merged_ok("rosa")
        self.assertEqual(dv.tree_checksum(self.rosa_arch), self.sums["rosa"])
        self.assertEqual(self.user_log("rosa", "Error") + self.user_log("rosa", "Warning"), [])
        bad = [l for l in self.site.dc.log_lines(r"\b(Error|Panic|Fatal)\b") if "(rosa)" in l]
        self.assertEqual(bad, [])

    def test_7_root_owned_tree_not_modified(self):
        self.merged_ok("rita")
        self.assertEqual(dv.tree_checksum(os.path.join(self.site.base, "archive", "rita")),
                         self.sums["rita"])

    # ---------------------------------------------------------- test 8
    def test_8_broken_messages(self):
        c = self.site.dc.imap("bert")  # the login itself must succeed
        c.logout()
        p = self.site.dc.pop3("bert")
        p.quit()
        self.site.wait_merged("bert")
        post = self.site.dc.snapshot("bert")
        exp, _, _ = bftest.expected_after(self.pre["bert"], self.site.views["bert"])
        got = bftest.multiset(post)
        # every good message is there; broken ones may be merged as they are
        missing = __import__("collections").Counter(exp) - __import__("collections").Counter(got)
        self.assertFalse(missing, bftest.diff(exp, got))
        line = self.site.finished_lines("bert")[-1]
        import re
        m = re.search(r"(\d+) added, (\d+) duplicates, (\d+) skipped", line)
        added, dups, skipped = map(int, m.groups())
        n_arch = sum(len(ms) for _, (_, ms) in self.site.views["bert"].snapshot.items())
        n_broken = len(self.broken)
        self.assertEqual(added + dups + skipped, n_arch + n_broken, line)
        self.assertGreaterEqual(skipped, 1, "the unreadable file cannot have been merged")
        self.assertEqual(len(got) - len(exp), n_broken - skipped)
        skipped_lines = [l for l in self.user_log("bert") if re.search(r"INBOX/uid \d+: skipped", l)]
        self.assertEqual(len(skipped_lines), skipped, "\n".join(self.user_log("bert")))
        self.assertEqual(dv.tree_checksum(os.path.join(self.site.base, "archive", "bert")),
                         self.sums["bert"])
        self.assertEqual(self.site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])

    # ---------------------------------------------------------- test 9
    def check_postponed(self, user, path):
        c = self.site.dc.imap(user)
        c.noop()
        c.logout()
        p = self.site.dc.pop3(user)
        p.quit()
        lines = [l for l in self.user_log(user) if "merge postponed" in l]
        self.assertTrue(lines, "\n".join(self.user_log(user)))
        self.assertIn(path, lines[0])
        self.assertRegex(lines[0], r"(permission|writ|creat|fix|must)")
        self.assertEqual(bftest.multiset(self.site.dc.snapshot(user)), bftest.multiset(self.pre[user]))

    def test_9_state_store_unwritable(self):
        self.check_postponed("sven", self.ro_state)
        # fixing what the log says lets the next login merge
        dv.chown_tree(self.ro_state)
        self.merged_ok("sven")

    def test_9_state_store_dir_missing(self):
        self.check_postponed("stan", os.path.join(self.site.base, "missing", "dir"))

    def record(self, user):
        """(status, last_error), or None before the user's first merge."""
        db = statedb.connect(os.path.join(self.site.state_dir, "state.db"), timeout=10)
        try:
            rec = db.execute("SELECT status, last_error FROM merges WHERE user = ?",
                             (user,)).fetchone()
        finally:
            db.close()
        return None if rec is None else tuple(rec)

    def test_live_side_failure_recorded_and_retried(self):
        c = self.site.dc.imap("perry")
        # until the failure is on record (50 rounds of NOOP and 0.1 s
        # were about 5 s: a slow start under ASan on a loaded machine)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rec = self.record("perry")
            if rec and rec[0] == "failed":
                break
            c.noop()
            time.sleep(0.1)
        c.logout()
        status, error = self.record("perry")
        self.assertEqual(status, "failed", "\n".join(self.user_log("perry")))
        self.assertRegex(error, r"merge postponed: saving into INBOX failed: .*the next login retries")
        lines = [l for l in self.user_log("perry", "Error") if "merge postponed" in l]
        self.assertTrue(lines)
        self.assertIn(error, lines[-1])
        # nothing half-done: the live mailbox is as it was
        self.assertEqual(bftest.multiset(self.site.dc.snapshot("perry")), bftest.multiset(self.pre["perry"]))
        # fixing it lets the next login merge, and the error is history
        dv.chown_tree(self.perry_tmp)
        os.chmod(self.perry_tmp, 0o700)
        self.merged_ok("perry")
        self.assertEqual(self.record("perry"), ("done", None))

    def test_skipped_archive_folder_stays_visible(self):
        self.site.wait_merged("sid")
        status, error = self.record("sid")
        self.assertEqual(status, "done")
        self.assertRegex(error or "", r"^archive folder skipped: Work: .*doveadm backfill reset")
        lines = [l for l in self.user_log("sid", "Error") if "archive folder skipped: Work" in l]
        self.assertEqual(len(lines), 1, "\n".join(self.user_log("sid")))
        post = self.site.dc.snapshot("sid")
        work = {m.fingerprint for m in self.site.views["sid"].snapshot["Work"][1]}
        got = {m.fingerprint for _, (_, ms) in post.items() for m in ms}
        self.assertFalse(work & got - {m.fingerprint for _, (_, ms) in self.pre["sid"].items() for m in ms},
                         "a message of the skipped folder was merged")
        inbox = {m.fingerprint for m in self.site.views["sid"].snapshot["INBOX"][1]}
        self.assertLessEqual(inbox, got, "the other folders were not merged")

    # ---------------------------------------------------------- test 10
    def test_10_no_archive(self):
        c = self.site.dc.imap("nora")
        c.noop()
        c.logout()
        self.site.dc.pop3("nora").quit()
        self.assertEqual(self.user_log("nora"), [])
        self.assertEqual([l for l in self.site.dc.log_lines("backfill") if "nora" in l], [])
        self.assertEqual(bftest.multiset(self.site.dc.snapshot("nora")), bftest.multiset(self.pre["nora"]))

    # ---------------------------------------------------------- test 11
    def test_11_dots_plus_capitals(self):
        for user in ("john.doe", "a+tag"):
            self.merged_ok(user)
        # the login name in capitals maps (auth_username_format=%Ln) to the
        # lower-case archive directory
        c = self.site.dc.imap("Capital")
        c.logout()
        self.merged_ok("capital")

    def test_11_path_never_leaves_root(self):
        for user in self.evil:
            c = self.site.dc.imap(user)
            c.noop()
            c.logout()
            self.site.dc.pop3(user).quit()
        for user in self.evil:
            snap = self.site.dc.snapshot(user)
            fps = {m.fingerprint for _, (_, ms) in snap.items() for m in ms}
            self.assertFalse(fps & self.evil_fps, "%s got mail from outside the archive root" % user)
            self.assertEqual(self.site.finished_lines(user), [])
        refused = self.site.dc.log_lines("outside the archive root")
        self.assertGreaterEqual(len(refused), 2, "\n".join(self.site.dc.log_lines("backfill")))
        self.assertEqual(self.site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
