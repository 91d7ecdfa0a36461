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
The ratios run/import are printed (medians of --rounds rounds, each on
fresh copies of the live mailboxes and an empty state store, the order of
the three rotating from round to round).

doveadm loads plugins only from its compiled-in directory: the run calls
happen in a private mount namespace with the build's doveadm-modules
directory bind-mounted over it. Stdlib only; runs as root.
"""
import argparse
import os
import shutil
import statistics
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
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: starts a private Dovecot with mail uid 8")
    plugin_dir = os.path.abspath(args.plugin_dir)
    modules = dv.doveadm_modules_dir(plugin_dir)
    if not os.path.exists(os.path.join(modules, "lib95_doveadm_backfill_plugin.so")):
        sys.exit("%s: lib95_doveadm_backfill_plugin.so not built" % modules)

    base = tempfile.mkdtemp(prefix="bf-bench-run-", dir=args.tmpdir)
    os.chmod(base, 0o755)
    state_dir = os.path.join(base, "state")
    os.makedirs(state_dir)
    dv.chown_tree(state_dir)
    arch_root = os.path.join(base, "archive")
    pristine = os.path.join(base, "pristine")
    os.makedirs(arch_root)
    os.makedirs(pristine)
    dc = dv.Dovecot(plugin_dir=plugin_dir, mail_plugins="",
                    plugin={"backfill_archive": "maildir:%s/%%Ln/Maildir" % arch_root,
                            "backfill_state": "sqlite:%s/state.db" % state_dir,
                            "backfill_max_parallel": str(max(4, args.parallel))},
                    workdir=os.path.join(base, "dovecot"),
                    mail_root=os.path.join(base, "live"))
    try:
        t0 = time.time()
        users = ["%03d" % i for i in range(args.users)]
        for i, u in enumerate(users):
            scen = mg.bulk_scenario(1000 + i, args.messages, 20, 10)
            mg.write_maildir(os.path.join(pristine, u, "Maildir"), scen.live, host="new-mx")
            dv.chown_tree(os.path.join(pristine, u))
            arch = os.path.join(arch_root, "r" + u, "Maildir")
            mg.write_maildir(arch, scen.archive)
            dv.chown_tree(os.path.join(arch_root, "r" + u))
            # the -p users merge the same archive
            os.symlink("r" + u, os.path.join(arch_root, "p" + u))
            for prefix in ("r", "p", "i"):
                dc.add_user(prefix + u, home=os.path.join(base, "live", prefix + u))
        total = args.users * args.messages
        log("generated %d users x %d archived messages in %.1f s" % (args.users, args.messages, time.time() - t0))
        dc.start()

        def fresh(prefix):
            """The variant's live mailboxes as generated; no merge state;
            no index a previous import left in the archives."""
            for u in users:
                home = os.path.join(base, "live", prefix + u)
                if os.path.exists(home):
                    shutil.rmtree(home)
                subprocess.run(["cp", "-a", os.path.join(pristine, u), home], check=True)
            for f in os.listdir(state_dir):
                os.unlink(os.path.join(state_dir, f))
            for root, dirs, files in os.walk(arch_root):
                for f in files:
                    if f.startswith(("dovecot.index", "dovecot.list.index", "dovecot.mailbox.log")):
                        os.unlink(os.path.join(root, f))
            warm(arch_root)
            subprocess.run(["sync"])

        def backfill_run(prefix, extra):
            listing = os.path.join(base, "users-%s.txt" % prefix)
            with open(listing, "w") as f:
                f.write("".join(prefix + u + "\n" for u in users))
            cmd = ["unshare", "-m", "sh", "-c",
                   'mount --bind "$0" %s && exec "$@"' % MODULE_DIR, modules,
                   dv.DOVEADM, "-c", dc.conf_path, "-f", "tab", "backfill", "run",
                   "-F", listing] + extra
            t = time.time()
            r = subprocess.run(cmd, capture_output=True, text=True)
            secs = time.time() - t
            if r.returncode != 0:
                sys.exit("backfill run failed (%d): %s" % (r.returncode, r.stderr[-2000:]))
            rows = r.stdout.strip().splitlines()[1:]
            done = sum(1 for row in rows if "\tdone\t" in row)
            if done != len(users):
                sys.exit("backfill run: %d of %d users done\n%s" % (done, len(users), r.stdout[-2000:]))
            return secs

        def run_seq():
            return backfill_run("r", [])

        def run_par():
            return backfill_run("p", ["--parallel", str(args.parallel)])

        def run_import():
            t = time.time()
            for u in users:
                dc.doveadm("import", "-u", "i" + u, "-s",
                           "maildir:" + os.path.join(arch_root, "r" + u, "Maildir"), "", "all")
            return time.time() - t

        variants = [("run", "r", run_seq), ("run -p", "p", run_par), ("import", "i", run_import)]
        times = {name: [] for name, _, _ in variants}
        for rnd in range(args.rounds):
            # rotate the order: the next writer meets the last one's dirty
            # pages being flushed
            order = variants[rnd % 3:] + variants[:rnd % 3]
            for name, prefix, fn in order:
                fresh(prefix)
                secs = fn()
                times[name].append(secs)
                log("round %d: %-7s %6.2f s %7.0f msg/s" % (rnd + 1, name, secs, total / secs))

        live_r = sum(count_messages(os.path.join(base, "live", "r" + u, "Maildir")) for u in users)
        live_i = sum(count_messages(os.path.join(base, "live", "i" + u, "Maildir")) for u in users)
        med = {name: statistics.median(v) for name, v in times.items()}
        print("users %d, archived messages %d (%d per user), live 20 per user of which 10 archived; "
              "median of %d rounds" % (args.users, total, args.messages, args.rounds))
        print("backfill run -F (sequential):  %7.2f s %8.0f msg/s  live after: %d"
              % (med["run"], total / med["run"], live_r))
        print("backfill run -F --parallel %d:  %7.2f s %8.0f msg/s"
              % (args.parallel, med["run -p"], total / med["run -p"]))
        print("doveadm import loop:           %7.2f s %8.0f msg/s  live after: %d (no dedup)"
              % (med["import"], total / med["import"], live_i))
        print("ratio run/import: %.2f sequential, %.2f parallel (>= 1: at least as fast)"
              % (med["import"] / med["run"], med["import"] / med["run -p"]))
        print("per round (s): %s" % {k: [round(x, 2) for x in v] for k, v in times.items()})
    finally:
        dc.stop()
        if args.keep:
            log("kept", base)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
