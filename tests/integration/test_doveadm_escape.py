"""User names and error texts with control characters, as a real userdb
delivers them, printed by every doveadm backfill command in every -f
format: escaped (dovecot-plugin/value-escape.h), so that no value makes a
row or a field of its own.

Where such a name comes from: a userdb that renames the user in its
reply.  On 2.3 a checkpassword userdb script answers the lookup of
"nl@cp.example" with userdb_user holding a line feed, tabs and a
backslash (checkpassword-reply tab-escapes the values it passes on; it
refuses a tab only in USER and HOME), and doveadm goes on with the new
name.  A name looked up as it is cannot hold a tab or line feed:
doveadm's auth-master client treats such a name as not existing (so a
passwd-file user "a<TAB>b" is never opened), and a passwd-file has one
user per line.  2.4 has no checkpassword, and its passwd-file cannot
rename a user to such a name either (userdb_user=%{user|unhexlify} gives
the hex again: 2.4's variables print binary values as hex); a Lua, SQL
or LDAP userdb could, none of which the test machines have.  So on 2.4
only the Error column part runs, with a plain user name.

The Error column carries the same characters: the archive path of the
second user (renamed alike) is a symlink, refused with an error that
names the path, user name included; and its merge lease is held by an
owner whose name (text from the shared state store) has a line feed and
tabs, which revert and reset name in their "busy" error."""
import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import dv, mg  # noqa: E402
import statedb  # noqa: E402

# the rest of a forged verify row follows the line feed
NL_USER = "nl\nmallory\tok\t5\t5\t0@nl\tdom\\x.example"
NL_PRINTED = "nl\\nmallory\\tok\\t5\\t5\\t0@nl\\tdom\\\\x.example"
if dv.IS_24:
    LN_USER = LN_PRINTED = "ln@ln.example"
else:
    LN_USER = "ln\nmallory\tok@ln\ndom.example"
    LN_PRINTED = "ln\\nmallory\\tok@ln\\ndom.example"
# a name with a backslash (doveadm prints it doubled): archived, never
# merged; 2.3's checkpassword renames "bs@cp.example" to it (a passwd-file
# lookup cannot give it: auth_username_format escapes a backslash)
BS_USER = "b\\s@bs.example"
BS_PRINTED = "b\\\\s@bs.example"
# the holder of ln's merge lease, as the shared state store has it
OWNER = "mx2:4242\nmallory\treverted\t0"
OWNER_PRINTED = "mx2:4242\\nmallory\\treverted\\t0"

CHECKPASSWORD = """#!/bin/sh
# userdb lookups: nl and ln renamed to a name with a line feed and tabs,
# bs to one with a backslash; home and uid/gid as the passwd-file users
# have them (in EXTRA: checkpassword-reply refuses a tab in USER and HOME
# only)
name=$(head -c 256 <&3 | tr '\\0' '\\n' | head -n 1)
case "$name" in
nl@cp.example) export userdb_user='{nl_user}' userdb_home='{nl_home}' ;;
ln@cp.example) export userdb_user='{ln_user}' userdb_home='{ln_home}' ;;
bs@cp.example) export userdb_user='{bs_user}' userdb_home='{bs_home}' ;;
*) exit 3 ;;
esac
export userdb_uid={uid} userdb_gid={gid} AUTHORIZED=2
export EXTRA='userdb_user userdb_home userdb_uid userdb_gid'
exec "$@"
"""

COMMANDS = (("plan",), ("verify",), ("status",), ("status", "--by-domain"),
            ("run",), ("revert", "--yes"), ("reset",))


def checkpassword_conf(script):
    return "userdb {\n  driver = checkpassword\n  args = %s\n}\n" % script


class EscapeTest(bftest.SiteCase):
    # the names doveadm -u looks up, renamed by the userdb
    if dv.IS_24:
        NL_LOOKUP, LN_LOOKUP = None, LN_USER
    else:
        NL_LOOKUP, LN_LOOKUP = "nl@cp.example", "ln@cp.example"

    @classmethod
    def build(cls, site):
        bd.use_full_usernames(site)
        homes = {}
        for user, seed in ((NL_USER, 3), (LN_USER, 4)):
            if user == NL_USER and dv.IS_24:
                continue
            arch, homes[user], _ = mg.build_user(
                site.base, user, mg.standard_scenario(seed), record=False)
        if not dv.IS_24:
            _, homes[BS_USER], _ = mg.build_user(
                site.base, BS_USER, mg.standard_scenario(5), record=False)
        # ln's archive: a symlink, refused with its path in the error
        real = arch + ".real"
        os.rename(arch, real)
        os.symlink(os.path.basename(real), arch)
        if dv.IS_24:
            site.dc.add_user(LN_USER, home=homes[LN_USER])
        else:
            script = os.path.join(site.base, "checkpassword.sh")
            with open(script, "w") as f:
                f.write(CHECKPASSWORD.format(
                    nl_user=NL_USER, nl_home=homes[NL_USER],
                    ln_user=LN_USER, ln_home=homes[LN_USER],
                    bs_user=BS_USER, bs_home=homes[BS_USER],
                    uid=dv.MAIL_UID, gid=dv.MAIL_GID))
            os.chmod(script, 0o755)
            site.dc.extra_conf += checkpassword_conf(script)
        site.start(plugin_on=False)
        # the store is made by the first command; then ln's merge
        # lease goes to a holder whose name carries the characters
        bd.doveadm(site.dc, "backfill", "status", "-u", cls.LN_LOOKUP)
        db = statedb.connect(os.path.join(site.state_dir, "state.db"))
        with db:
            db.execute("INSERT INTO leases (name, owner, expires)"
                       " VALUES (?, ?, ?)",
                       ("merge/" + LN_USER, OWNER, 2 ** 40))
        db.close()

    def doveadm(self, fmt, lookup, *args):
        r = bd.doveadm(self.site.dc, "backfill", *args, "-u", lookup, fmt=fmt)
        # 75: busy (ln's lease); not a failed user lookup
        self.assertNotIn("User lookup failed", r.stderr)
        self.assertNotEqual(r.returncode, 67, r.stderr)
        return r

    def check_tab(self, out, printed, cmd):
        """One header and one row, each field in its column."""
        lines = out.split("\n")
        self.assertEqual(lines[-1], "", (cmd, out))
        self.assertEqual(len(lines), 3, (cmd, out))
        header, row = lines[0].split("\t"), lines[1].split("\t")
        self.assertEqual(len(row), len(header), (cmd, out))
        first = header[0].lower()
        if cmd[-1] == "--by-domain":
            self.assertEqual(first, "domain", (cmd, out))
            self.assertEqual(row[0], printed.rsplit("@", 1)[1], (cmd, out))
        else:
            self.assertEqual(first, "username", (cmd, out))
            self.assertEqual(row[0], printed, (cmd, out))
        return dict(zip((h.lower() for h in header), row))

    def check_all_formats(self, lookup, printed):
        """Every command in every format; returns the tab rows."""
        rows = {}
        for cmd in COMMANDS:
            r = self.doveadm("tab", lookup, *cmd)
            rows[cmd] = self.check_tab(r.stdout, printed, cmd)
            for fmt in ("table", "flow"):
                r = self.doveadm(fmt, lookup, *cmd)
                # nothing of a value breaks a line or sends an escape
                self.assertEqual(r.stdout.count("\n"),
                                 2 if fmt == "table" else 1, (cmd, fmt, r.stdout))
                self.assertNotIn("\t", r.stdout, (cmd, fmt))
                self.assertIn(printed.rsplit("@", 1)[1] if cmd[-1] == "--by-domain"
                              else printed, r.stdout, (cmd, fmt))
            r = self.doveadm("json", lookup, *cmd)
            jrows = json.loads(r.stdout)
            self.assertEqual(len(jrows), 1, (cmd, r.stdout))
            if cmd[-1] == "--by-domain":
                self.assertEqual(jrows[0]["domain"],
                                 printed.rsplit("@", 1)[1], cmd)
            else:
                # json carries the same escaped value as tab
                self.assertEqual(jrows[0]["username"], printed, cmd)
            for key, value in jrows[0].items():
                self.assertFalse(any(ord(c) < 0x20 for c in value),
                                 (cmd, key, value))
        return rows

    def test_user_name_escaped(self):
        if dv.IS_24:
            self.skipTest("no userdb on 2.4 here gives a name with a line "
                          "feed or tab (see the module's doc)")
        rows = self.check_all_formats(self.NL_LOOKUP, NL_PRINTED)
        self.assertEqual(rows[("run",)]["result"], "done", rows[("run",)])
        self.assertEqual(rows[("revert", "--yes")]["result"], "reverted",
                         rows[("revert", "--yes")])

        # backfillctl report meets verify's escaped name with the store's
        # own: one user, merged and verified
        bd.doveadm(self.site.dc, "backfill", "run", "-u", self.NL_LOOKUP)
        r = self.doveadm("tab", self.NL_LOOKUP, "verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = os.path.join(self.site.base, "report")
        verify = self.write_verify(out, r.stdout)
        rep = self.report(verify, os.path.join(out, "domains"))
        self.assertEqual(rep.returncode, 0, rep.stdout + rep.stderr)
        self.assertIn("1 users, 0 to look at", rep.stdout)
        with open(os.path.join(out, "domains", "index.txt")) as f:
            index = f.read()
        # the domain as doveadm prints it, in the text report's escaping
        self.assertIn(NL_PRINTED.rsplit("@", 1)[1], index)

        # the command to paste names the user as the store has it, in
        # the text report's escaping (a backslash stays itself)
        db = statedb.connect(os.path.join(self.site.state_dir, "state.db"))
        with db:
            db.execute("UPDATE merges SET status='failed' WHERE user=?",
                       (NL_USER,))
        db.close()
        rep = self.report(verify, os.path.join(out, "failed"))
        self.assertEqual(rep.returncode, 1, rep.stdout + rep.stderr)
        # the one domain's report (its file name is made safe)
        name, = [n for n in os.listdir(os.path.join(out, "failed"))
                 if n.endswith(".txt") and n != "index.txt"]
        with open(os.path.join(out, "failed", name)) as f:
            text = f.read()
        self.assertIn("doveadm backfill run -u '%s'" % NL_USER.replace(
            "\n", "\\x0a").replace("\t", "\\x09"), text)

    def test_report_next_unmerged_user(self):
        """A user verify names with an archive and no merge record yet:
        the report's Next command names that user, not the name as
        doveadm printed it (a backslash doubled: another user)."""
        if dv.IS_24:
            self.skipTest("no userdb on 2.4 here gives a name with a "
                          "backslash (see the module's doc)")
        r = self.doveadm("tab", "bs@cp.example", "verify")
        rows = self.check_tab(r.stdout, BS_PRINTED, ("verify",))
        self.assertNotEqual(rows["archived"], "0", r.stdout)
        out = os.path.join(self.site.base, "report-bs")
        verify = self.write_verify(out, r.stdout)
        rep = self.report(verify, os.path.join(out, "domains"))
        self.assertEqual(rep.returncode, 1, rep.stdout + rep.stderr)
        with open(os.path.join(out, "domains", "bs.example.txt")) as f:
            text = f.read()
        nexts = [line.strip() for line in text.split("\n")
                 if line.strip().startswith("Next:")]
        self.assertIn("Next: doveadm backfill run -u '%s'" % BS_USER, nexts,
                      text)
        # every command names that user and no other (the -u words
        # pasted into a shell)
        for line in nexts:
            names = re.findall(r" -u ('[^']*')", line)
            self.assertTrue(names, line)
            words = subprocess.run(
                ["sh", "-c", "printf '%s\\n' " + " ".join(names)],
                capture_output=True, text=True).stdout
            self.assertEqual(words, (BS_USER + "\n") * len(names), line)

    @staticmethod
    def write_verify(out, text):
        """verify's output as a file in a new directory out."""
        os.makedirs(out)
        verify = os.path.join(out, "verify.tsv")
        with open(verify, "w") as f:
            f.write(text)
        return verify

    def report(self, verify, out):
        build = os.path.dirname(bftest.plugin_dir())
        return subprocess.run(
            [os.path.join(build, "backfillctl", "backfillctl"), "--state",
             "sqlite:%s/state.db" % self.site.state_dir, "report",
             "--verify", verify, "--out", out],
            capture_output=True, text=True)

    def test_error_escaped(self):
        rows = self.check_all_formats(self.LN_LOOKUP, LN_PRINTED)
        # the error names the archive path, the user name in it escaped
        for cmd in (("plan",), ("verify",), ("status",), ("run",)):
            self.assertIn("symlink", rows[cmd]["error"], (cmd, rows[cmd]))
            self.assertIn(LN_PRINTED, rows[cmd]["error"], (cmd, rows[cmd]))
        # the lease holder, escaped
        for cmd in (("revert", "--yes"), ("reset",)):
            self.assertEqual(rows[cmd]["result"], "busy", (cmd, rows[cmd]))
            self.assertIn("(%s)" % OWNER_PRINTED, rows[cmd]["error"],
                          (cmd, rows[cmd]))

if __name__ == "__main__":
    unittest.main()
