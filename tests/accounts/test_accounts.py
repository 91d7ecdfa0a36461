"""backfillctl accounts against real Dovecot and Postfix (issue 10).

The merged passwd-file is served by a private auth-only Dovecot and
checked with `doveadm auth test` / `doveadm user`; the merged map is
compiled and queried with postmap.  Conflicts of every kind, malformed
input, and the promise that no password or hash leaves the passwd-file.
"""
import os
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import acctest as at  # noqa: E402


class MergeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        at.require_root()
        at.backfillctl()
        cls.sc = at.Scenario()
        cls.rc, cls.stdout, cls.stderr = cls.sc.run()
        cls.merged_passwd = os.path.join(cls.sc.out, "passwd")
        cls.merged_map = os.path.join(cls.sc.out, "virtual")
        cls.report = at.read(os.path.join(cls.sc.out, "reports", "example.com.txt"))
        cls.html = at.read(os.path.join(cls.sc.out, "reports", "example.com.html"))

    @classmethod
    def tearDownClass(cls):
        cls.sc.cleanup()

    def merged_lines(self):
        out = {}
        for line in at.read(self.merged_passwd).splitlines():
            if line and not line.startswith("#"):
                out[line.split(":", 1)[0]] = line
        return out

    def test_exit_code_says_conflicts(self):
        self.assertEqual(self.rc, 1, self.stderr)
        self.assertIn("5 conflicts to decide", self.stdout)
        self.assertEqual(self.stderr, "")

    def test_passwd_rules_field_by_field(self):
        h = self.sc.hashes
        lines = self.merged_lines()
        self.assertEqual(sorted(lines), sorted([
            "alice@example.com", "bob@example.com", "carol@example.com",
            "frank@example.com", "gina@example.com", "sales@example.com",
            "henry@example.com", "erin@other.org"]))
        # untouched: old settings back, mailbox location the new server's
        self.assertEqual(lines["alice@example.com"],
                         "alice@example.com:%s:8:8::/srv/new/example.com/alice::"
                         "userdb_quota_rule=*:storage=1G" % h[("alice", "old")])
        # reconfigured: the new entry, plus old userdb fields it lacked;
        # the old passdb field (allow_nets) stays out
        self.assertEqual(lines["bob@example.com"],
                         "bob@example.com:%s:8:8::/srv/new/example.com/bob::"
                         "userdb_quota_rule=*:storage=2G userdb_master_pass=%s"
                         % (h[("bob", "new")], at.EXTRA_SECRET))
        # not recreated: the old line byte for byte
        self.assertEqual(lines["carol@example.com"],
                         "carol@example.com:%s:8:8:Carol:/srv/old/example.com/carol::"
                         "userdb_quota_rule=*:storage=3G" % h[("carol", "old")])
        # untouched with differences both ways
        self.assertEqual(lines["gina@example.com"],
                         "gina@example.com:%s:8:8:Gina G:/srv/new/example.com/gina:"
                         "/bin/false:userdb_quota_rule=*:storage=3G "
                         "userdb_acl_groups=staff" % h[("gina", "old")])
        with open(self.sc.new_passwd) as f:
            new_lines = f.read().splitlines()
        for user in ("frank", "sales", "henry"):
            self.assertIn(lines[user + "@example.com"], new_lines)
        # comments travel with their entry
        text = at.read(self.merged_passwd)
        self.assertNotIn("dave@example.com", text)

    def test_passwd_file_mode(self):
        st = os.stat(self.merged_passwd)
        self.assertEqual(stat.S_IMODE(st.st_mode) & 0o007, 0)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual(st.st_gid, os.stat(self.sc.new_passwd).st_gid)

    def test_doveadm_auth_against_merged_passwd(self):
        with at.AuthDovecot(self.merged_passwd) as dc:
            pw = at.PASSWORDS
            # untouched: the old (= current) password works
            self.assertTrue(dc.auth_ok("alice@example.com", pw["alice"][0]))
            # reconfigured: the new password, not the old one
            self.assertTrue(dc.auth_ok("bob@example.com", pw["bob"][1]))
            self.assertFalse(dc.auth_ok("bob@example.com", pw["bob"][0]))
            # restored accounts log in with their old passwords
            self.assertTrue(dc.auth_ok("carol@example.com", pw["carol"][0]))
            self.assertTrue(dc.auth_ok("erin@other.org", pw["erin@other.org"][0]))
            # accounts created after the incident keep theirs
            self.assertTrue(dc.auth_ok("sales@example.com", pw["sales"][1]))
            self.assertTrue(dc.auth_ok("henry@example.com", pw["henry"][1]))
            self.assertTrue(dc.auth_ok("frank@example.com", pw["frank"][1]))
            self.assertTrue(dc.auth_ok("gina@example.com", pw["gina"][0]))
            # the old account that is an alias now is not restored
            self.assertFalse(dc.auth_ok("dave@example.com", pw["dave"][0]))
            self.assertFalse(dc.auth_ok("alice@example.com", "wrong"))
            # userdb: settings restored, location the new server's
            alice = dc.userdb("alice@example.com")
            self.assertEqual(alice["home"], "/srv/new/example.com/alice")
            self.assertEqual(alice["quota_rule"], "*:storage=1G")
            bob = dc.userdb("bob@example.com")
            self.assertEqual(bob["quota_rule"], "*:storage=2G")
            gina = dc.userdb("gina@example.com")
            self.assertEqual(gina["home"], "/srv/new/example.com/gina")
            self.assertEqual(gina["quota_rule"], "*:storage=3G")
            self.assertEqual(gina["acl_groups"], "staff")
            self.assertNotIn("mdbox", gina.get("mail", ""))
            self.assertIsNone(dc.userdb("dave@example.com"))
            self.assertNotRegex(dc.log_text(), r"\b(Panic|Fatal|Error)\b")

    def test_postmap_accepts_merged_map(self):
        pm = at.Postmap(self.merged_map)
        try:
            self.assertEqual(pm.output.strip(), "")
            # new account vs old alias: the account wins, alias not restored
            self.assertIsNone(pm.query("sales@example.com"))
            # same alias, different targets: the new server's
            self.assertEqual(pm.targets("info@example.com"), ["alice@example.com"])
            # old account now an alias: the alias
            self.assertEqual(pm.targets("dave@example.com"), ["bob@example.com"])
            # old-only alias to a deleted account: not restored
            self.assertIsNone(pm.query("team@example.com"))
            # new alias to a deleted account: kept as the new server has it
            self.assertEqual(pm.targets("news@example.com"), ["nobody@example.com"])
            # restored, external targets are fine
            self.assertEqual(pm.targets("abuse@example.com"),
                             ["abuse-desk@elsewhere.net", "alice@example.com"])
            self.assertEqual(pm.targets("postmaster@other.org"), ["erin@other.org"])
            self.assertEqual(pm.targets("same@example.com"),
                             ["alice@example.com", "frank@example.com"])
            # postmap folds keys: the lookup is case-insensitive
            self.assertEqual(pm.targets("Postmaster@Other.org"), ["erin@other.org"])
        finally:
            pm.cleanup()

    def test_every_conflict_kind_in_the_report(self):
        r = self.report
        self.assertRegex(r, r"New account where an old alias was: sales@example\.com")
        self.assertRegex(r, r"Old account that is now an alias: dave@example\.com")
        self.assertRegex(r, r"Same alias, different targets: info@example\.com")
        self.assertRegex(r, r"Alias to an address that is no account: team@example\.com")
        self.assertRegex(r, r"Alias to an address that is no account: news@example\.com")
        self.assertEqual(r.count("To decide:"), 5)
        self.assertIn("old server: an alias to carol@example.com", r)
        self.assertIn("new server: an alias to alice@example.com", r)
        self.assertIn("ghost@example.com is neither an account nor an alias", r)
        figures = at.text_figures(r)
        self.assertEqual(figures, {
            "Conflicts to decide": 5,
            "Accounts restored from the old server": 1,
            "Passwords kept from the new server": 1,
            "Old settings restored": 2,
            "Accounts added after the incident": 2,
            "Accounts unchanged": 1,
            "Aliases restored from the old server": 1,
            "Aliases added after the incident": 2,
            "Aliases unchanged": 1,
        })
        other = at.read(os.path.join(self.sc.out, "reports", "other.org.txt"))
        self.assertIn("Nothing to decide for this domain.", other)
        self.assertEqual(at.text_figures(other)["Accounts restored from the old server"], 1)
        self.assertEqual(at.text_figures(other)["Aliases restored from the old server"], 1)

    def test_report_explains_kept_fields(self):
        r = self.report
        bob = r[r.index("\n  bob@example.com"):]
        self.assertIn("password: the new server's (changed after the incident)", bob)
        self.assertIn("restored from the old server: userdb_quota_rule=*:storage=2G", bob)
        self.assertIn("not restored (a passdb field of the old password", bob)
        self.assertIn("restored from the old server: userdb_master_pass=(value not shown)", bob)
        gina = r[r.index("\n  gina@example.com"):]
        self.assertIn("not restored (mailbox location", gina)
        self.assertIn("restored the old server's value: userdb_quota_rule=*:storage=3G "
                      "(new server: userdb_quota_rule=*:storage=9G)", gina)

    def test_no_secret_in_any_output(self):
        outputs = [self.stdout, self.stderr, at.read(self.merged_map)]
        for root, dirs, files in os.walk(os.path.join(self.sc.out, "reports")):
            for name in files:
                outputs.append(at.read(os.path.join(root, name)))
        self.assertGreaterEqual(len(outputs), 7)
        for secret in self.sc.secrets():
            for text in outputs:
                self.assertNotIn(secret, text)
            # and no hash fragment either (the part after the salt)
            if secret.startswith("{"):
                self.assertFalse(any(secret.rsplit("$", 1)[1] in t for t in outputs))

    def test_rerun_is_identical(self):
        out2 = os.path.join(self.sc.dir, "out-again")
        rc, _, _ = self.sc.run(out=out2)
        self.assertEqual(rc, 1)
        for name in ("passwd", "virtual"):
            self.assertEqual(at.read(os.path.join(out2, name)),
                             at.read(os.path.join(self.sc.out, name)))
        self.assertEqual(os.listdir(out2 + "/reports").sort(),
                         os.listdir(self.sc.out + "/reports").sort())
        self.assertFalse([n for n in os.listdir(out2) if n.startswith(".")])


class NoConflictTest(unittest.TestCase):
    def test_exit_zero_without_conflicts(self):
        at.require_root()
        sc = at.Scenario()
        try:
            old = sc.write("o.passwd", "a@x.org:{PLAIN}pw-one-Qz:8:8::/h/a::\n")
            new = sc.write("n.passwd", "a@x.org:{PLAIN}pw-two-Qz:8:8::/h/a::\n"
                                       "b@x.org:{PLAIN}pw-three-Qz:8:8::/h/b::\n")
            rc, out, err = sc.run(old_passwd=old, new_passwd=new,
                                  old_aliases="", new_aliases="")
            self.assertEqual(rc, 0, err)
            self.assertIn("x.org: 0 conflicts", out)
            self.assertEqual(at.read(os.path.join(sc.out, "virtual")).count("\n"), 1)
            report = at.read(os.path.join(sc.out, "reports", "x.org.txt"))
            self.assertNotIn("{PLAIN}", report + out + err)
            self.assertNotIn("-Qz", report + out + err)
            self.assertIn("Nothing to decide for this domain.", report)
        finally:
            sc.cleanup()


class DomainNamesTest(unittest.TestCase):
    def test_domain_named_like_the_no_domain_report(self):
        # a@_nodomain is a legal address whose domain was once written to
        # the file of "addresses without a domain": the run failed ("File
        # exists"), nothing written
        at.require_root()
        sc = at.Scenario()
        try:
            old = sc.write("o.passwd", "a@_nodomain:{PLAIN}pw-one-Qz:8:8::/h/a::\n"
                                       "b:{PLAIN}pw-two-Qz:8:8::/h/b::\n")
            new = sc.write("n.passwd", "a@_nodomain:{PLAIN}pw-three-Qz:8:8::/h/a::\n")
            rc, out, err = sc.run(old_passwd=old, new_passwd=new,
                                  old_aliases="", new_aliases="")
            self.assertEqual(rc, 0, out + err)
            reports = os.path.join(sc.out, "reports")
            names = sorted(os.listdir(reports))
            self.assertEqual(len(names), 4, names)
            self.assertIn("_nodomain.txt", names)
            nodomain = at.read(os.path.join(reports, "_nodomain.txt"))
            self.assertIn("addresses without a domain", nodomain)
            other = [n for n in names if n.endswith(".txt") and n != "_nodomain.txt"]
            self.assertIn("_nodomain", at.read(os.path.join(reports, other[0])))
        finally:
            sc.cleanup()


class MalformedTest(unittest.TestCase):
    def setUp(self):
        at.require_root()
        self.sc = at.Scenario()
        self.leaked = "{SHA512-CRYPT}$6$leakleakleak$doNotPrintThisHashAnywhere"
        # line 3: a hash pasted without its user (no ':' at all)
        self.bad_passwd = self.sc.write("bad.passwd", "".join([
            at.read(self.sc.old_passwd).splitlines(True)[1],
            "# comment\n",
            self.leaked + "\n",
            "zed@example.com:{PLAIN}zed-pw:8:8::/srv/old/example.com/zed::\r\n",
            "zoe@example.com:{PLAIN}zoe-pw:8:8::/srv/old/example.com/zoe::\n",
            "ZOE@example.com:{PLAIN}zoe-pw2:8:8::/srv/old/example.com/zoe2::\n",
            "yan@example.com:{PLAIN}yan-pw:8/8:8::/srv/old/example.com/yan::\n",
            "yve@example.com:{PLAIN}yve-pw:8:8::/srv/old/example.com/yve::=x\n",
        ]))
        self.bad_map = self.sc.write("bad.virtual", "".join([
            "   stray@example.com continuation without an entry\n",
            "lonely@example.com\n",
            "ok@example.com alice@example.com\n",
            "ok@example.com bob@example.com\n",
        ]))

    def tearDown(self):
        self.sc.cleanup()

    def test_stops_without_partial_output(self):
        # an earlier run's outputs stay as they were
        rc, _, _ = self.sc.run()
        self.assertEqual(rc, 1)
        before = {n: at.read(os.path.join(self.sc.out, n)) for n in ("passwd", "virtual")}
        rc, out, err = self.sc.run(old_passwd=self.bad_passwd, old_aliases=self.bad_map)
        self.assertEqual(rc, 2, err)
        self.assertEqual(out, "")
        bad = self.bad_passwd
        bm = self.bad_map
        self.assertIn("%s:3: no ':' after the user name" % bad, err)
        self.assertIn("%s:4: carriage return" % bad, err)
        self.assertIn("%s:6: same user as line 5" % bad, err)
        self.assertIn("%s:7: uid is neither a number nor a name" % bad, err)
        self.assertIn("%s:8: extra field without a name" % bad, err)
        self.assertIn("%s:1: line starts with whitespace" % bm, err)
        self.assertIn("%s:2: no target after the address" % bm, err)
        self.assertIn("%s:4: same address as line 3" % bm, err)
        self.assertIn("nothing written", err)
        self.assertNotIn(self.leaked, err)
        self.assertNotIn("leakleakleak", err)
        for n, text in before.items():
            self.assertEqual(at.read(os.path.join(self.sc.out, n)), text)
        self.assertFalse([n for n in os.listdir(self.sc.out) if n.startswith(".")])
        # and into a fresh directory: nothing at all
        fresh = os.path.join(self.sc.dir, "fresh")
        rc, _, _ = self.sc.run(out=fresh, old_passwd=self.bad_passwd)
        self.assertEqual(rc, 2)
        self.assertFalse(os.path.exists(fresh))

    def test_keep_going_writes_the_rest(self):
        rc, out, err = self.sc.run("--keep-going", old_passwd=self.bad_passwd,
                                   old_aliases=self.bad_map)
        self.assertEqual(rc, 1, err)
        skipped = at.read(os.path.join(self.sc.out, "skipped.txt"))
        self.assertEqual(len([l for l in skipped.splitlines() if not l.startswith("#")]), 8)
        self.assertIn("%s:3: no ':'" % self.bad_passwd, skipped)
        self.assertIn("skipped: %s:3:" % self.bad_passwd, err)
        self.assertIn("8 input lines left out", err)
        merged = at.read(os.path.join(self.sc.out, "passwd"))
        self.assertIn("zoe@example.com:{PLAIN}zoe-pw:", merged)  # the first one
        for gone in ("zed@", "ZOE@", "yan@", "yve@", "leakleak"):
            self.assertNotIn(gone, merged)
        pm = at.Postmap(os.path.join(self.sc.out, "virtual"))
        try:
            self.assertEqual(pm.targets("ok@example.com"), ["alice@example.com"])
            self.assertIsNone(pm.query("lonely@example.com"))
        finally:
            pm.cleanup()
        report = at.read(os.path.join(self.sc.out, "reports", "example.com.txt"))
        self.assertIn("8 input lines could not be read", report)
        for text in [out, err, skipped, report]:
            for secret in ("leakleakleak", "zed-pw", "zoe-pw", "yan-pw", "yve-pw"):
                self.assertNotIn(secret, text)
        # a clean run afterwards removes the stale list
        rc, _, _ = self.sc.run()
        self.assertEqual(rc, 1)
        self.assertFalse(os.path.exists(os.path.join(self.sc.out, "skipped.txt")))

    def test_usage_errors(self):
        rc, out, err = self.sc.run("--bogus")
        self.assertEqual(rc, 2)
        self.assertIn("usage:", err)
        rc, out, err = self.sc.run(old_passwd=os.path.join(self.sc.dir, "missing"))
        self.assertEqual(rc, 2)
        self.assertIn("No such file", err)
        self.assertFalse(os.path.exists(self.sc.out))


class CommitTest(unittest.TestCase):
    """The outputs are renamed into place one by one (POSIX has nothing
    better): what the usual mistakes leave behind, and what a rename that
    fails half way says."""

    def setUp(self):
        at.require_root()
        self.sc = at.Scenario()
        # an earlier run on other inputs (no carol, no old map) with a
        # line left out: its outputs, skipped.txt included, are what must
        # not be lost; every one differs from what the runs below write
        old = [l for l in at.read(self.sc.old_passwd).splitlines(True)
               if not l.startswith("carol@")]
        bad = self.sc.write("bad.passwd", "".join(old) + "no colon here\n")
        rc, _, err = self.sc.run("--keep-going", old_passwd=bad, old_aliases="")
        self.assertEqual(rc, 1, err)
        self.before = self.snapshot()
        self.assertIn("skipped.txt", self.before)
        self.assertIn("reports/example.com.html", self.before)

    def tearDown(self):
        self.sc.cleanup()

    def snapshot(self):
        out = {}
        for root, dirs, files in os.walk(self.sc.out):
            for n in files:
                p = os.path.join(root, n)
                with open(p, "rb") as f:
                    out[os.path.relpath(p, self.sc.out)] = f.read()
        return out

    def no_temp_dir_left(self):
        self.assertFalse([n for n in os.listdir(self.sc.out) if n.startswith(".")])

    def test_directory_in_place_of_an_output(self):
        # caught before the first rename: nothing replaced, nothing removed
        # (the old skipped.txt included, although this run has none)
        html = os.path.join(self.sc.out, "reports", "example.com.html")
        os.unlink(html)
        os.mkdir(html)
        del self.before["reports/example.com.html"]
        rc, out, err = self.sc.run()
        self.assertEqual(rc, 2, err)
        self.assertEqual(out, "")
        self.assertIn("%s is a directory: move it away and run again" % html, err)
        self.assertIn("nothing written to %s" % self.sc.out, err)
        self.assertEqual(self.snapshot(), self.before)
        self.no_temp_dir_left()
        os.rmdir(html)
        rc, _, err = self.sc.run()
        self.assertEqual(rc, 1, err)
        self.assertFalse(os.path.exists(os.path.join(self.sc.out, "skipped.txt")))
        self.assertTrue(os.path.isfile(html))

    def test_rename_fails_half_way(self):
        # A file mounted over the output `virtual` (in a private mount
        # namespace) cannot be replaced: rename() says EBUSY after the
        # reports are in place, a failure no check beforehand can see.
        target = os.path.join(self.sc.out, "virtual")
        shadow = self.sc.write("shadow", "mounted over virtual\n")
        wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh",
                shadow, target]
        probe = subprocess.run(wrap + ["true"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
        if probe.returncode != 0:
            self.skipTest("no private mount namespace: %s" % probe.stdout)
        rc, out, err = self.sc.run(wrap=wrap)
        self.assertEqual(rc, 3, err)
        self.assertEqual(out, "")
        self.assertNotIn("nothing written", err)
        o = self.sc.out
        self.assertIn("cannot rename %s/.backfillctl-accounts." % o, err)
        self.assertIn("to %s: Device or resource busy" % target, err)
        self.assertIn("%s is PARTLY written: 4 of this run's 6 outputs are in place" % o, err)
        for n in ("example.com.txt", "example.com.html", "other.org.txt", "other.org.html"):
            self.assertIn("  written:     %s/reports/%s\n" % (o, n), err)
        for n in ("virtual", "passwd"):
            self.assertIn("  not written: %s/%s (" % (o, n), err)
        self.assertIn("  not removed: %s/skipped.txt (" % o, err)
        self.assertIn("do not install anything from %s yet" % o, err)
        # written: the new reports; everything else as the earlier run left it
        after = self.snapshot()
        self.assertEqual(sorted(after), sorted(self.before))
        # (compared, not printed: passwd holds hashes)
        self.assertEqual(sorted(n for n in after if after[n] != self.before[n]),
                         ["reports/%s" % n for n in sorted(os.listdir(o + "/reports"))])
        self.no_temp_dir_left()
        # the cause gone, a run replaces them all and removes the old list
        rc, _, err = self.sc.run()
        self.assertEqual(rc, 1, err)
        after = self.snapshot()
        self.assertEqual(sorted(n for n in self.before if after.get(n) == self.before[n]), [])
        self.assertNotIn("skipped.txt", after)
        self.no_temp_dir_left()


if __name__ == "__main__":
    unittest.main(verbosity=2)
