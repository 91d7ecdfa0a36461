#!/usr/bin/python3
"""`doveadm backfill run` over many users against a loop of `doveadm
import` over the same users and data.

    sudo /usr/bin/python3 bench/run-vs-import.py --plugin-dir BUILD/dovecot-plugin

200 users (--users), each with an archive of 500 messages (--messages) and
a live mailbox of 20 messages, 10 of which are archived messages
redelivered. Archives are owned by the mail user, like the live mailboxes
(hardlink mode). Every archive file is read once before timing, so both
sides start with the archive in the page cache.

Measured, in total archived messages per second:
  run      `doveadm backfill run -F USERS` (one process, users in turn; dedup on)
  run -p   the same with --parallel (default 2, one per core here)
  import   `doveadm import -u USER -s maildir:ARCHIVE "" all` for each user in
           turn, into a second, identical set of live mailboxes (no dedup)
The ratios run/import are printed.

doveadm loads plugins only from its compiled-in directory: the run calls
happen in a private mount namespace with the build's doveadm-modules
directory bind-mounted over it. Stdlib only; runs as root.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))
import dovecot as dv  # noqa: E402
import maildir_gen as mg  # noqa: E402

MODULE_DIR = "/usr/lib/dovecot/modules/doveadm"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def count_messages(maildir):
    n = 0
    for root, dirs, files in os.walk(maildir):
        if os.path.basename(root) in ("cur", "new"):
            n += len(files)
    return n


def warm(path):
    for root, dirs, files in os.walk(path):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                while fh.read(1 << 20):
                    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plugin-dir", required=True, help="BUILD/dovecot-plugin")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: starts a private Dovecot with mail uid 8")
    plugin_dir = os.path.abspath(args.plugin_dir)
    modules = os.path.join(plugin_dir, "doveadm-modules")
    if not os.path.exists(os.path.join(modules, "lib95_doveadm_backfill_plugin.so")):
        sys.exit("%s: lib95_doveadm_backfill_plugin.so not built" % modules)

    base = tempfile.mkdtemp(prefix="bf-bench-run-", dir=args.tmpdir)
    os.chmod(base, 0o755)
    state_dir = os.path.join(base, "state")
    os.makedirs(state_dir)
    dv.chown_tree(state_dir)
    arch_root = os.path.join(base, "archive")
    os.makedirs(arch_root)
    dc = dv.Dovecot(plugin_dir=plugin_dir, mail_plugins="",
                    plugin={"backfill_archive": "maildir:%s/%%Ln/Maildir" % arch_root,
                            "backfill_state": "sqlite:%s/state.db" % state_dir,
                            "backfill_max_parallel": str(max(4, args.parallel))},
                    workdir=os.path.join(base, "dovecot"),
                    mail_root=os.path.join(base, "live"))
    try:
        t0 = time.time()
        users = []
        for i in range(args.users):
            u = "r%03d" % i
            scen = mg.bulk_scenario(1000 + i, args.messages, 20, 10)
            for prefix in ("r", "p", "i"):
                home = os.path.join(base, "live", prefix + u[1:])
                mg.write_maildir(os.path.join(home, "Maildir"), scen.live, host="new-mx") \
                    if prefix == "r" else subprocess.run(
                        ["cp", "-a", os.path.join(base, "live", u), home], check=True)
                dv.chown_tree(home)
                dc.add_user(prefix + u[1:], home=home)
            arch = os.path.join(arch_root, u, "Maildir")
            mg.write_maildir(arch, scen.archive)
            dv.chown_tree(os.path.join(arch_root, u))
            # the -p users read the same archive
            os.symlink(u, os.path.join(arch_root, "p" + u[1:]))
            users.append(u[1:])
        total = args.users * args.messages
        log("generated %d users x %d archived messages in %.1f s" % (args.users, args.messages, time.time() - t0))
        dc.start()
        warm(arch_root)

        def backfill_run(prefix, extra):
            listing = os.path.join(base, "users-%s.txt" % prefix)
            with open(listing, "w") as f:
                f.write("".join(prefix + u + "\n" for u in users))
            cmd = ["unshare", "-m", "sh", "-c",
                   'mount --bind "$0" %s && exec "$@"' % MODULE_DIR, modules,
                   dv.DOVEADM, "-c", dc.conf_path, "-f", "tab", "backfill", "run",
                   "-F", listing] + extra
            subprocess.run(["sync"])
            t = time.time()
            r = subprocess.run(cmd, capture_output=True, text=True)
            secs = time.time() - t
            if r.returncode != 0:
                sys.exit("backfill run failed (%d): %s" % (r.returncode, r.stderr[-2000:]))
            rows = r.stdout.strip().splitlines()[1:]
            done = sum(1 for row in rows if "\tdone\t" in row)
            if done != len(users):
                sys.exit("backfill run: %d of %d users done\n%s" % (done, len(users), r.stdout[-2000:]))
            return secs, " ".join(cmd[6:])

        run_s, run_cmd = backfill_run("r", [])
        log("backfill run: %.2f s, %.0f msg/s" % (run_s, total / run_s))
        par_s, par_cmd = backfill_run("p", ["--parallel", str(args.parallel)])
        log("backfill run --parallel %d: %.2f s, %.0f msg/s" % (args.parallel, par_s, total / par_s))

        subprocess.run(["sync"])
        t = time.time()
        for u in users:
            dc.doveadm("import", "-u", "i" + u, "-s",
                       "maildir:" + os.path.join(arch_root, "r" + u, "Maildir"), "", "all")
        imp_s = time.time() - t
        log("doveadm import loop: %.2f s, %.0f msg/s" % (imp_s, total / imp_s))

        live_r = sum(count_messages(os.path.join(base, "live", "r" + u, "Maildir")) for u in users)
        live_i = sum(count_messages(os.path.join(base, "live", "i" + u, "Maildir")) for u in users)
        print("users %d, archived messages %d (%d per user), live 20 per user of which 10 archived"
              % (args.users, total, args.messages))
        print("backfill run -F (sequential): %7.2f s %8.0f msg/s  live after: %d" % (run_s, total / run_s, live_r))
        print("backfill run --parallel %d:    %7.2f s %8.0f msg/s" % (args.parallel, par_s, total / par_s))
        print("doveadm import loop:          %7.2f s %8.0f msg/s  live after: %d (no dedup)"
              % (imp_s, total / imp_s, live_i))
        print("ratio run/import: %.2f sequential, %.2f parallel (>= 1: at least as fast)"
              % (imp_s / run_s, imp_s / par_s))
        print("command: %s" % run_cmd)
    finally:
        dc.stop()
        if args.keep:
            log("kept", base)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
