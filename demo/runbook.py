"""The commands of docs/runbook.md that the demo runs, in the runbook's
order.  tests/docs/test_runbook.py checks that this list is exactly the
runbook's `sh demo step=N` blocks, line by line; the demo checks at its
end that it ran every one of them, in this order.

Each entry: (step, host, command[, exit]).  host is the MX whose Postfix
the command talks to (MAIL_CONFIG), or None; exit is the exit code the
runbook says the command ends with when all is well (default 0).  The commands run with `sh -c`
and the runbook's names (WINDOW, STATE_DB, BACKFILL_STATE, BACKUP,
RESTORE, MAIL_OWNER, REPORTS, DOMAIN_MAP) set to the demo's private instances;
`backfillctl` and `doveadm` on PATH reach the build and the private
Dovecot.
"""
import os
import shlex
import subprocess

RUNBOOK = [
    (3, None, 'backfillctl window open "$WINDOW" --until 30d'),
    (3, None, 'backfillctl window status'),
    (4, "primary", 'postconf -h smtpd_milters'),
    (4, "secondary", 'postqueue -f'),
    (5, None, 'cp -a "$BACKUP"/. "$RESTORE.staging"/'),
    (5, None, 'chown -R "$MAIL_OWNER:$MAIL_OWNER" "$RESTORE.staging"'),
    (5, None, 'find "$RESTORE.staging" -type d -exec chmod 0700 {} +'),
    (5, None, 'find "$RESTORE.staging" -type f -exec chmod 0600 {} +'),
    (5, None, 'mv -T "$RESTORE.staging" "$RESTORE"'),
    (5, None, 'find "$RESTORE" ! -user "$MAIL_OWNER" -print -quit'),
    (5, None, 'find "$BACKUP" -type f \\( -path \'*/cur/*\' -o -path \'*/new/*\' \\) | wc -l'),
    (5, None, 'find "$RESTORE" -type f \\( -path \'*/cur/*\' -o -path \'*/new/*\' \\) | wc -l'),
    (6, None, 'doveadm -f json backfill run -A -p 2 > "$REPORTS/run.json"'),
    (7, None, 'doveadm backfill status -A -d'),
    (7, "primary", "postqueue -p | grep -c '^[0-9A-F]*!' || true"),
    (8, None, 'doveadm -f tab backfill verify -A > "$REPORTS/verify.tsv"'),
    (8, None, 'backfillctl report --verify "$REPORTS/verify.tsv" --out "$REPORTS/domains" ${DOMAIN_MAP:+--domain-map "$DOMAIN_MAP"}'),
    (9, "secondary", 'postconf -h maximal_queue_lifetime'),
    (9, "secondary", 'postqueue -p | tail -n 1'),
    (9, None, 'backfillctl window close'),
    (9, None, 'backfillctl window status', 1),
    (10, "primary", 'postsuper -d ALL hold'),
    (10, None, 'backfillctl dedup purge'),
    (11, None, 'doveadm user \'*\' | while read -r u; do rm -rf "$(doveadm user -f home "$u")/.backfill"; done'),
    (12, None, 'sqlite3 "$STATE_DB" ".backup \'$REPORTS/state-backup.db\'"'),
]

DOVEADM_WRAPPER = """#!/bin/sh
# doveadm of the demo's private Dovecot: doveadm loads plugins only from
# its compiled-in directory, so the build's doveadm module directory (and
# on Dovecot 2.4 the settings module) is bind-mounted over it in a private
# mount namespace (an installed package needs none of this).
exec {argv} "$@"
"""


class Runner:
    """Runs RUNBOOK's entries one at a time, refusing any other order."""

    def __init__(self, say, env, mail_config):
        self.say = say
        self.env = env
        self.mail_config = mail_config  # host -> Postfix config dir
        self.pos = 0
        self.failed = []

    @staticmethod
    def make_bin(bindir, backfillctl, doveadm_argv):
        """bindir with backfillctl and a doveadm wrapper running
        doveadm_argv (dovecot.doveadm_argv) with the runbook's arguments."""
        os.makedirs(bindir, exist_ok=True)
        os.symlink(backfillctl, os.path.join(bindir, "backfillctl"))
        path = os.path.join(bindir, "doveadm")
        with open(path, "w") as f:
            f.write(DOVEADM_WRAPPER.format(argv=shlex.join(doveadm_argv)))
        os.chmod(path, 0o755)

    def run(self, step):
        """The next command, which must belong to step."""
        if self.pos >= len(RUNBOOK) or RUNBOOK[self.pos][0] != step:
            raise RuntimeError("demo runs runbook step %d out of order (next: %s)"
                               % (step, RUNBOOK[self.pos] if self.pos < len(RUNBOOK)
                                  else "none left"))
        _, host, cmd = RUNBOOK[self.pos][:3]
        want = RUNBOOK[self.pos][3] if len(RUNBOOK[self.pos]) > 3 else 0
        self.pos += 1
        env = dict(self.env)
        if host:
            env["MAIL_CONFIG"] = self.mail_config[host]
        self.say("runbook step %d%s: $ %s" % (step, " (%s MX)" % host if host else "", cmd))
        # umask 007: as step 0 of the runbook sets it
        r = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True,
                           umask=0o007)
        for line in (r.stdout + r.stderr).splitlines()[:20]:
            self.say("     " + line)
        if r.returncode != 0:
            self.say("     (exit %d)" % r.returncode)
        r.expected = r.returncode == want
        return r

    def run_step(self, step):
        """Every remaining command of step."""
        out = []
        while self.pos < len(RUNBOOK) and RUNBOOK[self.pos][0] == step:
            out.append(self.run(step))
        return out

    def complete(self):
        return self.pos == len(RUNBOOK)
