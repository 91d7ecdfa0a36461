#!/usr/bin/python3
"""Postfix throughput with backfill-milter on a unix socket against the
same Postfix without it, both delivering to discard:, at 0% and 50%
duplicate messages; and the milter's RSS after the run.

usage: bench/milter-throughput.py [--messages N] [--sessions S] [--size B]
                                  [--rounds R] [--null-milter PATH]
                                  MILTER BACKFILLCTL

Two private Postfix instances (tests/lib/postfix.py) on 127.0.0.1 at free
ports; smtp-source (from the postfix package) sends N messages over S
parallel sessions; the clock stops when the queue is empty again.  0%:
every message is unique (smtp-source's own Message-Id).  50%: half of the
messages come from one fixed file (-F), so all of them but the first are
duplicates.  The milter runs inside an open window with DuplicateAction
tag (duplicates delivered, tagged), so every Postfix instance does the
same delivery work and the ratio measures the milter alone.  A third
instance uses the same milter with Window off: the cost of the milter
protocol itself (libmilter, a connection per SMTP session), without any
dedup work.  With --null-milter (build/bench/null-milter) a fourth
instance runs the cheapest filter libmilter allows, one that skips every
step but end of message: what any milter costs this Postfix on this
machine.  Rounds rotate the order of the instances; each round gives
a ratio per instance against the milter-less one measured in the same
round, and the median ratio of the rounds is reported: other load on a
shared machine moves the runs of a round alike.
"""
import argparse
import os
import shutil
import statistics
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


class NullMilter:
    """bench/null-milter on a unix socket in tmp: the reference
    instance, the cheapest filter libmilter allows."""

    def __init__(self, path, tmp):
        self.path = path
        self.sock = os.path.join(tmp, 'null-milter.sock')
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.path, 'unix:' + self.sock])
        deadline = time.time() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit('null-milter did not start')
            time.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


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
        if sessions < 2:
            source(pf, dups, 1, size, dup_file)
            source(pf, count - dups, 1, size)
        else:
            half = sessions // 2
            t = threading.Thread(target=source,
                                 args=(pf, dups, half, size, dup_file))
            t.start()
            source(pf, count - dups, sessions - half, size)
            t.join()
    while queue_files(pf) > 0:
        time.sleep(0.05)
    return count / (time.monotonic() - start)


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--messages', type=int, default=2000,
                    help='messages per run (a round is one run per instance)')
    ap.add_argument('--sessions', type=int, default=10)
    ap.add_argument('--size', type=int, default=2000)
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--config', action='append', default=[],
                    help='extra backfill-milter.conf line for the milter '
                    'under test')
    ap.add_argument('--null-milter', metavar='PATH',
                    help='build/bench/null-milter: add the reference '
                         'instance with the cheapest libmilter filter')
    ap.add_argument('milter')
    ap.add_argument('backfillctl')
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix='bf-bench-milter-')
    make_traversable(tmp)
    dup_file = os.path.join(tmp, 'dup.eml')
    with open(dup_file, 'wb') as f:
        f.write(DUP_MESSAGE)
    common = ['SocketMode 0660', 'SocketGroup postfix', 'LogLevel info']
    milters, instances = [], []
    results = {}
    null = None
    try:
        # The milter under test, inside an open window; and the same
        # binary with Window off: what the milter protocol alone costs.
        for name, extra in (('with', ['DuplicateAction tag', *a.config]),
                            ('off', ['Window off'])):
            d = os.path.join(tmp, name)
            os.mkdir(d)
            m = PrivateMilter(a.milter, a.backfillctl, tmp=d,
                              window='bench' if name == 'with' else None,
                              config=common + extra)
            m.start()
            milters.append(m)
        instances = [('without', Postfix('mxp', relay_transport='discard:')),
                     ('with', Postfix('mxm', relay_transport='discard:',
                                      milters='unix:' + milters[0].sock)),
                     ('off', Postfix('mxo', relay_transport='discard:',
                                     milters='unix:' + milters[1].sock))]
        if a.null_milter:
            null = NullMilter(a.null_milter, tmp)
            null.start()
            instances.append(('null', Postfix(
                'mxn', relay_transport='discard:',
                milters='unix:' + null.sock)))
        for _, pf in instances:
            pf.start()
        # Warm up (process pools, page cache, the store's file).
        for _, pf in instances:
            run(pf, 200, a.sessions, a.size, 0, dup_file)
        milter = milters[0]
        rss_start = milter.rss_kb()
        cpu_start = cpu_seconds(milter.proc.pid)
        counted = 0
        for dup_pct in (0, 50):
            for r in range(a.rounds):
                k = r % len(instances)
                order = instances[k:] + instances[:k]
                for name, pf in order:
                    rate = run(pf, a.messages, a.sessions, a.size, dup_pct,
                               dup_file)
                    results.setdefault((dup_pct, name), []).append(rate)
                    if name == 'with':
                        counted += a.messages
                    print('  %d%% duplicates, %s, round %d: %.0f msg/s'
                          % (dup_pct, name, r + 1, rate), file=sys.stderr)
            if dup_pct == 0:
                rss_mid, count_mid = milter.rss_kb(), counted
        rss_end = milter.rss_kb()
        cpu = cpu_seconds(milter.proc.pid) - cpu_start
        with open('/proc/%d/status' % milter.proc.pid) as f:
            hwm = [l.split()[1] for l in f if l.startswith('VmHWM:')][0]
        stats = milter.ctl('dedup', 'stats').stdout.split()
    finally:
        for _, pf in instances:
            pf.stop()
            pf.cleanup()
        for m in milters:
            m.stop()
        if null is not None:
            null.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    version = subprocess.run(['postconf', '-dh', 'mail_version'],
                             capture_output=True, text=True).stdout.strip()
    print('backfill-milter throughput: Postfix %s, %d messages of %d bytes '
          'per run, %d smtp-source sessions, delivery to discard:, median '
          'of %d rounds, load average %s'
          % (version, a.messages, a.size, a.sessions, a.rounds,
             os.getloadavg()[0]))
    for dup_pct in (0, 50):
        base = results[(dup_pct, 'without')]
        line = '%3d%% duplicates: without milter %4.0f msg/s' % (
            dup_pct, statistics.median(base))
        for name, label in (('with', 'with milter'),
                            ('off', 'milter with Window off'),
                            ('null', 'null libmilter filter')):
            if (dup_pct, name) not in results:
                continue
            rates = results[(dup_pct, name)]
            ratios = [x / b for x, b in zip(rates, base)]
            line += '; %s %4.0f msg/s, ratio %.2f (%s)' % (
                label, statistics.median(rates), statistics.median(ratios),
                ' '.join('%.2f' % x for x in ratios))
        print(line)
    print('milter RSS: %d kB after warm-up, %d kB after %d messages, %d kB '
          'after %d messages (peak %s kB)'
          % (rss_start, rss_mid, count_mid, rss_end, counted, hwm))
    print('milter CPU: %.1f s for %d messages (%.2f ms per message)'
          % (cpu, counted, 1000 * cpu / counted))
    print('dedup records in the store: %s' % ' '.join(stats))


if __name__ == '__main__':
    main()
