"""Issue 19: what backfill_imap_uids=auto takes as evidence that an IMAP
client of the new server has seen a live folder (docs/imap-caches.md,
"The evidence (`auto`)"), decided by `doveadm backfill plan` against a
real Dovecot.

Every user has an archive INBOX and a live INBOX that got 4 mails by LMTP
during the incident; then one of them (nothing else touches the folder):
  nobody  no client at all
  kim     a phone that syncs like K-9 Mail / Thunderbird for Android:
          EXAMINE (\\Recent stays), the message list (imapcache's
          K9_LIST_ITEMS), then the bodies                   imap-examined
  sam     a client that SELECTs                              imap-selected
  pia     POP3 with pop3_no_flag_updates = yes: LIST, UIDL, RETR, TOP
  siv     LMTP deliveries through a sieve script that tests the headers a
          mail list shows (To, Cc, Date, References, ...)
  sto     an IMAP client that only STATUSes the folder
  arc     an EXAMINE that fetches only INTERNALDATE and whole messages (a
          backup tool, or tests/lib/dovecot.py's own mailbox() snapshot)
  adm     `doveadm search ... before`, as an expunge cron job does
Only kim and sam count as seen; for the others plan gives the reason of a
folder no client saw (today renumber-not-supported: renumbering is not
implemented yet).  The plans themselves must not make a folder look seen:
a second plan says the same, and \\Recent is kept.

ConfiguredCache: the admin caches the client's fields at delivery
(mail_cache_fields, mail_always_cache_fields, imap.envelope included):
LMTP then decides those fields before any client, so they prove nothing;
a delivered folder is not seen.  A K-9-like sync there is not seen either
(the documented limit); one that fetches a field the admin did not
configure (SNIPPET) is.

Before imap-uids-evidence.c read the cache decisions, kim's INBOX (and
ConfiguredCache's snip's) went as a folder nobody saw.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import dv, mg  # noqa: E402
import imapcache  # noqa: E402

SEEN = ("imap-selected", "imap-examined")
LIVE_MAILS = 4

SIEVE_SCRIPT = """require ["fileinto", "date", "relational"];
if anyof (header :contains "cc" "nobody@nowhere",
          header :contains "to" "nobody@nowhere",
          header :contains "reply-to" "nobody@nowhere",
          header :contains "references" "nowhere",
          header :contains "in-reply-to" "nowhere",
          header :contains "content-type" "nowhere",
          header :contains "x-spam-flag" "YES",
          address :is "from" "nobody@nowhere",
          date :value "lt" "date" "year" "1990") {
  fileinto "Junk";
  stop;
}
"""


def sieve_conf(site_kwargs):
    """Sieve for LMTP, each user's script at ~/.dovecot.sieve (the
    plugin from Dovecot's own module dir: mail_plugin_dir is the build's).
    On 2.4 the script is a sieve_script filter: pigeonhole declares its
    settings in its own settings module, which the tests keep beside
    backfill's (tests/lib/dovecot.py settings_module_mounts)."""
    site_kwargs["extra_conf"] = site_kwargs.get("extra_conf", "") + (
        "protocol lmtp {\n  mail_plugin_dir = /usr/lib/dovecot/modules\n}\n")
    if dv.IS_24:
        site_kwargs["extra_conf"] += (
            "sieve_script personal {\n  driver = file\n  path = ~/sieve\n"
            "  active_path = ~/.dovecot.sieve\n}\n")
    else:
        site_kwargs.setdefault("plugin", {})["sieve"] = "file:~/sieve;active=~/.dovecot.sieve"
    return site_kwargs


def scenario(seed):
    g = mg.Generator(seed)
    s = mg.Scenario()
    inbox = mg.Folder("INBOX", 1300000001)
    for i in range(5):
        t = 1500000000 + i * 86400
        inbox.msgs.append(mg.Msg(g.message(t), ("\\Seen",), t))
    s.archive = [inbox]
    s.archive_uid_gap = 2
    s.live = [mg.Folder("INBOX", 1700000001)]
    s.later = [g.message(1700000000 + i * 60) for i in range(LIVE_MAILS)]
    return s


def open_and_fetch(dc, user, fetches, readonly=True):
    """EXAMINE (or SELECT) INBOX, then UID FETCH 1:* each of fetches."""
    c = dc.imap(user)
    try:
        typ, data = c.select("INBOX", readonly=readonly)
        assert typ == "OK", data
        for items in fetches:
            typ, data = c.uid("FETCH", "1:*", items)
            assert typ == "OK", data
        c.close()
    finally:
        c.logout()


def examine_k9(dc, user):
    """A K-9-like sync of INBOX: EXAMINE, the list, the bodies."""
    open_and_fetch(dc, user, (imapcache.K9_LIST_ITEMS, "(UID BODY.PEEK[])"))


def examine_fetch(dc, user, items):
    open_and_fetch(dc, user, (items,))


def select(dc, user):
    open_and_fetch(dc, user, ("(UID FLAGS)",), readonly=False)


def pop3_session(dc, user):
    p = dc.pop3(user)
    try:
        p.list()
        p.uidl()
        p.retr(1)
        p.top(2, 0)
    finally:
        p.quit()


def doveadm_by_date(dc, user):
    dc.doveadm("search", "-u", user, "mailbox", "INBOX", "before", "1d")
    dc.doveadm("search", "-u", user, "mailbox", "INBOX", "since", "1d")


def status_only(dc, user):
    c = dc.imap(user)
    try:
        typ, data = c.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
        assert typ == "OK", data
    finally:
        c.logout()


def recent_count(dc, user):
    """\\Recent messages of INBOX, seen by an EXAMINE (which keeps them)."""
    c = dc.imap(user)
    try:
        typ, data = c.select("INBOX", readonly=True)
        assert typ == "OK", data
        return int(c.untagged_responses.get("RECENT", [b"0"])[-1])
    finally:
        c.logout()


def inbox_reason(dc, user):
    rows, _ = bd.doveadm_json(dc, "backfill", "plan", "-u", user)
    reasons = dict(x.split("=", 1) for x in rows[0].get("uid_way_reasons", "").split(",") if x)
    ways = dict(x.split("=", 1) for x in rows[0].get("uid_ways", "").split(",") if x)
    return ways.get("INBOX"), reasons.get("INBOX")


class EvidenceCase:
    # user: what happens to the live INBOX after the LMTP deliveries
    USERS = {}
    EXPECT_SEEN = {}
    SIEVE = ()

    @classmethod
    def build(cls, site):
        for i, user in enumerate(sorted(cls.USERS)):
            _, live_home, _ = mg.build_user(site.base, user, scenario(40 + i), record=False)
            site.dc.add_user(user, home=live_home)
            if user in cls.SIEVE:
                with open(os.path.join(live_home, ".dovecot.sieve"), "w") as f:
                    f.write(SIEVE_SCRIPT)
                dv.chown_tree(live_home)
        if cls.SIEVE:
            site.dc.lmtp_plugins = "sieve"
        site.start(plugin_on=False)
        for i, user in enumerate(sorted(cls.USERS)):
            for raw in scenario(40 + i).later:
                site.dc.lmtp_deliver(user, raw)
        for user, act in sorted(cls.USERS.items()):
            if act is not None:
                act(site.dc, user)
        cls.plans = {u: inbox_reason(site.dc, u) for u in cls.USERS}
        cls.plans_again = {u: inbox_reason(site.dc, u) for u in cls.USERS}

    def test_the_evidence(self):
        for user in sorted(self.USERS):
            way, reason = self.plans[user]
            want = self.EXPECT_SEEN.get(user)
            with self.subTest(user=user):
                if want is not None:
                    self.assertEqual((way, reason), ("live", want), user)
                else:
                    self.assertIsNotNone(reason, user)
                    self.assertNotIn(reason, SEEN, "%s: no client saw its INBOX" % user)

    def test_plan_changes_nothing(self):
        """A plan's read leaves no evidence of its own: the next plan says
        the same, and the mail no client SELECTed is still \\Recent."""
        self.assertEqual(self.plans_again, self.plans)
        for user in sorted(self.USERS):
            if self.EXPECT_SEEN.get(user) != "imap-selected" and user != "pia":
                with self.subTest(user=user):
                    self.assertEqual(recent_count(self.site.dc, user), LIVE_MAILS, user)


class DefaultCache(EvidenceCase, bftest.SiteCase):
    SITE = sieve_conf({})
    USERS = {"nobody": None, "kim": examine_k9, "sam": select, "pia": pop3_session,
             "siv": None, "sto": status_only, "adm": doveadm_by_date,
             "arc": lambda dc, u: examine_fetch(dc, u, "(UID FLAGS INTERNALDATE BODY.PEEK[])")}
    SIEVE = ("siv",)
    EXPECT_SEEN = {"kim": "imap-examined", "sam": "imap-selected"}

    def test_sieve_ran(self):
        """siv's deliveries went through the script (kept in INBOX, as
        nothing matched)."""
        self.assertTrue(self.site.dc.log_lines(r"lmtp\(siv\).*sieve"),
                        self.site.dc.log_tail())

    def test_z_merge_keeps_the_decision(self):
        """The merge's own reads (dedup, POP3 UIDLs) before it decides do
        not make nobody's INBOX look seen: status says what plan said."""
        r = bd.doveadm(self.site.dc, "backfill", "run", "-u", "nobody")
        self.assertEqual(r.returncode, 0, r.stderr)
        rows, _ = bd.doveadm_json(self.site.dc, "backfill", "status", "-u", "nobody")
        reasons = dict(x.split("=", 1) for x in rows[0].get("uid_way_reasons", "").split(",") if x)
        self.assertEqual(reasons.get("INBOX"), self.plans["nobody"][1])


# Every field a client's list fetch asks for, cached from delivery on.
CONFIGURED = ("flags date.received date.sent size.virtual mime.parts "
              "imap.envelope hdr.Date hdr.Subject hdr.From hdr.Message-ID hdr.To "
              "hdr.Cc hdr.Bcc hdr.Sender hdr.Reply-To hdr.In-Reply-To "
              "hdr.References hdr.Content-Type")


class ConfiguredCache(EvidenceCase, bftest.SiteCase):
    SITE = {"extra_conf": "mail_cache_fields = %s\n"
                          "mail_always_cache_fields = imap.bodystructure imap.body\n"
                          "mail_never_cache_fields =\n" % CONFIGURED}
    USERS = {"dlv": None, "kim": examine_k9,
             "snp": lambda dc, u: examine_fetch(dc, u, "(UID SNIPPET (LAZY=FUZZY))")}
    EXPECT_SEEN = {"snp": "imap-examined"}


if __name__ == "__main__":
    unittest.main(verbosity=2)
