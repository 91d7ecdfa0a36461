"""A full disk stops the merge cleanly and loses nothing (issue 15 item 6).

zoe's live mailbox sits on a 3 MB tmpfs and her archive holds about 6 MB:
the merge runs out of space part-way.  Logins go on; the merge is
postponed with a line that names the cause and its record says failed
with it; nothing merged so far is lost or counted twice.  Once the tmpfs
is grown the next login finishes the merge: the mailbox is then exactly
the merge of the whole archive.
"""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import maildir_gen as mg  # noqa: E402
import statedb  # noqa: E402


class MergeFullDisk(bftest.SiteCase):

    @classmethod
    def build(cls, site):
        cls.live = os.path.join(site.base, "live", "zoe")
        cls.mount_tmpfs(cls.live, "3m")
        site.add_user("zoe", mg.bulk_scenario(95, 400, 20, 5, lines=300,
                                              multipart_share=0.0,
                                              folders=("INBOX", "Work")))
        site.start(plugin_on=False)
        cls.pre = site.dc.snapshot("zoe")
        site.enable_plugin()

    def record(self):
        db = statedb.connect(os.path.join(self.site.state_dir, "state.db"))
        try:
            return db.execute("SELECT status, added, last_error FROM merges WHERE user = 'zoe'"
                              ).fetchone()
        finally:
            db.close()

    def test_full_disk_postpones_and_resumes(self):
        site = self.site
        for _ in range(6):
            site.dc.pop3("zoe").quit()
        status, added, error = self.record()
        self.assertFalse(site.finished_lines("zoe"), "the archive fitted: the test shows nothing")
        self.assertEqual(status, "failed")
        self.assertRegex(error, r"(?i)space|quota")
        lines = site.dc.log_lines(bftest.bf_log("zoe") + r"merge postponed: .*(?i:space|quota)")
        self.assertTrue(lines, "\n".join(site.dc.log_lines(bftest.bf_log("zoe"))))

        subprocess.run(["mount", "-o", "remount,size=64m", self.live], check=True)
        site.wait_merged("zoe")
        got = bftest.multiset(site.dc.snapshot("zoe"))
        exp, _, _ = bftest.expected_after(self.pre, site.views["zoe"])
        self.assertEqual(len(got), len(exp), bftest.diff(exp, got))
        self.assertEqual(got, exp, bftest.diff(exp, got))
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])


if __name__ == "__main__":
    unittest.main()
