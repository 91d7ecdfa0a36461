#!/usr/bin/python3
"""Postfix throughput with backfill-milter keeping its state in Redis,
against the same Postfix without a milter (and, in the same run, the
milter with its state in SQLite), all delivering to discard:, at 0% and
50% duplicate messages.

usage: bench/milter-redis-throughput.py [--messages N] [--sessions S]
          [--size B] [--rounds R] [--unix] [--null-milter PATH]
          MILTER BACKFILLCTL

The method is bench/milter-throughput.py's (both use bench/milterbench.py):
private Postfix instances on 127.0.0.1 at free ports, smtp-source sends N
messages over S parallel sessions, the clock stops when the queue is
empty again; the milter runs in an open window with DuplicateAction tag
so every instance does the same delivery work.  Redis is a private
redis-server started here on 127.0.0.1 at a free port (--unix: on a unix
socket in the temp dir), with the persistence docs/state-store.md
recommends (appendonly yes, appendfsync everysec).  Rounds rotate the
order of the instances; the median of the per-round ratios is reported.
With --null-milter (build/bench/null-milter) one more instance runs the
cheapest filter libmilter allows: what any milter costs this Postfix.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import milterbench as mb  # noqa: E402
from milterproc import PrivateMilter  # noqa: E402
from postfix import free_port  # noqa: E402

REDIS_SERVER = shutil.which('redis-server') or '/usr/bin/redis-server'
REDIS_CLI = shutil.which('redis-cli') or '/usr/bin/redis-cli'


class PrivateRedis:
    def __init__(self, tmp, unix):
        self.dir = os.path.join(tmp, 'redis')
        os.mkdir(self.dir)
        self.sock = os.path.join(self.dir, 'redis.sock')
        self.port = 0 if unix else free_port()
        self.uri = ('redis+unix://%s?db=0' % self.sock if unix
                    else 'redis://127.0.0.1:%d/0' % self.port)
        self.conf = os.path.join(self.dir, 'redis.conf')
        with open(self.conf, 'w') as f:
            f.write('bind 127.0.0.1\nport %d\nunixsocket %s\n'
                    'unixsocketperm 700\nprotected-mode yes\n'
                    'daemonize no\ndir %s\nappendonly yes\n'
                    'appendfsync everysec\nsave ""\nlogfile %s\n'
                    % (self.port, self.sock, self.dir,
                       os.path.join(self.dir, 'redis.log')))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([REDIS_SERVER, self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(200):
            r = subprocess.run([REDIS_CLI, '-s', self.sock, 'ping'],
                               capture_output=True, text=True)
            if r.stdout.strip() == 'PONG':
                return
            time.sleep(0.05)
        raise SystemExit('redis-server did not start')

    def used_memory(self):
        r = subprocess.run([REDIS_CLI, '-s', self.sock, 'info', 'memory'],
                           capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if line.startswith('used_memory:'):
                return int(line.split(':')[1])
        return 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    mb.add_arguments(ap)
    ap.add_argument('--unix', action='store_true',
                    help='Redis on a unix socket instead of 127.0.0.1')
    a = ap.parse_args()

    tmp, dup_file = mb.make_tmp('bf-bench-redis-')
    common = ['SocketMode 0660', 'SocketGroup postfix', 'LogLevel info',
              'DuplicateAction tag']
    redis = PrivateRedis(tmp, a.unix)
    milters, instances, results = [], [], {}
    null = None
    try:
        redis.start()
        for name, state in (('redis', redis.uri),
                            ('sqlite', 'sqlite:' + os.path.join(
                                tmp, 'sqlite', 'state.db'))):
            d = os.path.join(tmp, 'milter-' + name)
            os.mkdir(d)
            if name == 'sqlite':
                os.mkdir(os.path.join(tmp, 'sqlite'))
            m = PrivateMilter(a.milter, a.backfillctl, tmp=d, window='bench',
                              config=common, state=state)
            m.start()
            milters.append(m)
        instances, null = mb.discard_instances(
            a, tmp, (('without', 'rbp', None),
                     ('redis', 'rbr', milters[0].sock),
                     ('sqlite', 'rbs', milters[1].sock)), 'rbn')
        mb.start_instances(instances, a, dup_file)
        mem0 = redis.used_memory()
        for dup_pct in (0, 50):
            mb.measure(instances, a, dup_pct, dup_file, results)
        mem1 = redis.used_memory()
        stats = milters[0].ctl('dedup', 'stats').stdout.split()
    finally:
        mb.stop_all(instances, milters, null)
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    rd_version = subprocess.run([REDIS_SERVER, '--version'],
                                capture_output=True,
                                text=True).stdout.split()[2]
    print('backfill-milter throughput with Redis state: Postfix %s, Redis '
          '%s over %s, %d messages of %d bytes per run, %d smtp-source '
          'sessions, delivery to discard:, median of %d rounds, load '
          'average %.2f' % (mb.postfix_version(), rd_version.replace('v=', ''),
                            'a unix socket' if a.unix else 'TCP 127.0.0.1',
                            a.messages, a.size, a.sessions, a.rounds,
                            os.getloadavg()[0]))
    worst = None
    for dup_pct in (0, 50):
        line, medians = mb.ratio_line(results, dup_pct,
                                      (('redis', 'milter, Redis state'),
                                       ('sqlite', 'milter, SQLite state'),
                                       ('null', 'null libmilter filter')))
        worst = (medians['redis'] if worst is None
                 else min(worst, medians['redis']))
        print(line)
    print('Redis used_memory grew by %d bytes during the measured runs; '
          'dedup records: %s' % (mem1 - mem0, ' '.join(stats)))
    print('ratio with Redis state (worst of 0%%/50%%): %.2f, target 0.85: %s'
          % (worst, 'met' if worst >= 0.85 else 'NOT met'))
    return 0 if worst >= 0.85 else 1


if __name__ == '__main__':
    sys.exit(main())
