"""backfillctl report on a real site: a private Dovecot with the plugin,
user@domain logins in three domains, merges by doveadm backfill run, the
state store they wrote (a failed merge and a skipped message written
into it as the plugin records them), and `doveadm -f tab backfill verify
-A`.  The
reports per domain show the store's and verify's figures (thousands
separators), and list every failed, unfinished, skipped or missing case
with the next step; the HTML pages are self-contained and render in
headless Chromium."""
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402
import chromium  # noqa: E402  (tests/lib, on the path through bftest)
import statedb  # noqa: E402

BUILD = os.path.dirname(bftest.plugin_dir())
BACKFILLCTL = os.environ.get("BACKFILLCTL",
                             os.path.join(BUILD, "backfillctl", "backfillctl"))


def figure(text, label):
    m = re.search(r"^\s*%s\s+([\d,]+)$" % re.escape(label), text, re.M)
    return m.group(1) if m else None


def verify_and_report(cls, site):
    """The runbook's two steps into a fresh directory (cls.out): a real
    `doveadm -f tab backfill verify -A` (cls.verify, its text and exit
    code), then `backfillctl report` on it and the store (cls.r)."""
    cls.out = tempfile.mkdtemp(prefix="bf-report-")
    r = bd.doveadm(site.dc, "backfill", "verify", "-A", fmt="tab")
    cls.verify_out, cls.verify_rc = r.stdout, r.returncode
    cls.verify = os.path.join(cls.out, "verify.tsv")
    with open(cls.verify, "w") as f:
        f.write(r.stdout)
    cls.r = subprocess.run(
        [BACKFILLCTL, "--state", "sqlite:%s/state.db" % site.state_dir, "report",
         "--verify", cls.verify, "--out", os.path.join(cls.out, "domains")],
        capture_output=True, text=True)


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.site = site = bftest.Site()
        try:
            bd.use_full_usernames(site)
            # example.com: one big user, to see thousands separators
            site.add_user("erin@example.com", mg.bulk_scenario(5, 1200, 10, 5),
                          record=False)
            site.add_user("alice@example.org", mg.bulk_scenario(1, 12, 4, 2), record=False)
            site.add_user("bob@example.org", mg.bulk_scenario(2, 12, 4, 2), record=False)
            site.add_user("carol@example.net", mg.bulk_scenario(3, 12, 4, 2), record=False)
            site.add_user("dave@example.net", mg.bulk_scenario(4, 12, 4, 2), record=False)
            site.start(plugin_on=False)
            for u in ("erin@example.com", "alice@example.org", "bob@example.org",
                      "carol@example.net"):
                bd.doveadm_json(site.dc, "backfill", "run", "-u", u, ok=(0, 1))
            # bob loses one merged message: verify names it
            db = statedb.connect(os.path.join(site.state_dir, "state.db"))
            box, uid = db.execute("SELECT mailbox, uid FROM journal WHERE "
                                  "user='bob@example.org' ORDER BY seq LIMIT 1").fetchone()
            # alice's merge failed, as a merge that hit an I/O error records it
            db.execute("UPDATE merges SET status='failed', last_error=? WHERE "
                       "user='alice@example.org'",
                       ("INBOX/uid 7: reading the archive failed: Input/output error",))
            # one of carol's archived messages could not be read, as the
            # merge records a broken archive file
            db.execute("UPDATE merges SET skipped=1 WHERE user='carol@example.net'")
            db.commit()
            db.close()
            site.dc.doveadm("expunge", "-u", "bob@example.org", "mailbox", box, "uid", str(uid))
            # dave never merged
            verify_and_report(cls, site)
        except BaseException:
            site.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.site.close()
        shutil.rmtree(cls.out, ignore_errors=True)

    def read(self, name):
        with open(os.path.join(self.out, "domains", name)) as f:
            return f.read()

    def test_exit_and_files(self):
        self.assertEqual(self.verify_rc, 1)      # bob misses one
        self.assertEqual(self.r.returncode, 1, self.r.stdout + self.r.stderr)
        self.assertIn("3 domains", self.r.stdout)
        for name in ("example.com", "example.org", "example.net", "index"):
            for ext in ("txt", "html"):
                self.assertTrue(os.path.exists(os.path.join(self.out, "domains",
                                                            "%s.%s" % (name, ext))))

    def test_figures_from_store_and_verify(self):
        com = self.read("example.com.txt")
        self.assertEqual(figure(com, "Archived messages"), "1,200")
        self.assertEqual(figure(com, "added to the mailboxes"), "1,195")
        self.assertEqual(figure(com, "already in the mailboxes"), "5")
        self.assertEqual(figure(com, "archived messages present"), "1,200")
        self.assertIn("Every archived message is in its mailbox: 1,200 messages", com)
        org = self.read("example.org.txt")
        self.assertEqual(figure(org, "Users"), "2")
        self.assertEqual(figure(org, "failed"), "1")
        self.assertEqual(figure(org, "archived messages missing"), "1")

    def test_what_to_look_at_with_next_steps(self):
        org = self.read("example.org.txt")
        self.assertRegex(org, r"alice@example.org: merge failed: INBOX/uid 7: reading the "
                              r"archive failed: Input/output error\n\s+Next: fix what the "
                              r"error names, then doveadm backfill run -u alice@example.org")
        self.assertRegex(org, r"bob@example.org: 1 archived message missing: \S+/\d+\n"
                              r"\s+Next: doveadm backfill run -u bob@example.org, then "
                              r"doveadm backfill verify -u bob@example.org")
        net = self.read("example.net.txt")
        self.assertRegex(net, r"carol@example.net: 1 archived message skipped.*\n"
                              r"\s+Next: .*doveadm backfill revert -u carol@example.net -y")
        self.assertRegex(net, r"dave@example.net: 12 archived messages, no merge yet\n"
                              r"\s+Next: doveadm backfill run -u dave@example.net")
        self.assertNotIn("To look at", self.read("example.com.txt"))
        index = self.read("index.txt")
        self.assertRegex(index, r"example.org\s+2\s+24\s+\S+\s+1\s+2")

    def test_html_self_contained_with_charts(self):
        html = self.read("example.net.html")
        for bad in ("<script", "<link", "src=", "href=", "url(", "@import",
                    "http://", "https://"):
            self.assertNotIn(bad, html.lower())
        self.assertEqual(html.count('data-chart="'), 2)
        # nothing but the inline style allowed, should an escape ever slip
        self.assertIn('<meta http-equiv="Content-Security-Policy" content="default-src '
                      "'none'; style-src 'unsafe-inline'\">", html)
        self.assertIn('data-user="carol@example.net"', html)
        self.assertIn("Next: <code>doveadm backfill run -u dave@example.net</code>", html)

    def test_renders_in_chromium(self):
        if not chromium.available():
            self.skipTest("chromium not installed (scripts/install-deps)")
        w, h, size, err = chromium.screenshot(
            os.path.join(self.out, "domains", "example.org.html"), 1100, 1400,
            keep=os.environ.get("BF_REPORT_SCREENSHOT"))
        self.assertEqual((w, h), (1100, 1400), err)
        self.assertGreater(size, 20000)  # not a blank page


def store_with(path, rows):
    """A state store as backfillctl creates it, holding the merge records
    rows: (user, status, archived, added, duplicates, skipped, last_error)."""
    subprocess.run([BACKFILLCTL, "--state", "sqlite:" + path, "window", "status"],
                   capture_output=True, check=False)
    db = sqlite3.connect(path)
    for r in rows:
        db.execute("INSERT INTO merges(user, status, archived, added, duplicates, skipped, "
                   "last_error) VALUES (?, ?, ?, ?, ?, ?, ?)", r)
    db.commit()
    db.close()


FORGED_FOLDER = ".zz\nmallory@example.org\tok\t5\t5\t0\t0\t\t\t0\t"

VERIFY_HEADER = ("Username\tResult\tArchived\tPresent\tMissing\tSymlinks\t"
                 "MissingFolderUID\tError\tUIDMismatches\tUIDMismatchList\n")


class VerifyFindings(unittest.TestCase):
    """Every verify Result but ok and no-archive is a finding, from a real
    verify: a live folder that took the archive's UIDs and then got another
    UIDVALIDITY (result uids), and a symlink restored into an archive after
    its merge (result symlinks: the merge record knows nothing of it).  And
    an archive folder named to forge a verify row for another user: the
    real -f tab output keeps one row per user, the report reads it."""

    @classmethod
    def setUpClass(cls):
        cls.site = site = bftest.Site()
        try:
            bd.use_full_usernames(site)
            site.add_user("uids@example.com", mg.standard_scenario(61), record=False)
            site.add_user("links@example.com", mg.standard_scenario(62), record=False)
            site.add_user("fine@example.com", mg.standard_scenario(63), record=False)
            # an archive folder whose name would forge a verify row for a
            # user mallory if -f tab printed it as it is
            site.add_user("zed@example.org", mg.standard_scenario(64), record=False,
                          freeze=False)
            zed = os.path.join(site.archive_root, "zed@example.org")
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(zed, "Maildir", FORGED_FOLDER, sub))
            mg.dovecot_mod.chown_tree(zed)
            mg.freeze(zed)
            site.start(plugin_on=False)
            for u in ("uids@example.com", "links@example.com", "fine@example.com",
                      "zed@example.org"):
                bd.doveadm_json(site.dc, "backfill", "run", "-u", u, ok=(0, 1))
            rows, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "uids@example.com")
            cls.uid_ways = rows[0].get("uid_ways", "")
            site.dc.doveadm("mailbox", "update", "-u", "uids@example.com",
                            "--uid-validity", "12345", "Work")
            cur = os.path.join(site.archive_root, "links@example.com", "Maildir", "cur")
            os.symlink("/etc/hostname", os.path.join(cur, "1600000000.M9P9.old-mx,S=10:2,S"))
            verify_and_report(cls, site)
        except BaseException:
            site.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.site.close()
        shutil.rmtree(cls.out, ignore_errors=True)

    def test_uids_and_symlinks_are_findings(self):
        self.assertIn("Work=archive", self.uid_ways)
        self.assertEqual(self.verify_rc, 1, self.verify_out)
        self.assertRegex(self.verify_out, r"uids@example.com\tuids\t")
        self.assertRegex(self.verify_out, r"links@example.com\tsymlinks\t")
        self.assertEqual(self.r.returncode, 1, self.r.stdout + self.r.stderr)
        with open(os.path.join(self.out, "domains", "example.com.txt")) as f:
            txt = f.read()
        self.assertIn("2 of 3 users need a look", txt)
        self.assertRegex(txt, r"uids@example.com: 1 folder without the archive's UIDs "
                              r".*: Work: live folder Work has UIDVALIDITY 12345")
        self.assertRegex(txt, r"links@example.com: 1 archived item is a symlink: never "
                              r"read.*\n\s+Next: doveadm backfill verify -u "
                              r"'?links@example.com'? names each")
        self.assertNotRegex(txt, r"fine@example.com: ")
        self.assertEqual(figure(txt, "archived symlinks, never read"), "1")
        self.assertEqual(figure(txt, "folders without the archive's UIDs"), "1")


    def test_folder_name_forges_no_row(self):
        # every line of the real verify output has the header's shape, and
        # the report has one row per real user: no mallory
        lines = self.verify_out.splitlines()
        self.assertEqual({line.count("\t") for line in lines}, {lines[0].count("\t")},
                         self.verify_out)
        self.assertEqual(self.r.stderr, "")
        self.assertIn("2 domains, 4 users", self.r.stdout)
        users = []
        for name in os.listdir(os.path.join(self.out, "domains")):
            if name.endswith(".txt") and name != "index.txt":
                with open(os.path.join(self.out, "domains", name)) as f:
                    users += re.findall(r"^  (\S+@\S+) ", f.read().split("\nUsers\n", 1)[1],
                                        re.M)
        self.assertEqual(sorted(users), ["fine@example.com", "links@example.com",
                                         "uids@example.com", "zed@example.org"])


class CraftedVerify(unittest.TestCase):
    """Input no real site gives yet: the store and verify output written
    here in their exact formats."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="bf-report-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def report(self, rows, verify_lines, header=VERIFY_HEADER):
        """A run on a store of its own, into an out dir of its own."""
        self.runs = getattr(self, "runs", 0) + 1
        self.db = os.path.join(self.dir, "state%d.db" % self.runs)
        store_with(self.db, rows)
        path = os.path.join(self.dir, "verify%d.tsv" % self.runs)
        with open(path, "w") as f:
            f.write(header + "".join(verify_lines))
        self.outdir = os.path.join(self.dir, "out%d" % self.runs)
        return subprocess.run([BACKFILLCTL, "--state", "sqlite:" + self.db, "report",
                               "--verify", path, "--out", self.outdir],
                              capture_output=True, text=True)

    def read(self, name):
        with open(os.path.join(self.outdir, name)) as f:
            return f.read()

    def test_unknown_result_is_a_finding(self):
        # a check a later verify adds, with every count clean
        r = self.report([("new@example.com", "done", 10, 10, 0, 0, None),
                         ("ok@example.com", "done", 10, 10, 0, 0, None)],
                        ["new@example.com\tfolders-lost\t10\t10\t0\t0\t\t\t0\t\n",
                         "ok@example.com\tok\t10\t10\t0\t0\t\t\t0\t\n"])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        txt = self.read("example.com.txt")
        self.assertIn("1 of 2 users need a look", txt)
        self.assertRegex(txt, r"new@example.com: verify result folders-lost \(a result "
                              r"this backfillctl does not know\)")


    def test_postponed_verify_is_a_finding(self):
        # verify proved the content, the UID check could not read the store
        r = self.report([("late@example.com", "done", 10, 10, 0, 0, None)],
                        ["late@example.com\tpostponed\t10\t10\t0\t0\t\t"
                         "IMAP UIDs not checked: state store: locked (verify again "
                         "once it answers)\t0\t\n"])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        txt = self.read("example.com.txt")
        self.assertIn("1 of 1 users need a look", txt)
        self.assertIn("late@example.com: verify postponed: IMAP UIDs not checked", txt)
        self.assertIn("doveadm backfill verify -u late@example.com once the state "
                      "store answers", txt)
        # nor is it a verified user, and a failed row neither (review s8
        # L7): only ok@ is; the counts verify made are all there
        r = self.report([("late@example.com", "done", 10, 10, 0, 0, None),
                         ("ok@example.com", "done", 10, 10, 0, 0, None),
                         ("bad@example.com", "done", 10, 10, 0, 0, None)],
                        ["late@example.com\tpostponed\t10\t10\t0\t0\t\t"
                         "IMAP UIDs not checked: state store: locked\t0\t\n",
                         "ok@example.com\tok\t10\t10\t0\t0\t\t\t0\t\n",
                         "bad@example.com\tfailed\t10\t0\t0\t0\t\t"
                         "reading the archive failed\t0\t\n"])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        txt = self.read("example.com.txt")
        self.assertIn("2 of 3 users need a look", txt)
        self.assertEqual(figure(txt, "Verified users"), "1")
        self.assertEqual(figure(txt, "archived messages present"), "20")

    def test_row_not_of_the_headers_shape_refused(self):
        # what a doveadm that does not escape -f tab prints for alice's
        # archive folder ".zz\nmallory\tok\t5\t5\t0\t0\t\t\t0\t", named once in
        # her Error: her row split in two, the second one reading as a
        # verified user mallory
        rows = [("alice@example.com", "done", 5, 5, 0, 0, None)]
        r = self.report(rows, ["alice@example.com\tfailed\t0\t0\t0\t0\t\tzz\n",
                               "mallory@example.com\tok\t5\t5\t0\t0\t\t\t0\t: Mailbox "
                               "doesn't exist\t0\t\n"])
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("line 2: 8 fields, the header has 10", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.outdir, "example.com.txt")))
        # one tab too many in the last field: 11 fields
        r = self.report([], ["alice@example.com\tuids\t5\t5\t0\t0\t\t\t1\tA\tB: x\n"])
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("line 2: 11 fields, the header has 10", r.stderr)
        # an older verify's output (no Symlinks, no UID columns) is still read
        r = self.report([("bob@example.com", "done", 5, 5, 0, 0, None)],
                        ["bob@example.com\tok\t5\t5\t0\t\t\n"],
                        header="Username\tResult\tArchived\tPresent\tMissing\t"
                               "MissingFolderUID\tError\n")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_every_user_in_exactly_one_domain_report(self):
        long_domain = ".".join(["l" * 60] * 4) + ".example"   # 251 characters
        users = ["x@index", "y@_nodomain", "z", "A@Example.com", "b@example.com",
                 "erin@example.com.", "anna@bücher.example", "otto@münchen.example",
                 "p@a+b.example", "q@" + long_domain]
        rows = [(u, "done", 3, 3, 0, 0, None) for u in users]
        rows[3] = ("A@Example.com", "failed", 3, 0, 0, 0, "reading failed")
        r = self.report(rows, ["%s\tok\t3\t3\t0\t0\t\t\t0\t\n" % u for u in users])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(r.stderr, "")
        self.assertIn("8 domains, 10 users, 1 to look at", r.stdout)
        files = sorted(os.listdir(self.outdir))
        reports = [n for n in files if n.endswith(".txt") and n != "index.txt"]
        self.assertEqual(len(reports), 8, files)
        for n in reports:
            self.assertIn(n[:-4] + ".html", files)
        # each user in exactly one domain report's user list
        seen = {}
        for n in reports:
            txt = self.read(n)
            users_part = txt.split("\nUsers\n", 1)[1]
            for u in users:
                if re.search(r"^  %s\s" % re.escape(u), users_part, re.M):
                    seen.setdefault(u, []).append(n)
        self.assertEqual({u: len(seen.get(u, [])) for u in users}, {u: 1 for u in users})
        # one domain however spelled; its verdict covers the failed user
        self.assertEqual(seen["A@Example.com"], ["example.com.txt"])
        self.assertEqual(seen["erin@example.com."], ["example.com.txt"])
        com = self.read("example.com.txt")
        self.assertEqual(figure(com, "Users"), "3")
        self.assertIn("1 of 3 users need a look", com)
        self.assertEqual(seen["z"], ["_nodomain.txt"])
        self.assertIn("Restore report: users without a domain", self.read("_nodomain.txt"))
        for u, domain in (("x@index", "index"), ("y@_nodomain", "_nodomain"),
                          ("anna@bücher.example", "bücher.example"),
                          ("q@" + long_domain, long_domain)):
            self.assertTrue(seen[u][0].startswith("_d-"), seen[u])
            self.assertIn("Restore report: %s\n" % domain, self.read(seen[u][0]))
        # the index: every domain by its real name, linked to its own page
        index = self.read("index.html")
        links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', index)
        self.assertEqual(len(links), 8, links)
        self.assertEqual(len(set(h for h, _ in links)), 8)
        for href, _ in links:
            self.assertIn(href, files)
        self.assertIn(("_nodomain.html", "users without a domain"), links)
        self.assertIn("<title>Restore report: all domains", index)
        self.assertIn("bücher.example", [t for _, t in links])

    def test_next_commands_quoted_and_text_escaped(self):
        # legal local parts (RFC 5321 atext) that a shell reads otherwise,
        # an error text that forges a line and sends a terminal escape,
        # and counts below zero from a damaged store
        marker = os.path.join(self.dir, "pwned")
        users = ["o'brien@example.com", "x`touch %s`@example.com" % marker,
                 "d$(id)ollar|pipe&amp;semi;@example.com", "mallory@example.com",
                 "neg@example.com"]
        rows = [(u, "failed", 2, 0, 0, 0, "reading failed") for u in users[:3]]
        rows.append(("mallory@example.com", "failed", 1, 0, 0, 0,
                     "x\nEvery archived message is in its mailbox\n\x1b[2J\xc2\x9b"))
        rows.append(("neg@example.com", "done", -1, -5, 0, 0, None))
        r = self.report(rows, ["%s\tok\t2\t2\t0\t0\t\t\t0\t\n" % u for u in users])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        txt = self.read("example.com.txt")
        nexts = re.findall(r"^\s+Next: (.*)$", txt, re.M)
        self.assertGreaterEqual(len(nexts), 5, txt)
        args = []
        for line in nexts:
            args += re.findall(r"-u ('(?:[^']|'\\'')*'|[^\s,;']+)", line)
        self.assertTrue(args)
        got = set()
        for a in args:
            sh = subprocess.run(["sh", "-n", "-c", "doveadm backfill run -u " + a],
                                capture_output=True, text=True)
            self.assertEqual(sh.returncode, 0, (a, sh.stderr))
            sh = subprocess.run(["sh", "-c", "printf '%s' " + a], capture_output=True,
                                text=True)
            got.add(sh.stdout)
        self.assertFalse(os.path.exists(marker), "a Next: command ran a command")
        self.assertEqual(got, set(users))
        # the text shows control characters escaped: no forged line, no escape
        self.assertNotIn("\x1b", txt)
        self.assertNotIn("\x9b", txt)
        self.assertNotRegex(txt, r"(?m)^Every archived message")
        self.assertIn(r"x\x0aEvery archived message is in its mailbox\x0a\x1b[2J", txt)
        # a count below zero: a finding, and no wrapped count in the figures
        self.assertRegex(txt, r"neg@example.com: ")
        self.assertNotIn("18,446,744", txt)
        self.assertIn("5 of 5 users need a look", txt)

    def test_out_dir_private_and_no_symlink_followed(self):
        rows = [("a@example.com", "done", 2, 2, 0, 0, None)]
        lines = ["a@example.com\tok\t2\t2\t0\t0\t\t\t0\t\n"]
        r = self.report(rows, lines)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(self.outdir).st_mode), 0o750)
        for n in os.listdir(self.outdir):
            self.assertFalse(n.startswith("."), n)   # no temporary left
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.outdir, n)).st_mode)
                             & 0o007, 0, n)
        # symlinks planted at every name the report writes, temporary
        # (the previous report's .NAME.EXT.tmp) or final: none followed
        victim = os.path.join(self.dir, "victim")
        with open(victim, "w") as f:
            f.write("precious\n")
        os.chmod(victim, 0o600)
        for n in ("example.com", "index"):
            for ext in ("txt", "html"):
                for planted in (".%s.%s.tmp" % (n, ext), "%s.%s" % (n, ext)):
                    p = os.path.join(self.outdir, planted)
                    if os.path.lexists(p):
                        os.unlink(p)
                    os.symlink(victim, p)
        out = self.outdir
        r = subprocess.run([BACKFILLCTL, "--state", "sqlite:" + self.db, "report",
                            "--verify", os.path.join(self.dir, "verify%d.tsv" % self.runs),
                            "--out", out], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n")
        for n in ("example.com.txt", "index.html"):
            self.assertFalse(os.path.islink(os.path.join(out, n)), n)
        self.assertIn("Restore report: example.com", self.read("example.com.txt"))
        # an out dir every local user may write to is refused, nothing written
        os.chmod(out, 0o777)
        os.unlink(os.path.join(out, "index.txt"))
        r = subprocess.run([BACKFILLCTL, "--state", "sqlite:" + self.db, "report",
                            "--verify", os.path.join(self.dir, "verify%d.tsv" % self.runs),
                            "--out", out], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("may be written by every local user", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(out, "index.txt")))

    def test_domain_map(self):
        # logins without a domain, the map's first line for a login wins,
        # its domains folded like the others
        rows = [(u, "done", 2, 2, 0, 0, None) for u in ("alice", "bob", "carol", "d@example.net")]
        store_with_map = self.report(rows, ["%s\tok\t2\t2\t0\t0\t\t\t0\t\n" % u[0]
                                            for u in rows])
        self.assertEqual(store_with_map.returncode, 0, store_with_map.stderr)
        mp = os.path.join(self.dir, "map")
        with open(mp, "w") as f:
            f.write("# login domain\nalice example.org\nalice example.net\n"
                    "  bob\tExample.NET.  \n")
        out = os.path.join(self.dir, "mapped")
        r = subprocess.run([BACKFILLCTL, "--state", "sqlite:" + self.db, "report",
                            "--verify", os.path.join(self.dir, "verify%d.tsv" % self.runs),
                            "--out", out, "--domain-map", mp], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("3 domains, 4 users", r.stdout)

        def users(name):
            with open(os.path.join(out, name)) as f:
                return re.findall(r"^  (\S+)\s+done", f.read(), re.M)
        self.assertEqual(users("example.org.txt"), ["alice"])
        self.assertEqual(users("example.net.txt"), ["bob", "d@example.net"])
        self.assertEqual(users("_nodomain.txt"), ["carol"])

if __name__ == "__main__":
    unittest.main(verbosity=2)
