#!/usr/bin/python3
"""The store link between datacenters over TLS on Debian 12 (issue 16,
item 7), as docs/redis-tls.md sets it up: Debian 12's hiredis has no TLS,
so stunnel4 carries the link.  A private redis-server with requirepass
on a loopback port; an stunnel server in front of it (the Redis host's
side: TLS with a certificate made here); an stunnel client (each MX's
side) that verifies that certificate and host name; the milter's State
points at the client's local port.

Checked: the milter de-duplicates through the tunnel (a message, then
its repeat held once the first copy is confirmed); the TLS port speaks
nothing but TLS (a plain Redis PING gets no answer there); a client that
trusts another certificate gets no connection, and the milter then
accepts mail unchecked, as with any store failure.

Environment: BACKFILL_MILTER and BACKFILLCTL.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))

from milterclient import MilterClient  # noqa: E402
from milterproc import PrivateMilter  # noqa: E402
from postfix import free_port  # noqa: E402
from redis_server import REDIS_SERVER, PrivateRedis  # noqa: E402

MILTER = os.environ.get('BACKFILL_MILTER', 'backfill-milter')
BACKFILLCTL = os.environ.get('BACKFILLCTL', 'backfillctl')
STUNNEL = shutil.which('stunnel4') or '/usr/bin/stunnel4'
PASSWORD = 'tls-test-password'
MESSAGE = [('Message-ID', '<tls@example.net>'), ('From', 'a@example.net'),
           ('Subject', 'over TLS')]


def wait_port(port, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f'{proc.args[0]} exited')
        try:
            with socket.create_connection(('127.0.0.1', port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f'nothing listens on {port}')


def make_cert(tmp, name):
    key, cert = (os.path.join(tmp, f'{name}.{e}') for e in ('key', 'pem'))
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048',
                    '-nodes', '-keyout', key, '-out', cert, '-days', '2',
                    '-subj', '/CN=redis.test', '-addext',
                    'subjectAltName=DNS:redis.test'],
                   check=True, capture_output=True)
    return key, cert


class RedisTlsTest(unittest.TestCase):
    def setUp(self):
        for prog in (REDIS_SERVER, STUNNEL):
            if not os.path.exists(prog):
                self.skipTest(f'{prog} not installed')
        self.tmp = tempfile.mkdtemp(prefix='bf-redis-tls-')
        self.procs = []
        # cleanups run also when setUp fails half-way
        self.addCleanup(self.stop_all)
        key, self.cert = make_cert(self.tmp, 'server')
        _, self.other_cert = make_cert(self.tmp, 'other')
        self.redis = PrivateRedis(self.tmp, password=PASSWORD)
        self.addCleanup(self.redis.stop)
        self.redis_port, self.tls_port = self.redis.port, free_port()
        # The Redis host's side: TLS in, plain Redis on its own loopback.
        self.stunnel('server', [
            f'accept = 127.0.0.1:{self.tls_port}',
            f'connect = 127.0.0.1:{self.redis_port}',
            f'cert = {self.cert}', f'key = {key}'], self.tls_port)

    def stop_all(self):
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, args, port):
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        wait_port(port, p)
        return p

    def stunnel(self, name, service, port):
        path = os.path.join(self.tmp, f'stunnel-{name}.conf')
        with open(path, 'w') as f:
            f.write('foreground = yes\npid =\n'
                    f'output = {self.tmp}/stunnel-{name}.log\n'
                    f'[{name}]\n' + '\n'.join(service) + '\n')
        return self.start([STUNNEL, path], port)

    def client(self, cafile):
        """An MX's side: a local port, TLS to the Redis host, the
        server's certificate and name checked."""
        port = free_port()
        self.stunnel(f'client-{port}', [
            'client = yes', f'accept = 127.0.0.1:{port}',
            f'connect = 127.0.0.1:{self.tls_port}', 'verifyChain = yes',
            f'CAfile = {cafile}', 'checkHost = redis.test'], port)
        return f'redis://default:{PASSWORD}@127.0.0.1:{port}/0?timeout=2000'

    def send(self, milter, qid):
        c = MilterClient(milter.sock)
        try:
            reply, actions = c.message('<a@example.net>',
                                       ['<alice@example.org>'], MESSAGE,
                                       [b'body\r\n'], queue_id=qid)
        finally:
            c.close()
        self.assertEqual(reply, b'a', actions)
        return actions

    def test_dedup_through_the_tunnel(self):
        state = self.client(self.cert)
        with PrivateMilter(MILTER, BACKFILLCTL, state=state,
                           window='tls-1') as m:
            first = self.send(m, 'T1')
            fp = MilterClient.added(first, 'X-Backfill-Fingerprint')
            self.assertIsNotNone(fp, first)
            m.ctl('dedup', 'mark-delivered', 'tls-1', 'alice@example.org', fp)
            again = self.send(m, 'T2')
            self.assertIn('quarantine', [a[0] for a in again], again)
        # the TLS port answers no plain Redis
        with socket.create_connection(('127.0.0.1', self.tls_port), 5) as s:
            s.settimeout(2)
            s.sendall(f'AUTH {PASSWORD}\r\nPING\r\n'.encode())
            try:
                answer = s.recv(100)
            except (socket.timeout, ConnectionError):
                answer = b''
        self.assertNotIn(b'PONG', answer)
        self.assertNotIn(b'+OK', answer)

    def test_wrong_certificate_no_link(self):
        state = self.client(self.other_cert)
        with PrivateMilter(MILTER, BACKFILLCTL, state=state) as m:
            r = m.ctl('window', 'open', 'tls-2', check=False)
            self.assertNotEqual(r.returncode, 0)
            actions = self.send(m, 'T3')
            # no window could be read: outside a window or unchecked,
            # never lost
            self.assertIsNone(MilterClient.added(actions,
                                                 'X-Backfill-Fingerprint'))


if __name__ == '__main__':
    unittest.main(verbosity=2)
