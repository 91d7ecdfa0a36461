#!/usr/bin/python3
"""Postfix throughput with backfill-milter on a unix socket against the
same Postfix without it, both delivering to discard:, at 0% and 50%
duplicate messages; and the milter's RSS after the run.

usage: bench/milter-throughput.py [--messages N] [--sessions S] [--size B]
                                  [--rounds R] MILTER BACKFILLCTL

Two private Postfix instances (tests/lib/postfix.py) on 127.0.0.1 at free
ports; smtp-source (from the postfix package) sends N messages over S
parallel sessions; the clock stops when the queue is empty again.  0%:
every message is unique (smtp-source's own Message-Id).  50%: half of the
messages come from one fixed file (-F), so all of them but the first are
duplicates.  The milter runs inside an open window with DuplicateAction
tag (duplicates delivered, tagged), so both Postfix instances do the same
delivery work and the ratio measures the milter alone.  Rounds alternate
the two instances; the best round of each is kept (the least disturbed
by other load on the machine).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'milter'))

from milterproc import PrivateMilter  # noqa: E402
from postfix import Postfix, make_traversable  # noqa: E402

SMTP_SOURCE = shutil.which('smtp-source') or '/usr/sbin/smtp-source'

DUP_MESSAGE = (b'Message-ID: <always-the-same@example.net>\n'
               b'Date: Sat, 21 Nov 2026 10:00:00 +0000\n'
               b'From: Sender <sender@example.net>\n'
               b'To: <rcpt@example.org>\n'
               b'Subject: the same message again\n'
               b'\n' + b'duplicate body line ........................\n' * 40)


def queue_files(pf):
    n = 0
    for sub in ('maildrop', 'incoming', 'active', 'deferred'):
        for _, _, files in os.walk(os.path.join(pf.queue_dir, sub)):
            n += len(files)
    return n


def source(pf, count, sessions, size, dup_file=None):
    cmd = [SMTP_SOURCE, '-s', str(sessions), '-m', str(count),
           '-f', 'sender@example.net', '-t', 'rcpt@example.org']
    if dup_file:
        cmd += ['-F', dup_file]
    else:
        cmd += ['-l', str(size)]
    cmd.append('127.0.0.1:%d' % pf.port)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def run(pf, count, sessions, size, dup_pct, dup_file):
    """Messages per second from the first connection to an empty queue."""
    start = time.monotonic()
    if dup_pct == 0:
        source(pf, count, sessions, size)
    else:
        dups = count * dup_pct // 100
        half = max(1, sessions // 2)
        t = threading.Thread(target=source,
                             args=(pf, dups, half, size, dup_file))
        t.start()
        source(pf, count - dups, sessions - half, size)
        t.join()
    while queue_files(pf) > 0:
        time.sleep(0.05)
    return count / (time.monotonic() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--messages', type=int, default=10000)
    ap.add_argument('--sessions', type=int, default=10)
    ap.add_argument('--size', type=int, default=2000)
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--config', action='append', default=[],
                    help='extra backfill-milter.conf line, e.g. "Window off"')
    ap.add_argument('milter')
    ap.add_argument('backfillctl')
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix='bf-bench-milter-')
    make_traversable(tmp)
    dup_file = os.path.join(tmp, 'dup.eml')
    with open(dup_file, 'wb') as f:
        f.write(DUP_MESSAGE)
    milter = PrivateMilter(a.milter, a.backfillctl, tmp=tmp, window='bench',
                           config=['SocketMode 0660', 'SocketGroup postfix',
                                   'DuplicateAction tag', 'LogLevel info',
                                   *a.config])
    milter.start()
    with_m = Postfix('mxm', relay_transport='discard:',
                     milters='unix:' + milter.sock)
    without = Postfix('mxp', relay_transport='discard:')
    results = {}
    try:
        with_m.start()
        without.start()
        # Warm up both (process pools, page cache, the store's file).
        for pf in (with_m, without):
            run(pf, 200, a.sessions, a.size, 0, dup_file)
        rss_start = milter.rss_kb()
        sent_through_milter = 200
        for dup_pct in (0, 50):
            for r in range(a.rounds):
                order = (without, with_m) if r % 2 == 0 else (with_m, without)
                for pf in order:
                    rate = run(pf, a.messages, a.sessions, a.size, dup_pct,
                               dup_file)
                    key = (dup_pct, pf is with_m)
                    results[key] = max(results.get(key, 0), rate)
                    if pf is with_m:
                        sent_through_milter += a.messages
                    print('  %d%% duplicates, %s milter, round %d: %.0f msg/s'
                          % (dup_pct, 'with' if pf is with_m else 'without',
                             r + 1, rate), file=sys.stderr)
            if dup_pct == 0:
                rss_after_first = milter.rss_kb()
                after_first_count = sent_through_milter
        rss_end = milter.rss_kb()
        with open('/proc/%d/status' % milter.proc.pid) as f:
            hwm = [l.split()[1] for l in f if l.startswith('VmHWM:')][0]
        stats = milter.ctl('dedup', 'stats').stdout.split()
        with open('/proc/%d/stat' % milter.proc.pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    finally:
        with_m.stop()
        without.stop()
        milter.stop()
        with_m.cleanup()
        without.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)

    print('backfill-milter throughput (Postfix %s, %d messages of %d bytes '
          'per run, %d sessions, best of %d rounds, delivery to discard:)'
          % (Postfix.__module__ and subprocess.run(
              ['postconf', '-dh', 'mail_version'], capture_output=True,
              text=True).stdout.strip(), a.messages, a.size, a.sessions,
             a.rounds))
    for dup_pct in (0, 50):
        base, mil = results[(dup_pct, False)], results[(dup_pct, True)]
        print('%3d%% duplicates: without milter %6.0f msg/s, with milter '
              '%6.0f msg/s, ratio %.2f' % (dup_pct, base, mil, mil / base))
    print('milter RSS: %d kB after warm-up, %d kB after %d messages, %d kB '
          'after %d messages (peak %s kB)'
          % (rss_start, rss_after_first, after_first_count, rss_end,
             sent_through_milter, hwm))
    print('milter CPU time: %.1f s for %d messages (%.2f ms per message)'
          % (cpu_s, sent_through_milter, 1000 * cpu_s / sent_through_milter))
    print('dedup records in the store: %s' % ' '.join(stats))


if __name__ == '__main__':
    main()
