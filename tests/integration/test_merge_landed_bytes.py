"""A batch that may have landed (its intent on record) is resumed by taking
its copies: by GUID, else by their exact bytes, never by the dedup
fingerprint (review s7 F8, merge-batch.c landed_find()).

The story: a batch's mailbox commit fails (here cur/ and new/ not
writable: EACCES; a full disk or quota does the same, "the next login
retries").  Before the retry the secondary MX flushes its queue and
delivers archived message 1 again by LMTP (mail the old server had too):
the same message with LMTP's Return-Path, Delivered-To and Received lines,
which the fingerprint leaves out.  It lands at a UID the intent names.
The retry must not take it for the archived message's copy:
- the user's delivery keeps its own flags (none) and POP3 UIDL and is in
  no journal entry;
- every archived message is journalled once, as its own merged copy;
- revert leaves the live mail as it was before the rerun: the two live
  messages and the user's delivery.

And the resume still takes a real cut copy by its bytes: a cut inside
Maildir's commit of a batch (the files renamed into cur/, dovecot-uidlist
not written: the copies lost their GUIDs; made here from a run killed
after its commit, BACKFILL_TEST_CRASH=batch-committed, by dropping the
copies' uidlist lines: the archive's GUIDs are no file names, so the
commit named the files itself, maildir_filename_generate() in the merge's
process), then the same redelivery: each archived message is there once
as the cut copy, journalled, with the archive's flags; the delivery stays
the user's.

A byte-identical APPEND is the user's too (review s7 F7): between the cut
and the resume the user uploads archived message 2 with its exact bytes
and INTERNALDATE (a client copying its local copy back), with flags of
its own.  Only the merge's own files are taken by their bytes
(merge-batch.c landed_named_by_saver()); the APPEND keeps its flags and
UIDL, is not journalled, archived message 2 is copied, and revert leaves
the APPEND.  Once after a failed commit (nothing landed: the APPEND was
the only candidate) and once after a cut whose kill came before message
2's file moved into cur/ (messages 1 and 3 landed and are taken).

And the rerun dedups as a first run does: an archived message whose copy
had not landed is a duplicate of the user's message (the redelivery, the
APPEND), as in the twin users' one uninterrupted run after it came: the
same count of messages (before, the archived message was copied beside
it: the content twice).  A copy that landed is taken, not deduplicated
(cut: message 1's copy landed before its redelivery came).

A failed commit in the user's own IMAP session (the merge runs there):
the session goes on and APPENDs archived message 2's bytes under a file
name of the merge's own process.  The failed commit withdrew the process
from the intent (Dovecot unlinked the files it had moved): the APPEND
stays the user's (sessapp).

A good commit in the user's IMAP session whose checkpoint fails (the
state store refuses the journal entries: a trigger stands in for a store
error after the mailbox commit), so the intent stays on record naming the
session's process; the session goes on, the user deletes archived message
2's copy and APPENDs its bytes, a file of that very process.  The failed
checkpoint withdrew the process from the intent (the copies have their
GUIDs; the store took that write, the trigger refuses only journal
entries): the APPEND stays the user's (sessckp, review s8 M2; before, the
next run took it by its bytes, gave it the archive's flags and journalled
it, and revert deleted it).  Still open: a store that refuses the
withdrawal too.

An intent that names BF_CURSOR_SAVERS_MAX other processes (a batch cut
again and again; here written into the record) and a cut whose copies lost
their GUIDs: the process that named them is not named, so they are
neither taken nor the user's mail for dedup, and each archived message is
copied again, a duplicate (full, review s8 L1).
"""
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402
import fingerprint_ref  # noqa: E402
import statedb  # noqa: E402

CONF = bftest.CRASH_CONF
N_LIVE = 2
USERS = ("fail", "cut", "failapp", "cutapp", "sessapp", "sessckp", "full", "twin",
         "twinapp")
# the user's own message between the runs: archived message 1 delivered
# again by LMTP, or archived message 2 APPENDed byte for byte
APPENDED = ("failapp", "cutapp", "sessapp", "sessckp", "twinapp")
# the merge runs in the user's IMAP session, its commit fails, and the
# user APPENDs in that session: a file named by the merge's own process
APPEND_FLAGS = ("\\Flagged",)
# the same archive and live mail, the same message of the user's, merged
# by one uninterrupted run after it came
TWIN = {"fail": "twin", "failapp": "twinapp", "cutapp": "twinapp", "sessapp": "twinapp",
        "sessckp": "twinapp"}
SEED = {"fail": 21, "cut": 22, "failapp": 23, "cutapp": 24, "sessapp": 23,
        "sessckp": 23, "full": 25, "twin": 21, "twinapp": 23}
# whose archived copy of the user's message had not landed: it is a
# duplicate of the user's message, as in an uninterrupted run after it
# (cut: message 1's copy landed before the redelivery came, and is taken)
DEDUPED = ("fail", "failapp", "cutapp", "sessapp", "sessckp", "twin", "twinapp")


def archive_guids(site, user):
    """Gives the user's archived messages GUIDs in dovecot-uidlist (as a
    server that ever ran dsync keeps them): then no GUID is a file name
    with its size, and a copy's file is named by the saving process."""
    path = os.path.join(site.archive_root, user, "Maildir", "dovecot-uidlist")
    with open(path) as f:
        lines = f.readlines()
    out = [lines[0]]
    for ln in lines[1:]:
        uid, rest = ln.split(" ", 1)
        out.append("%s G%032x %s" % (uid, 0xbf7000 + int(uid), rest))
    with open(path, "w") as f:
        f.writelines(out)


def scenario(seed, crlf=False):
    """crlf: archived message 2 has CRLF line endings, which a copy by save
    turns into LF (maildir_save_begin()): its cut copy is still its copy."""
    g = mg.Generator(seed)
    s = mg.Scenario()
    f = mg.Folder("INBOX", 1300000201)
    for i in range(3):
        t = 1500000000 + i * 3600
        raw = g.message(t, kind="plain")
        if crlf and i == 1:
            raw = raw.replace(b"\n", b"\r\n")
        f.msgs.append(mg.Msg(raw, {"\\Seen"}, t))
    s.archive = [f]
    s.live = [mg.Folder("INBOX", 1700000001)]
    s.later = [g.message(1700000000 + i, kind="plain") for i in range(N_LIVE)]
    return s


class LandedBytes(bftest.SiteCase):
    SITE = dict(extra_conf=CONF, plugin={"backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        cls.scen = {}
        for user in USERS:
            cls.scen[user] = scenario(SEED[user], crlf=user.startswith("cut"))
            site.add_user(user, cls.scen[user], record=False,
                          extra="userdb_backfill_imap_uids=live")
            archive_guids(site, user)
        site.start(plugin_on=False)
        dc = site.dc
        for user in USERS:
            for raw in cls.scen[user].later:
                dc.lmtp_deliver(user, raw)
        site.enable_plugin()
        cls.first = {}
        cls.cut_files = {}
        for user in USERS:
            if user.startswith("twin"):
                continue
            if user == "sessapp":
                cls.session_failed_then_append(site, user)
                continue
            if user == "sessckp":
                cls.session_checkpoint_failed_then_append(site, user)
                continue
            if user.startswith("fail"):
                # the batch's commit fails (EACCES), the intent stays
                md = dc.maildir(user)
                for sub in ("new", "cur"):
                    os.chmod(os.path.join(md, sub), 0o555)
                cls.first[user] = bd.doveadm(dc, "backfill", "run", "-u", user,
                                             fmt="json")
                for sub in ("new", "cur"):
                    os.chmod(os.path.join(md, sub), 0o700)
                continue
            # killed after the commit, then made a cut inside it
            r = bd.doveadm(dc, "backfill", "run", "-u", user, fmt="json",
                           env=dict(os.environ, BACKFILL_TEST_CRASH="batch-committed"))
            cls.first[user] = r
            bftest.remove_locks(dc, user)
            cls.cut_files[user] = bftest.maildir_cut_commit(
                dc.maildir(user), lambda uid: uid > N_LIVE, rename=False)
            if user == "cutapp":
                cls.unmove(dc.maildir(user), cls.scen[user].archive[0].msgs[1].raw)
            if user == "full":
                cls.savers_full(site, user)
        # the secondary MX's queue flush, the user's upload (plugin off: a
        # login would merge)
        dc.restart(mail_plugins="")
        cls.red_fp = {}
        cls.between, cls.between_uidls = {}, {}
        for user in USERS:
            if user in ("sessapp", "sessckp"):
                msg = cls.scen[user].archive[0].msgs[1]
            elif user in APPENDED:
                msg = cls.scen[user].archive[0].msgs[1]
                dc.append(user, "INBOX", msg.raw, flags=APPEND_FLAGS, date=msg.date)
            else:
                msg = cls.scen[user].archive[0].msgs[0]
                dc.lmtp_deliver(user, msg.raw)
            cls.red_fp[user] = fingerprint_ref.fingerprint(msg.raw)[0]
            cls.between[user] = dc.mailbox(user, "INBOX")[1]
            cls.between_uidls[user] = dc.pop3_uidls(user)
        site.enable_plugin()
        cls.rerun = {u: bd.doveadm(dc, "backfill", "run", "-u", u, fmt="json")
                     for u in USERS}
        cls.after = {u: dc.mailbox(u, "INBOX")[1] for u in USERS}
        cls.after_uidls = {u: dc.pop3_uidls(u) for u in USERS}
        cls.journal = {u: cls.journal_of(site, u) for u in USERS}

    @classmethod
    def session_failed_then_append(cls, site, user):
        """The merge in the user's IMAP session: its batch's commit fails
        (EACCES), then in that very session (the process that named the
        batch's files) the user APPENDs archived message 2's bytes."""
        import time
        dc = site.dc
        md = dc.maildir(user)
        for sub in ("new", "cur"):
            os.chmod(os.path.join(md, sub), 0o555)
        c = dc.imap(user)
        try:
            failed = bftest.bf_log(user) + ".*saving merged messages failed"
            deadline = time.time() + 60
            while not dc.log_lines(failed) and time.time() < deadline:
                c.noop()
                time.sleep(0.1)
            cls.first[user] = dc.log_lines(failed)
            for sub in ("new", "cur"):
                os.chmod(os.path.join(md, sub), 0o700)
            msg = cls.scen[user].archive[0].msgs[1]
            dc.append(user, "INBOX", msg.raw, flags=APPEND_FLAGS, date=msg.date, conn=c)
        finally:
            for sub in ("new", "cur"):
                os.chmod(os.path.join(md, sub), 0o700)
            c.logout()

    @classmethod
    def session_checkpoint_failed_then_append(cls, site, user):
        """The merge in the user's IMAP session commits its batch and its
        checkpoint fails; in that very session the user deletes archived
        message 2's copy and APPENDs its bytes."""
        import time
        dc = site.dc

        def store_exec(sql):
            db = statedb.connect(os.path.join(site.state_dir, "state.db"))
            try:
                db.execute(sql)
                db.commit()
            finally:
                db.close()

        store_exec("CREATE TRIGGER bf_test_refuse BEFORE INSERT ON journal"
                   " WHEN NEW.user = '%s'"
                   " BEGIN SELECT RAISE(ABORT, 'disk I/O error (test)'); END" % user)
        c = dc.imap(user)
        try:
            failed = bftest.bf_log(user) + r".*merge postponed: .*disk I/O error \(test\)"
            deadline = time.time() + 60
            while not dc.log_lines(failed) and time.time() < deadline:
                c.noop()
                time.sleep(0.1)
            cls.first[user] = dc.log_lines(failed)
            msg = cls.scen[user].archive[0].msgs[1]
            copies = [m.uid for m in dc.mailbox(user, "INBOX", conn=c)[1]
                      if m.fingerprint == msg.fingerprint]
            assert len(copies) == 1, copies
            c.select("INBOX")
            c.uid("STORE", str(copies[0]), "+FLAGS", "(\\Deleted)")
            c.expunge()
            dc.append(user, "INBOX", msg.raw, flags=APPEND_FLAGS, date=msg.date, conn=c)
        finally:
            c.logout()
            store_exec("DROP TRIGGER bf_test_refuse")

    @staticmethod
    def savers_full(site, user):
        """The intent names BF_CURSOR_SAVERS_MAX other processes (a batch
        cut again and again): the process that committed the cut copies is
        one more, not named."""
        db = statedb.connect(os.path.join(site.state_dir, "state.db"))
        try:
            cur = db.execute("SELECT cursor FROM merges WHERE user = ?",
                             (user,)).fetchone()[0]
            items = cur.split(" ")
            for i, item in enumerate(items):
                if item.startswith("i:"):
                    items[i] = ":".join(item.split(":")[:5] + [
                        ",".join("%d.other%d" % (n, n) for n in range(1, 9))])
            assert items != cur.split(" "), cur
            db.execute("UPDATE merges SET cursor = ? WHERE user = ?", (" ".join(items), user))
            db.commit()
        finally:
            db.close()

    @staticmethod
    def unmove(maildir, raw):
        """The kill came before the file of this message moved into cur/:
        back in tmp/, where the commit left it."""
        for sub in ("cur", "new"):
            for name in os.listdir(os.path.join(maildir, sub)):
                path = os.path.join(maildir, sub, name)
                with open(path, "rb") as f:
                    data = f.read()
                if data.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n"):
                    os.rename(path, os.path.join(maildir, "tmp", name.split(":")[0]))
                    return
        raise AssertionError("no copy of the message in " + maildir)

    @staticmethod
    def journal_of(site, user):
        db = statedb.connect(os.path.join(site.state_dir, "state.db"),
                              readonly=True)
        try:
            return db.execute("SELECT mailbox, uid, archive_uid FROM journal"
                              " WHERE user = ? ORDER BY archive_uid", (user,)).fetchall()
        finally:
            db.close()

    def user_msg_index(self, user):
        """Which archived message the user's own message is."""
        return 1 if user in APPENDED else 0

    def redelivery(self, user):
        """The user's delivery, as the IMAP view between the runs shows it
        (the one message not there before and not merged)."""
        want = sorted(APPEND_FLAGS) if user in APPENDED else []
        red = [m for m in self.between[user] if m.fingerprint == self.red_fp[user]
               and sorted(f for f in m.flags if f != "\\Recent") == want]
        self.assertEqual(len(red), 1, [(m.uid, m.flags) for m in self.between[user]])
        return red[0]

    def check_user(self, user):
        self.assertEqual(self.rerun[user].returncode, 0, self.rerun[user].stderr)
        red = self.redelivery(user)
        now = {m.uid: m for m in self.after[user]}
        # the delivery is the user's: its flags, not in the journal
        self.assertIn(red.uid, now)
        self.assertEqual(sorted(now[red.uid].flags), sorted(red.flags),
                         "%s: the user's delivery (UID %d) was taken for the archived "
                         "message's copy" % (user, red.uid))
        self.assertNotIn(red.uid, [uid for _, uid, _ in self.journal[user]],
                         "%s: the user's delivery is journalled as merged" % user)
        # and the POP3 UIDL it showed between the runs (POP3 lists in UID
        # order, nothing hidden)
        between = self.between_uidls[user]
        self.assertEqual([fp for _, fp in between],
                         [m.fingerprint for m in self.between[user]])
        uidl = between[[m.uid for m in self.between[user]].index(red.uid)][0]
        self.assertIn((uidl, red.fingerprint), self.after_uidls[user],
                      "%s: the UIDL of the user's delivery changed" % user)
        uidls = [u for u, _ in self.after_uidls[user]]
        self.assertEqual(len(uidls), len(set(uidls)))
        # every archived message journalled once, each at its own UID,
        # but the one that is a duplicate of the user's message
        arch = self.scen[user].archive[0]
        merged = [(i + 1, msg) for i, msg in enumerate(arch.msgs)
                  if user not in DEDUPED or i != self.user_msg_index(user)]
        self.assertEqual([a for _, _, a in self.journal[user]], [a for a, _ in merged],
                         "%s: journal %s" % (user, self.journal[user]))
        uids = [uid for _, uid, _ in self.journal[user]]
        self.assertEqual(len(set(uids)), len(uids))
        for (_, uid, _), (_, msg) in zip(self.journal[user], merged):
            self.assertEqual(now[uid].fingerprint, msg.fingerprint)
            self.assertIn("\\Seen", now[uid].flags)
        # nothing else: the live mail, the delivery, the merged copies
        self.assertEqual(len(now), N_LIVE + 1 + len(merged),
                         [(m.uid, m.flags) for m in self.after[user]])
        # as many messages as the uninterrupted twin run left
        if user in TWIN:
            self.assertEqual(len(now), len(self.after[TWIN[user]]),
                             "%s: %s, uninterrupted %s" % (
                                 user, [(m.uid, m.flags) for m in self.after[user]],
                                 [(m.uid, m.flags) for m in self.after[TWIN[user]]]))
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", user)
        self.assertEqual(rows[0]["result"], "ok", r.stdout + r.stderr)

    def revert_keeps_delivery(self, user):
        dc = self.site.dc
        red = self.redelivery(user)
        rows, r = bd.doveadm_json(dc, "backfill", "revert", "--yes", "-u", user)
        self.assertEqual(rows[0]["result"], "reverted", r.stderr)
        dc.restart(mail_plugins="")   # a login with the plugin merges again
        try:
            msgs = dc.mailbox(user, "INBOX")[1]
        finally:
            self.site.enable_plugin()
        live = {mg.Msg(raw).fingerprint for raw in self.scen[user].later}
        self.assertEqual(sorted((m.uid, m.fingerprint) for m in msgs),
                         sorted([(m.uid, m.fingerprint) for m in self.between[user]
                                 if m.fingerprint in live] + [(red.uid, red.fingerprint)]),
                         "%s: revert did not leave the live mail and the user's delivery"
                         % user)

    def test_commit_failed_then_redelivered(self):
        self.assertIn("saving merged messages failed",
                      self.first["fail"].stderr + self.site.dc.log_tail(200))
        self.check_user("fail")

    def cut_user(self, user):
        self.assertEqual(self.first[user].returncode, -signal.SIGKILL,
                         self.first[user].stderr[-2000:])
        self.assertEqual(self.cut_files[user], len(self.scen[user].archive[0].msgs))
        self.check_user(user)

    def test_cut_copies_taken_by_their_bytes(self):
        self.cut_user("cut")

    def test_commit_failed_then_appended(self):
        """F7: the only live message with archived message 2's bytes is
        the user's upload."""
        self.assertIn("saving merged messages failed",
                      self.first["failapp"].stderr + self.site.dc.log_tail(200))
        self.check_user("failapp")

    def test_cut_then_appended(self):
        """F7: messages 1 and 3 landed (taken by their bytes), message
        2's file did not; the user's upload of it stays the user's."""
        self.cut_user("cutapp")
        taken = {uid for _, uid, _ in self.journal["cutapp"]}
        arch = {a.fingerprint for a in self.scen["cutapp"].archive[0].msgs}
        cut = [m.uid for m in self.between["cutapp"]
               if m.uid != self.redelivery("cutapp").uid and m.fingerprint in arch]
        self.assertEqual(len(cut), 2, cut)
        self.assertTrue(set(cut) <= taken, (cut, self.journal["cutapp"]))

    def test_session_commit_failed_then_appended(self):
        """The failed commit's process stops naming itself in the intent:
        the APPEND it saved for the user is the user's."""
        self.assertTrue(self.first["sessapp"], self.site.dc.log_tail(60))
        self.check_user("sessapp")

    def test_session_checkpoint_failed_then_appended(self):
        """A failed checkpoint after a good commit withdraws the session's
        process from the intent: its later APPEND is the user's (M2)."""
        self.assertTrue(self.first["sessckp"], self.site.dc.log_tail(60))
        self.check_user("sessckp")

    def test_savers_full_copied_again(self):
        """L1: with BF_CURSOR_SAVERS_MAX processes named, the cut copies of
        a process not named (their GUIDs lost: file names) are neither
        taken nor the user's mail for dedup: each archived message is
        copied again, a duplicate, and journalled as its fresh copy (before,
        they were consumed as the user's mail: nothing journalled, the cut
        copies unjournalled for good)."""
        user = "full"
        self.assertEqual(self.first[user].returncode, -signal.SIGKILL,
                         self.first[user].stderr[-2000:])
        self.assertEqual(self.rerun[user].returncode, 0, self.rerun[user].stderr)
        self.assertEqual([a for _, _, a in self.journal[user]], [1, 2, 3],
                         "full: journal %s" % self.journal[user])
        before = {m.uid for m in self.between[user]}
        self.assertFalse({uid for _, uid, _ in self.journal[user]} & before,
                         (self.journal[user], sorted(before)))
        self.assertEqual(len(self.after[user]), len(self.between[user]) + 3,
                         [(m.uid, m.flags) for m in self.after[user]])

    def test_twins(self):
        """The uninterrupted runs the others are compared with."""
        for user in ("twin", "twinapp"):
            self.check_user(user)

    def test_z_revert_keeps_the_users_delivery(self):
        for user in USERS:
            if user != "full":
                self.revert_keeps_delivery(user)


class LandedMdbox(bftest.SiteCase):
    """mdbox keeps a copy's GUID in the message itself: no copy is ever
    taken by its bytes there.  A batch cut after its commit, then the user
    deletes archived message 2's copy and uploads the message again, byte
    for byte (APPEND, own flags): the upload stays the user's, archived
    message 2 is its duplicate (the twin: one run after the upload), the
    other copies are taken by GUID, and revert leaves the live mail and
    the upload."""
    SITE = dict(extra_conf=CONF, plugin={"backfill_pop3_hide": "none"})
    USERS = ("mdcut", "mdtwin")

    @classmethod
    def build(cls, site):
        site.dc.mail_location = "mdbox:~/mdbox"
        cls.scen = {u: scenario(31) for u in cls.USERS}
        for user in cls.USERS:
            site.add_user(user, cls.scen[user], record=False,
                          extra="userdb_backfill_imap_uids=live")
        site.start(plugin_on=False)
        dc = site.dc
        for user in cls.USERS:
            for raw in cls.scen[user].later:
                dc.lmtp_deliver(user, raw)
        site.enable_plugin()
        cls.first = bd.doveadm(dc, "backfill", "run", "-u", "mdcut", fmt="json",
                               env=dict(os.environ, BACKFILL_TEST_CRASH="batch-committed"))
        bftest.remove_locks(dc, "mdcut")
        dc.restart(mail_plugins="")
        msg = cls.scen["mdcut"].archive[0].msgs[1]
        c = dc.imap("mdcut")
        try:
            copies = [m.uid for m in dc.mailbox("mdcut", "INBOX", conn=c)[1]
                      if m.fingerprint == msg.fingerprint]
            assert len(copies) == 1, copies
            c.select("INBOX")
            c.uid("STORE", str(copies[0]), "+FLAGS", "(\\Deleted)")
            c.expunge()
        finally:
            c.logout()
        cls.between = {}
        for user in cls.USERS:
            dc.append(user, "INBOX", msg.raw, flags=APPEND_FLAGS, date=msg.date)
            cls.between[user] = dc.mailbox(user, "INBOX")[1]
        site.enable_plugin()
        cls.rerun = {u: bd.doveadm(dc, "backfill", "run", "-u", u, fmt="json")
                     for u in cls.USERS}
        cls.after = {u: dc.mailbox(u, "INBOX")[1] for u in cls.USERS}
        cls.journal = {u: LandedBytes.journal_of(site, u) for u in cls.USERS}

    def test_upload_stays_the_users(self):
        self.assertEqual(self.first.returncode, -signal.SIGKILL, self.first.stderr[-2000:])
        fp = self.scen["mdcut"].archive[0].msgs[1].fingerprint
        for user in self.USERS:
            self.assertEqual(self.rerun[user].returncode, 0, self.rerun[user].stderr)
            mine = [m for m in self.between[user] if m.fingerprint == fp]
            self.assertEqual(len(mine), 1, [(m.uid, m.flags) for m in self.between[user]])
            now = {m.uid: m for m in self.after[user]}
            self.assertEqual(sorted(f for f in now[mine[0].uid].flags if f != "\\Recent"),
                             sorted(APPEND_FLAGS), "%s: the upload was taken" % user)
            self.assertEqual([a for _, _, a in self.journal[user]], [1, 3],
                             "%s: journal %s" % (user, self.journal[user]))
            self.assertEqual(len(now), N_LIVE + 1 + 2,
                             [(m.uid, m.flags) for m in self.after[user]])
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "revert", "--yes", "-u", "mdcut")
        self.assertEqual(rows[0]["result"], "reverted", r.stderr)
        self.site.dc.restart(mail_plugins="")
        try:
            msgs = self.site.dc.mailbox("mdcut", "INBOX")[1]
        finally:
            self.site.enable_plugin()
        live = {mg.Msg(raw).fingerprint for raw in self.scen["mdcut"].later} | {fp}
        self.assertEqual(sorted(m.fingerprint for m in msgs), sorted(live))


if __name__ == "__main__":
    unittest.main(verbosity=2)
