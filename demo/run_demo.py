#!/usr/bin/python3
"""backfill's main job: replay the incident on this one machine.

A hosting company's mail server dies. Users get empty mailboxes on a new
server and mail keeps arriving (some of it twice: a secondary MX that queued
during the outage flushes later). Weeks later the backups come back. This
script plays that story with the real programs, started privately in a
temporary directory and stopped afterwards:

  1. the old server (Dovecot) with the users' mail; POP3 clients that keep
     mail on the server poll it and remember its UIDLs;
  2. the incident: a new Dovecot with empty mailboxes, Postfix primary MX
     with backfill-milter (restore window open), a secondary MX that queues
     while the primary is down and flushes afterwards, with copies the
     primary already took; POP3 clients poll the empty mailboxes and forget
     their old UIDLs;
  3. the archives are restored read-only; users log in and their mail is
     merged on login; `doveadm backfill run -A` merges the rest and
     `doveadm backfill verify -A` proves it; POP3 clients poll again;
  4. all along, a prober logs in every 100 ms and the longest gap in
     service is measured.

The operator's part runs the commands of docs/runbook.md (its `sh demo`
blocks, demo/runbook.py), in the runbook's order, each printed as
"runbook step N: $ COMMAND" with its output.

Then it checks every mailbox against what it must hold (its own count,
independent of backfill's), prints its summary, and keeps the per-domain
reports that the runbook's `backfillctl report` wrote (one self-contained
HTML page and one text file per domain, the same code a real site runs),
after checking their figures against its own.

Usage: run_demo.py [--users N] [--messages N] [--build DIR] [--report-dir DIR]
                   [--check] [--keep]
Exit: 0 every figure right, 1 a figure is wrong (missing mail, duplicate
delivered, POP3 re-download, service gap above 1 s), 2 usage or setup.
"""
import argparse
import collections
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
sys.path.insert(0, os.path.join(TOP, "tests", "milter"))
sys.path.insert(0, HERE)

import fingerprint_ref  # noqa: E402
import maildir_gen as mg  # noqa: E402
import report  # noqa: E402
import runbook  # noqa: E402
from dovecot import MAIL_GID, Dovecot, doveadm_argv  # noqa: E402
from milterproc import PrivateMilter  # noqa: E402
from postfix import Postfix, make_traversable  # noqa: E402

DOMAINS = ["alpha-bakery.example", "bolt-law.example", "citrus-clinic.example"]
NAMES = ["anna", "ben", "carla", "dmitri", "eva", "farid", "greta", "hugo",
         "ines", "jonas", "kim", "lena", "milo", "nora", "oskar", "paula"]
WINDOW = "incident-demo"


def say(msg):
    print("demo: %s" % msg, flush=True)


# ------------------------------------------------------------------ users
class User:
    def __init__(self, i, domain, pop3):
        self.name = "%s%d" % (NAMES[i % len(NAMES)], i)
        self.domain = domain
        self.address = "%s@%s" % (self.name, domain)
        self.pop3 = pop3
        self.archive = []           # [mg.Folder]
        self.incident = []          # raw messages the user must receive
        self.client = Pop3Client(self.name) if pop3 else None


class Pop3Client:
    """A POP3 client that leaves mail on the server, as Outlook,
    Thunderbird and mpop do: it downloads what has a UIDL it does not know
    and forgets UIDLs no longer on the server."""

    def __init__(self, user):
        self.user = user
        self.known = set()
        self.downloaded = collections.Counter()   # fingerprint -> times
        self.redownloads = 0
        # Re-downloads before the restore come from the incident itself
        # (a secondary MX redelivering what the dead server had taken):
        # nothing that backfill merges.  Counted from the restore on.
        self.counting = False

    def poll(self, dc):
        c = dc.pop3(self.user)
        try:
            listing = c.uidl()[1]
            uidls = {}
            for line in listing:
                num, uidl = line.decode().split(" ", 1)
                uidls[uidl] = int(num)
            for uidl, num in sorted(uidls.items(), key=lambda x: x[1]):
                if uidl in self.known:
                    continue
                raw = b"\n".join(c.retr(num)[1]) + b"\n"
                fp = fingerprint_ref.fingerprint(raw)[0]
                if self.downloaded[fp] > 0 and self.counting:
                    self.redownloads += 1
                self.downloaded[fp] += 1
            self.known = set(uidls)
        finally:
            c.quit()


# ------------------------------------------------------------ the prober
class Prober(threading.Thread):
    """Logs in over IMAP every 100 ms; the longest time between two
    successful logins is the longest gap in service a user could see."""

    def __init__(self, dc, user):
        super().__init__(daemon=True)
        self.dc, self.user = dc, user
        self.stop_evt = threading.Event()
        self.max_gap = 0.0
        self.ok = self.failed = 0

    def run(self):
        last = time.monotonic()
        while not self.stop_evt.is_set():
            try:
                c = self.dc.imap(self.user, timeout=10)
                c.select("INBOX")
                c.logout()
                now = time.monotonic()
                self.max_gap = max(self.max_gap, now - last)
                last = now
                self.ok += 1
            except Exception:
                self.failed += 1
            self.stop_evt.wait(0.1)
        self.max_gap = max(self.max_gap, time.monotonic() - last)

    def stop(self):
        self.stop_evt.set()
        self.join(30)


# --------------------------------------------------------- mail generation
def make_archives(users, total, seed):
    rng = random.Random(seed)
    # Mailbox sizes are skewed, as on any hosting server.
    weights = [rng.paretovariate(1.5) for _ in users]
    scale = total / sum(weights)
    for n, (u, w) in enumerate(zip(users, weights)):
        g = mg.Generator(seed * 1000 + n, domain=u.domain)
        count = max(4, int(w * scale))
        base = 1600000000 + n * 100000
        folders = {"INBOX": mg.Folder("INBOX", 1500000000 + n)}
        if not u.pop3:
            for i, name in enumerate(("Sent", "Work", "Trash")):
                folders[name] = mg.Folder(name, 1500000100 + n * 10 + i)
        names = list(folders)
        for i in range(count):
            name = names[0] if u.pop3 or rng.random() < 0.55 else rng.choice(names[1:])
            date = base + i * 3000
            kind = "multipart" if rng.random() < 0.08 else None
            folders[name].msgs.append(mg.Msg(g.message(date, kind=kind, to=u.name),
                                             g.flags(name), date))
        u.archive = list(folders.values())
        u.gen = g


def maildir_fingerprints(root):
    """Multiset of fingerprints of every message file under a Maildir++."""
    out = collections.Counter()
    for r, dirs, files in os.walk(root):
        if os.path.basename(r) not in ("cur", "new"):
            continue
        for name in files:
            with open(os.path.join(r, name), "rb") as f:
                out[fingerprint_ref.fingerprint(f.read())[0]] += 1
    return out


# ------------------------------------------------------------------ doveadm
def doveadm_backfill(dc, modules, *args, json_out=False):
    """Run `doveadm backfill ...` against the private instance, with the
    build's doveadm module (and on 2.4 its settings module) mounted
    (dovecot.doveadm_argv)."""
    fmt = ["-f", "json"] if json_out else []
    cmd = doveadm_argv(dc.conf_path, dc.plugin_dir, fmt + ["backfill"] + list(args),
                       modules=modules)
    return subprocess.run(cmd, capture_output=True, text=True)


# ------------------------------------------------------------------ phases
def old_server_phase(work, users):
    say("1. the old server: %d users, %d messages"
        % (len(users), sum(len(f.msgs) for u in users for f in u.archive)))
    old_root = os.path.join(work, "old")
    os.makedirs(old_root)
    os.chmod(old_root, 0o755)
    for u in users:
        mg.write_maildir(os.path.join(old_root, u.name, "Maildir"), u.archive)
    dc = Dovecot(name="old", mail_root=old_root, auto_mailboxes="no")
    for u in users:
        dc.add_user(u.name)
    dc.start()
    try:
        for u in users:
            if u.pop3:
                u.client.poll(dc)
        # Mail that reached the old server after the POP3 clients' last
        # poll: in the backup, never downloaded.
        for u in users:
            if u.pop3:
                for i in range(2):
                    raw = u.gen.message(1700000000 + i * 60, to=u.name)
                    dc.lmtp_deliver(u.name, raw)
    finally:
        dc.stop()
        dc.cleanup()
    return old_root


def incident_phase(work, users, args, build, rb, modules):
    say("2. the incident: new server with empty mailboxes, window '%s' open"
        % WINDOW)
    state_dir = os.path.join(work, "state")
    os.mkdir(state_dir)
    os.chown(state_dir, 0, MAIL_GID)
    os.chmod(state_dir, 0o2770)
    state = "sqlite:" + os.path.join(state_dir, "state.db")
    rb.env.update(STATE_DB=os.path.join(state_dir, "state.db"), BACKFILL_STATE=state)
    restore = rb.env["RESTORE"]
    milter = PrivateMilter(
        os.path.join(build, "milter", "backfill-milter"),
        os.path.join(build, "backfillctl", "backfillctl"), tmp=work,
        config=["SocketMode 0660", "SocketGroup postfix", "Hostname mx1.demo"],
        window=None, state=state)
    dc = Dovecot(name="new", plugin_dir=os.path.join(build, "dovecot-plugin"),
                 mail_plugins="backfill", lmtp_plugins="backfill",
                 plugin={"backfill_archive": "maildir:%s/%%n/Maildir" % restore,
                         "backfill_state": state,
                         "backfill_login_budget": "300ms"},
                 extra_conf='pop3_deleted_flag = "$POP3Deleted"\n'
                            'pop3_delete_type = expunge\n')
    runbook.Runner.make_bin(rb.env["PATH"].split(":")[0],
                            os.path.join(build, "backfillctl", "backfillctl"),
                            doveadm_argv(dc.conf_path, dc.plugin_dir, modules=modules))
    rb.run_step(3)          # open the window
    milter.start()
    for u in users + [PROBE]:
        dc.add_user(u.name)
    dc.start()
    domains = " ".join(DOMAINS)
    primary = Postfix("mx1", relay_domains=domains,
                      relay_transport="lmtp:inet:127.0.0.1:%d" % dc.ports["lmtp"],
                      milters="unix:" + milter.sock)
    primary.start()
    # The backup MX keeps what it queued while the primary was down until
    # the runbook flushes it (postqueue -f), as a real one with its
    # minutes of backoff does: with the test library's 2-second retries it
    # flushed by itself at the moment the senders' own retries reached the
    # primary, and a copy arriving while the first was still in LMTP is,
    # rightly, delivered tagged as a suspected duplicate (one CI run).
    secondary = Postfix("mx2", relay_domains=domains,
                        relay_transport="smtp:[127.0.0.1]:%d" % primary.port,
                        main={"minimal_backoff_time": "1h",
                              "maximal_backoff_time": "2h",
                              "queue_run_delay": "1h"})
    secondary.start()
    rb.mail_config.update(primary=primary.config_dir, secondary=secondary.config_dir)
    rb.run(4)               # postconf -h smtpd_milters on the primary
    return milter, dc, primary, secondary, restore, state


class Probe:
    name = "prober"


PROBE = Probe()


def send(mx, u, raw):
    refused = mx.send("sender@example.org", [u.address], raw)
    if refused:
        raise RuntimeError("refused by %s: %s" % (mx.name, refused))


def incident_mail(users, primary, secondary, rng, rb):
    """New mail during the incident, through both MX, with the repeats a
    real incident produces."""
    stats = collections.Counter()
    # Normal new mail through the primary.
    for u in users:
        for i in range(rng.randint(2, 5)):
            raw = u.gen.message(1760000000 + i * 77, to=u.name)
            send(primary, u, raw)
            u.incident.append(raw)
            stats["sent"] += 1
    # Senders that retried at the backup MX after a lost 250 reply.
    primary.wait_queue()
    time.sleep(1.5)
    for u in rng.sample(users, max(1, len(users) // 3)):
        raw = u.gen.message(1760100000, to=u.name)
        send(primary, u, raw)
        u.incident.append(raw)
        primary.wait_queue()
        send(secondary, u, raw)
        stats["sent"] += 2
        stats["repeats"] += 1
    secondary.wait_queue()
    primary.wait_queue()
    # The primary goes down; the secondary queues. Among the queued mail
    # are copies of messages the old server had taken just before it died
    # (they are in the backup too), and some senders retry at the primary
    # once it is back, before the secondary flushes.
    primary.stop()
    queued = []
    for u in users:
        if rng.random() < 0.5:
            raw = u.gen.message(1760200000, to=u.name)
            send(secondary, u, raw)
            u.incident.append(raw)
            queued.append((u, raw))
            stats["sent"] += 1
        inbox = u.archive[0].msgs
        if inbox and rng.random() < 0.4:
            again = u.gen.redelivered(rng.choice(inbox).raw, hop="backup-mx")
            send(secondary, u, again)
            u.incident.append(again)
            stats["sent"] += 1
            stats["archived_redelivered"] += 1
    # Every copy has had its failed first attempt (deferred) before the
    # primary is back: one still being tried would race the retries below.
    want = len(queued) + stats["archived_redelivered"]
    secondary.wait_queue(lambda q: len(q) == want and all(
        m["queue_name"] == "deferred" for m in q))
    primary.start()
    for u, raw in queued[: len(queued) // 2]:
        send(primary, u, raw)
        stats["sent"] += 1
        stats["repeats"] += 1
    primary.wait_queue()
    time.sleep(1.5)
    rb.run(4)               # postqueue -f on the secondary
    secondary.wait_queue(timeout=180)
    primary.wait_queue(timeout=180)
    return stats


def explain_duplicate(maildir, fp, milter_log, dovecot_log):
    """What a failed run needs to say about one duplicated fingerprint:
    the backfill fields of each live copy and the milter's and Dovecot's
    lines that name it."""
    lines = []
    for r, dirs, files in os.walk(maildir):
        if os.path.basename(r) not in ("cur", "new"):
            continue
        for name in files:
            with open(os.path.join(r, name), "rb") as f:
                raw = f.read()
            if fingerprint_ref.fingerprint(raw)[0] != fp:
                continue
            head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
            fields = [h.decode("ascii", "replace").strip() for h in
                      re.findall(rb"^X-Backfill-(?:Duplicate|Dedup|Removed|"
                                 rb"Window)[^\n]*", head, re.M | re.I)]
            lines.append("  copy %s: %s" % (os.path.relpath(
                os.path.join(r, name), maildir), "; ".join(fields) or
                "no X-Backfill fields"))
    short = fp.split(":", 1)[-1][:16]
    for text, who in ((milter_log, "milter"), (dovecot_log, "dovecot")):
        lines += ["  %s: %s" % (who, ln) for ln in text.splitlines()
                  if short in ln][:6]
    return lines


def wait_deliveries(dc, users, timeout=120):
    deadline = time.time() + timeout
    want = sum(len(u.incident) for u in users)
    while time.time() < deadline:
        have = sum(sum(maildir_fingerprints(dc.maildir(u.name)).values())
                   for u in users if os.path.isdir(dc.maildir(u.name)))
        if have >= want:
            return
        time.sleep(0.5)


def held_count(pf):
    return len([q for q in pf.queue() if q["queue_name"] == "hold"])


def check_domain_reports(outdir, per_domain):
    """The figures of backfillctl report's text report of each domain
    against the demo's own counts."""
    problems = []
    for d, c in per_domain.items():
        try:
            with open(os.path.join(outdir, d + ".txt")) as f:
                text = f.read()
        except OSError as e:
            problems.append("no report for %s: %s" % (d, e))
            continue

        def figure(label):
            m = re.search(r"^\s*%s\s+([\d,]+)$" % re.escape(label), text, re.M)
            return int(m.group(1).replace(",", "")) if m else None
        for label, want in (("Users", c["users"]), ("Archived messages", c["archived"]),
                            ("added to the mailboxes", c["added"]),
                            ("already in the mailboxes", c["duplicates"]),
                            ("archived messages missing", c["missing"])):
            got = figure(label)
            if got != want:
                problems.append("report of %s says %s %s, the demo counts %d"
                                % (d, label, got, want))
    return problems


# ------------------------------------------------------------------ main
def run(args):
    build = os.path.abspath(args.build)
    modules = args.doveadm_modules or os.path.join(build, "doveadm-plugin",
                                                   "doveadm-modules")
    for p in (os.path.join(build, "milter", "backfill-milter"),
              os.path.join(build, "dovecot-plugin", "lib95_backfill_plugin.so"),
              os.path.join(modules, "lib95_doveadm_backfill_plugin.so")):
        if not os.path.exists(p):
            say("missing %s: build first (make build)" % p)
            return 2
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="backfill-demo-")
    make_traversable(work)
    n_dom = len(DOMAINS)
    # a third of each domain's users are POP3 users
    users = [User(i, DOMAINS[i % n_dom], pop3=((i // n_dom) % 3 == 0))
             for i in range(args.users)]
    make_archives(users, args.messages, args.seed)
    archived = sum(len(f.msgs) for u in users for f in u.archive)
    procs = []
    figures = {}
    reports = os.path.join(work, "reports")
    os.mkdir(reports)
    bindir = os.path.join(work, "bin")
    rb = runbook.Runner(say, dict(
        os.environ, PATH=bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"),
        WINDOW=WINDOW, BACKUP=os.path.join(work, "old"),
        RESTORE=os.path.join(work, "restore"), MAIL_OWNER="mail",
        REPORTS=reports, DOMAIN_MAP=os.path.join(reports, "domains.map")), {})
    try:
        old_root = old_server_phase(work, users)
        for u in users:
            if u.pop3:
                u.client.before = sum(u.client.downloaded.values())
        archived += 2 * len([u for u in users if u.pop3])
        milter, dc, primary, secondary, restore, state = incident_phase(
            work, users, args, build, rb, modules)
        procs = [secondary, primary, dc, milter]
        prober = Prober(dc, PROBE.name)
        prober.start()
        for u in users:
            if u.pop3:
                u.client.poll(dc)   # the empty mailbox: old UIDLs forgotten
        stats = incident_mail(users, primary, secondary, rng, rb)
        wait_deliveries(dc, users)
        for u in users:
            if u.pop3:
                u.client.poll(dc)   # new mail of the incident
        say("   %d messages sent during the window (%d repeats, %d copies of "
            "archived mail)" % (stats["sent"], stats["repeats"],
                                stats["archived_redelivered"]))

        say("3. the restore: archives back (owned by the mail user, for "
            "hardlinks); users log in")
        rb.run_step(5)
        for u in users:
            if u.pop3:
                u.client.counting = True
        t_login = time.monotonic()
        for u in users[: len(users) // 2]:
            if u.pop3:
                u.client.poll(dc)
            else:
                c = dc.imap(u.name)
                c.list()
                c.select("INBOX")
                c.logout()
        say("   %d users logged in (%.1f s)" % (len(users) // 2,
                                                time.monotonic() - t_login))
        t0 = time.monotonic()
        r = rb.run(6)       # doveadm backfill run -A -p 4
        run_secs = time.monotonic() - t0
        try:
            with open(os.path.join(reports, "run.json")) as f:
                run_added = sum(int(row.get("added", 0)) for row in json.load(f))
        except ValueError:
            run_added = 0
        say("   doveadm backfill run -A: %.1f s" % run_secs)
        rb.run_step(7)      # watch
        # This site's logins are local parts: the report learns each
        # user's domain from a map, as the runbook says.
        with open(rb.env["DOMAIN_MAP"], "w") as f:
            for u in users:
                f.write("%s %s\n" % (u.name, u.domain))
        v = rb.run(8)       # doveadm -f tab backfill verify -A
        say("   doveadm backfill verify -A: exit %d" % v.returncode)
        rep = rb.run(8)     # backfillctl report
        s = doveadm_backfill(dc, modules, "status", "-A", json_out=True)
        status = {row.get("username"): row for row in json.loads(s.stdout or "[]")}
        for u in users:
            if u.pop3:
                u.client.poll(dc)
        prober.stop()

        # Our own count, independent of backfill's: per user the live
        # mailbox must hold, per fingerprint, max(archived, delivered).
        missing = dups = 0
        dup_fps = []
        per_domain = {d: collections.Counter() for d in DOMAINS}
        for u in users:
            want = maildir_fingerprints(os.path.join(restore, u.name, "Maildir"))
            archived_u = sum(want.values())
            live_new = collections.Counter(fingerprint_ref.fingerprint(raw)[0]
                                           for raw in u.incident)
            for fp, n in live_new.items():
                want[fp] = max(want[fp], n)
            have = maildir_fingerprints(dc.maildir(u.name))
            m = sum(max(0, n - have[fp]) for fp, n in want.items())
            d = sum(max(0, n - want[fp]) for fp, n in have.items())
            missing += m
            dups += d
            dup_fps += [(u, fp) for fp, n in have.items() if n > want[fp]]
            row = status.get(u.name, {})
            c = per_domain[u.domain]
            c["users"] += 1
            c["archived"] += archived_u
            c["added"] += int(row.get("added", 0))
            c["duplicates"] += int(row.get("duplicates", 0))
            c["missing"] += m
            if u.pop3:
                # downloaded before the incident and not offered again
                c["pop3_spared"] += u.client.before - u.client.redownloads
        milter_log = milter.log_text()
        held = held_count(primary)
        removed = milter_log.count("removed recipient")
        added = sum(c["added"] for c in per_domain.values())
        figures = {
            "users": len(users),
            "archived": archived,
            "added": added,
            "duplicates": sum(c["duplicates"] for c in per_domain.values()),
            "milter_removed": held + removed,
            "milter_held": held,
            "duplicates_delivered": dups,
            "pop3_spared": sum(c["pop3_spared"] for c in per_domain.values()),
            "pop3_redownloads": sum(u.client.redownloads for u in users if u.pop3),
            "missing": missing,
            "verify_exit": v.returncode,
            # doveadm backfill run -A's own rate, process start included
            "throughput": run_added / run_secs if run_secs > 0 else 0.0,
            "max_gap": prober.max_gap,
            "domains": [dict(name=d, **{k: per_domain[d][k] for k in (
                "users", "archived", "added", "duplicates", "missing",
                "pop3_spared")}) for d in DOMAINS],
        }
        problems = []
        if missing:
            problems.append("%d messages missing" % missing)
        if v.returncode != 0:
            problems.append("doveadm backfill verify exited %d" % v.returncode)
        if dups:
            problems.append("%d duplicates delivered" % dups)
            dovecot_log = dc.log_text()
            for u, fp in dup_fps:
                say("duplicate of %s for %s:" % (fp, u.name))
                for ln in explain_duplicate(dc.maildir(u.name), fp,
                                            milter_log, dovecot_log):
                    say(ln)
        if figures["pop3_redownloads"]:
            problems.append("%d POP3 re-downloads" % figures["pop3_redownloads"])
        if prober.max_gap > args.max_gap:
            problems.append("service gap of %.2f s (above %.1f s)"
                            % (prober.max_gap, args.max_gap))
        if r.returncode != 0:
            problems.append("doveadm backfill run exited %d" % r.returncode)
        if rep.returncode != 0:
            problems.append("backfillctl report exited %d" % rep.returncode)
        problems += check_domain_reports(os.path.join(reports, "domains"), per_domain)
        if os.path.isdir(args.report_dir):
            shutil.rmtree(args.report_dir)
        shutil.copytree(os.path.join(reports, "domains"), args.report_dir)
        # The end of the restore, as the runbook has it: close the window,
        # purge, remove the private copies, keep the state.
        for step in (9, 10, 11, 12):
            for res in rb.run_step(step):
                if not res.expected:
                    problems.append("runbook step %d: %s exited %d"
                                    % (step, res.args[2], res.returncode))
        if not rb.complete():
            problems.append("runbook commands not run: %s" % runbook.RUNBOOK[rb.pos:])
        left = [h for h in (dc.home(u.name) for u in users)
                if os.path.exists(os.path.join(h, ".backfill"))]
        if left:
            problems.append("runbook step 11 left %d private copies" % len(left))
        figures["problems"] = problems
        figures["ok"] = not problems
        dc.assert_log_clean()
    finally:
        for p in procs:
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                say("stopping %s: %s" % (p, e))
        for p in procs:
            if hasattr(p, "cleanup"):
                p.cleanup()
        if args.keep:
            say("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(report.terminal(figures))
    say("per-domain reports (backfillctl report): %s"
        % os.path.join(os.path.abspath(args.report_dir), "index.html"))
    return 0 if figures["ok"] else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--messages", type=int, default=6000,
                    help="archived messages in all (default 6000)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--doveadm-modules", default=None,
                    help="directory holding lib95_doveadm_backfill_plugin.so")
    ap.add_argument("--report-dir", default="backfill-demo-report",
                    help="where the per-domain reports are kept")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--max-gap", type=float, default=1.0, metavar="SECONDS",
                    help="the longest gap in service that passes (default 1)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run_demo.py: needs root (private Dovecot and Postfix)", file=sys.stderr)
        return 2
    if args.users < 3 or args.messages < args.users:
        print("run_demo.py: --users >= 3 and --messages >= --users", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
