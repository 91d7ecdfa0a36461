"""Archive folders with odd names (review s6 F2, F3, F5): a name Dovecot
refuses for a new folder must never stop the user's merge; its messages
are merged under a creatable live name, or skipped and counted, and
every other folder is merged.  Real Dovecot, real doveadm.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402


def msg(tag, i):
    return ("From: a@example.com\r\nTo: x@example.com\r\nSubject: %s %d\r\n"
            "Message-ID: <%s-%d@example.com>\r\n\r\nbody %s %d\r\n"
            % (tag, i, tag, i, tag, i)).encode()


def add_folder(site, user, dirname, n, tag):
    """A Maildir++ folder directory as a restore leaves it (no Dovecot
    files), with n messages."""
    d = os.path.join(site.base, "archive", user, "Maildir", dirname)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(d, sub))
    for i in range(n):
        raw = msg(tag, i)
        with open(os.path.join(d, "cur", "%d.M%dP1.old,S=%d:2,S"
                               % (1500000000 + i, i, len(raw))), "wb") as f:
            f.write(raw)


def live_to_fs_layout(site, user):
    """The live Maildir as a server with LAYOUT=fs keeps it: the folder
    directories Maildir++ names ".Work.Projects" become "Work/Projects".
    Maildir++ directories left under LAYOUT=fs are not a mailbox Dovecot
    reads: 2.4.1 panics at the first listing of it, without the plugin too
    (docs/dovecot-releases.md)."""
    maildir = os.path.join(site.base, "live", user, "Maildir")
    for name in sorted(os.listdir(maildir)):
        if name.startswith(".") and name.strip("."):
            os.renames(os.path.join(maildir, name),
                       os.path.join(maildir, *name[1:].split(".")))
    mg.dovecot_mod.chown_tree(os.path.join(site.base, "live", user))


def split_list(text, sep):
    """A list field split at its separators, escaped items kept escaped
    (a backslash escapes the next character)."""
    items, cur, i = [], "", 0
    while i < len(text):
        if text[i] == "\\":
            cur += text[i:i + 2]
            i += 2
        elif text.startswith(sep, i):
            items.append(cur)
            cur, i = "", i + len(sep)
        else:
            cur += text[i]
            i += 1
    return items + [cur] if text else items


# user -> [(archive directory, messages)]
ODD = {
    # F2: mUTF-7 for "A<TAB>folder" and "Z<LF>z": Dovecot lists and reads
    # them, but refuses to create a live folder of that name
    "utf7ctl": [(".A&AAk-folder", 3), (".Z&AAo-z", 2)],
    # F4: names that would forge doveadm -f tab rows (mUTF-7 for
    # "zz<LF>mallory<TAB>ok<TAB>5") or make the lists inside a field
    # ambiguous (UIDWays "NAME=way,...", MissingFolderUID "NAME/uid; ...")
    "forge": [(".zz&AAo-mallory&AAk-ok&AAk-5", 2), (".Junk=live,INBOX", 1),
              (".a; b", 1)],
    # the same raw on disk: Dovecot lists it and cannot open it
    "rawnl": [(".zz\nmallory\tok\t5\t5\t0\t0\t\t\t0\t", 2)],
    # F3: listed, not openable: a raw tab, an mUTF-7 NUL
    "rawtab": [(".A\tfolder", 3)],
    "utf7nul": [(".a&AAA-b", 3)],
    # F5: not listed at all: the vname "inbox" is INBOX (an INBOX.inbox
    # of a server with the INBOX. prefix); ".INBOX" alike
    "inboxlc": [(".inbox", 3), (".INBOX", 1)],
    # F2: a live name Dovecot refuses whatever the mapping: a live
    # mailbox with LAYOUT=fs reserves Maildir's "new" as a folder name,
    # the old server's Maildir++ folder "Projects.new" is readable
    "fslive": [(".Projects.new", 3)],
}
EXTRA = {"fslive": "userdb_mail=maildir:~/Maildir:LAYOUT=fs"}
# directory -> messages Dovecot cannot read in it, per user
UNREAD = {"rawnl": 2, "rawtab": 3, "utf7nul": 3, "inboxlc": 4}
FORGED = "zz\nmallory\tok\t5"
TAB_CMDS = ("plan", "verify", "run", "status", "verify")


class FolderNames(bftest.SiteCase):
    @classmethod
    def build(cls, site):
        cls.base_count = {}
        for user, folders in ODD.items():
            site.add_user(user, mg.standard_scenario(3), record=False, freeze=False,
                          extra=EXTRA.get(user, ""))
            if "LAYOUT=fs" in EXTRA.get(user, ""):
                live_to_fs_layout(site, user)
            arch = os.path.join(site.base, "archive", user, "Maildir")
            cls.base_count[user] = sum(
                len(files) for d, _, files in os.walk(arch)
                if os.path.basename(d) in ("cur", "new"))
            for dirname, n in folders:
                add_folder(site, user, dirname, n, user + dirname)
            mg.dovecot_mod.chown_tree(os.path.join(site.base, "archive", user))
            mg.freeze(os.path.join(site.base, "archive", user))
        site.start(plugin_on=False)
        dc = site.dc
        cls.plan = bd.by_user(bd.doveadm_json(dc, "backfill", "plan", "-A", ok=(0, 1, 75))[0])
        # before the merge: every archived message missing, in the list
        cls.verify0 = bd.by_user(bd.doveadm_json(dc, "backfill", "verify", "-A", ok=(0, 1))[0])
        cls.tab = [(cmd, bd.doveadm(dc, "backfill", cmd, "-A", fmt="tab").stdout)
                   for cmd in ("plan", "verify")]
        rows, r = bd.doveadm_json(dc, "backfill", "run", "-A", ok=(0, 1, 75))
        cls.run1, cls.run1_log = bd.by_user(rows), r.stderr
        cls.run2 = bd.by_user(bd.doveadm_json(dc, "backfill", "run", "-A", ok=(0, 1, 75))[0])
        cls.status = bd.by_user(bd.doveadm_json(dc, "backfill", "status", "-A", ok=(0, 1))[0])
        cls.verify = bd.by_user(bd.doveadm_json(dc, "backfill", "verify", "-A", ok=(0, 1))[0])
        cls.tab += [(cmd, bd.doveadm(dc, "backfill", cmd, "-A", fmt="tab").stdout)
                    for cmd in ("status", "verify")]
        # a staged restore after the merge is done: a folder restored
        # since makes the merge run and finish again, on the same record
        add_folder(site, "inboxlc", ".Later", 2, "later")
        mg.freeze(os.path.join(site.base, "archive", "inboxlc"))
        cls.run3 = bd.by_user(bd.doveadm_json(dc, "backfill", "run", "-u", "inboxlc",
                                              ok=(0, 1))[0])
        cls.status3 = bd.by_user(bd.doveadm_json(dc, "backfill", "status", "-u", "inboxlc",
                                                 ok=(0, 1))[0])

    def live_folders(self, user):
        r = self.site.dc.doveadm("mailbox", "list", "-u", user)
        return set(r.stdout.decode(errors="replace").splitlines())

    def live_count(self, user, folder):
        r = self.site.dc.doveadm("-f", "flow", "mailbox", "status", "-u", user,
                                 "messages", folder)
        return int(r.stdout.decode().split("=")[1])

    def test_f2_control_character_names_mapped(self):
        u = "utf7ctl"
        extra = sum(n for _, n in ODD[u])
        plan = self.plan[u]
        self.assertEqual(plan["state"], "pending", plan)
        created = plan["folders_to_create"].split(", ")
        self.assertIn("A_folder", created, plan)
        self.assertIn("Z_z", created, plan)
        self.assertEqual(int(plan["archived"]), self.base_count[u] + extra, plan)
        run = self.run1[u]
        self.assertEqual(run["result"], "done", run)
        self.assertEqual(int(run["skipped"]), 0, run)
        self.assertEqual(int(run["archived"]), self.base_count[u] + extra, run)
        folders = self.live_folders(u)
        self.assertIn("A_folder", folders)
        self.assertIn("Z_z", folders)
        self.assertEqual(self.live_count(u, "A_folder"), 3)
        self.assertEqual(self.live_count(u, "Z_z"), 2)
        # the second run finds the merge done: nothing twice, no new folder
        self.assertEqual(self.run2[u]["result"], "done", self.run2[u])
        self.assertEqual(self.live_folders(u), folders)
        self.assertEqual(self.status[u]["state"], "done", self.status[u])
        v = self.verify[u]
        self.assertEqual(v["result"], "ok", v)
        self.assertEqual(int(v["archived"]), self.base_count[u] + extra, v)
        # logged with both names, the control character escaped
        self.assertIn("archive folder A\\tfolder merges into live folder A_folder",
                      self.run1_log)


    def test_f4_tab_rows_not_forged(self):
        for cmd, out in self.tab:
            lines = out.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            width = len(lines[0].split("\t"))
            users = []
            for line in lines[1:]:
                self.assertEqual(len(line.split("\t")), width,
                                 "%s -f tab: %r" % (cmd, line))
                users.append(line.split("\t")[0])
            self.assertEqual(sorted(users), sorted(ODD), "%s -f tab:\n%s" % (cmd, out))

    def test_f4_names_escaped(self):
        # json carries the same escaped value as tab
        ways = split_list(self.status["forge"]["uid_ways"], ",")
        self.assertIn("zz\\nmallory\\tok\\t5=archive", ways)
        self.assertIn("Junk\\=live\\,INBOX=archive", ways)
        self.assertEqual(ways, split_list(self.plan["forge"]["uid_ways"], ","))
        missing = split_list(self.verify0["forge"]["missing_list"], "; ")
        self.assertIn("zz\\nmallory\\tok\\t5/1", missing)
        self.assertIn("Junk\\=live\\,INBOX/1", missing)
        self.assertIn("a\\; b/1", missing)
        # the live folder has no control character (F2)
        self.assertIn("zz_mallory_ok_5", split_list(self.plan["forge"]["folders_to_create"], ", "))
        # a name in free text: control characters escaped, nothing raw
        for row in (self.status["rawnl"], self.verify["rawnl"]):
            for value in row.values():
                self.assertFalse(any(ord(c) < 0x20 or ord(c) == 0x7f for c in value), row)
        self.assertIn("zz\\nmallory\\tok", self.verify["rawnl"]["error"])
        # the record's last_error is stored as one line without them
        self.assertIn("zz mallory ok", self.status["rawnl"]["last_error"])


    def test_f3_f5_unread_directories_counted(self):
        """Merged, every message of the readable folders; those of the
        directories no folder covers counted, once, and named."""
        for u, n in UNREAD.items():
            with self.subTest(user=u):
                total = self.base_count[u] + n
                run = self.run1[u]
                self.assertEqual(run["result"], "done", run)
                self.assertEqual(int(run["archived"]), total, run)
                self.assertEqual(int(run["skipped"]), n, run)
                # every readable folder merged
                self.assertEqual(int(run["added"]) + int(run["duplicates"]),
                                 self.base_count[u], run)
                # a second run, which finds the merge done, counts nothing twice
                self.assertEqual(self.run2[u]["result"], "done", self.run2[u])
                st = self.status[u]
                self.assertEqual((int(st["archived"]), int(st["skipped"])), (total, n), st)
                self.assertIn("messages in archive folder directories no folder", st["last_error"])
                # plan said so beforehand
                self.assertEqual(int(self.plan[u]["skipped"]), n, self.plan[u])
        # finishing again counts the new folder, not the directories again
        u, n = "inboxlc", UNREAD["inboxlc"]
        st = self.status3[u]
        self.assertEqual(st["state"], "done", (self.run3, st))
        self.assertEqual((int(st["archived"]), int(st["skipped"])),
                         (self.base_count[u] + n + 2, n), st)
        self.assertEqual(st["last_error"].count("messages in archive folder directories"), 1, st)

    def test_f3_f5_verify_goes_on(self):
        """One folder verify cannot read no longer makes the user's row
        "failed" with no figures: the rest is verified, the directory's
        messages are counted missing and named."""
        for u, n in UNREAD.items():
            with self.subTest(user=u):
                total = self.base_count[u] + n
                v = self.verify[u]
                self.assertEqual(v["result"], "missing", v)
                self.assertEqual(int(v["archived"]), total, v)
                self.assertEqual(int(v["present"]), self.base_count[u], v)
                self.assertEqual(int(v["missing"]), n, v)
                self.assertIn("messages in archive folder directories no folder", v["error"])
                for dirname, _ in ODD[u]:
                    self.assertIn(dirname.replace("\t", "\\t").replace("\n", "\\n"),
                                  v["error"])


    def test_f2_uncreatable_live_name_skipped_and_counted(self):
        u = "fslive"
        total = self.base_count[u] + 3
        plan = self.plan[u]
        self.assertEqual(plan["state"], "pending", plan)
        self.assertEqual(int(plan["skipped"]), 3, plan)
        self.assertNotIn("Projects.new", split_list(plan["folders_to_create"], ", "), plan)
        run = self.run1[u]
        self.assertEqual(run["result"], "done", run)
        self.assertEqual((int(run["archived"]), int(run["skipped"])), (total, 3), run)
        # every other folder merged
        self.assertEqual(int(run["added"]) + int(run["duplicates"]), self.base_count[u], run)
        self.assertEqual(self.run2[u]["result"], "done", self.run2[u])
        st = self.status[u]
        self.assertEqual((st["state"], int(st["archived"]), int(st["skipped"])),
                         ("done", total, 3), st)
        self.assertTrue(st["last_error"].startswith(
            "archive folder skipped: Projects.new: creating live folder Projects.new: "), st)
        v = self.verify[u]
        self.assertEqual((v["result"], int(v["missing"])), ("missing", 3), v)
        self.assertEqual(sorted(split_list(v["missing_list"], "; ")),
                         ["Projects.new/%d" % i for i in (1, 2, 3)], v)


if __name__ == "__main__":
    unittest.main(verbosity=2)
