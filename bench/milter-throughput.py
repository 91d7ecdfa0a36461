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
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import milterbench as mb  # noqa: E402
from milterproc import PrivateMilter  # noqa: E402


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def main():
    ap = argparse.ArgumentParser()
    mb.add_arguments(ap)
    ap.add_argument('--config', action='append', default=[],
                    help='extra backfill-milter.conf line for the milter '
                    'under test')
    a = ap.parse_args()

    tmp, dup_file = mb.make_tmp('bf-bench-milter-')
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
        instances, null = mb.discard_instances(
            a, tmp, (('without', 'mxp', None),
                     ('with', 'mxm', milters[0].sock),
                     ('off', 'mxo', milters[1].sock)), 'mxn')
        mb.start_instances(instances, a, dup_file)
        milter = milters[0]
        rss_start = milter.rss_kb()
        cpu_start = cpu_seconds(milter.proc.pid)
        counted = 0
        for dup_pct in (0, 50):
            mb.measure(instances, a, dup_pct, dup_file, results)
            # each round runs the milter under test once
            counted += a.rounds * a.messages
            if dup_pct == 0:
                rss_mid, count_mid = milter.rss_kb(), counted
        rss_end = milter.rss_kb()
        cpu = cpu_seconds(milter.proc.pid) - cpu_start
        with open('/proc/%d/status' % milter.proc.pid) as f:
            hwm = [l.split()[1] for l in f if l.startswith('VmHWM:')][0]
        stats = milter.ctl('dedup', 'stats').stdout.split()
    finally:
        mb.stop_all(instances, milters, null)
        shutil.rmtree(tmp, ignore_errors=True)

    print('backfill-milter throughput: Postfix %s, %d messages of %d bytes '
          'per run, %d smtp-source sessions, delivery to discard:, median '
          'of %d rounds, load average %s'
          % (mb.postfix_version(), a.messages, a.size, a.sessions, a.rounds,
             os.getloadavg()[0]))
    for dup_pct in (0, 50):
        line, _ = mb.ratio_line(results, dup_pct,
                                (('with', 'with milter'),
                                 ('off', 'milter with Window off'),
                                 ('null', 'null libmilter filter')))
        print(line)
    print('milter RSS: %d kB after warm-up, %d kB after %d messages, %d kB '
          'after %d messages (peak %s kB)'
          % (rss_start, rss_mid, count_mid, rss_end, counted, hwm))
    print('milter CPU: %.1f s for %d messages (%.2f ms per message)'
          % (cpu, counted, 1000 * cpu / counted))
    print('dedup records in the store: %s' % ' '.join(stats))


if __name__ == '__main__':
    main()
