"""A private redis-server for a test: its own directory, a free loopback
port, no persistence; optionally with requirepass."""

import os
import shutil
import subprocess
import time

from postfix import free_port

REDIS_SERVER = shutil.which('redis-server') or '/usr/bin/redis-server'
REDIS_CLI = shutil.which('redis-cli') or '/usr/bin/redis-cli'


class PrivateRedis:
    def __init__(self, tmp, password=None):
        self.dir = os.path.join(tmp, 'redis')
        os.mkdir(self.dir)
        self.password = password
        # The port is free when picked and bound a moment later: a test
        # running beside this one may take it in between.  Then our server
        # exits, and another test's Redis would answer our PING: the
        # server that answers must be ours (its process_id), else start
        # again on another port.
        for _ in range(3):
            if self._start():
                return
        raise AssertionError('redis-server did not start (see %s)'
                             % os.path.join(self.dir, 'redis.log'))

    def _start(self):
        self.port = free_port()
        auth = f'default:{self.password}@' if self.password else ''
        self.uri = f'redis://{auth}127.0.0.1:{self.port}/0'
        conf = os.path.join(self.dir, 'redis.conf')
        with open(conf, 'w') as f:
            f.write(f'bind 127.0.0.1\nport {self.port}\n'
                    f'protected-mode yes\ndaemonize no\ndir {self.dir}\n'
                    f'save ""\nappendonly no\n'
                    f'logfile {os.path.join(self.dir, "redis.log")}\n')
            if self.password:
                f.write(f'requirepass {self.password}\n')
        self.proc = subprocess.Popen([REDIS_SERVER, conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        cli = [REDIS_CLI, '-p', str(self.port)]
        if self.password:
            cli += ['--no-auth-warning', '-a', self.password]
        deadline = time.time() + 30
        while time.time() < deadline and self.proc.poll() is None:
            r = subprocess.run(cli + ['info', 'server'], capture_output=True,
                               text=True)
            if 'process_id:%d\r' % self.proc.pid in r.stdout or \
                    'process_id:%d\n' % self.proc.pid in r.stdout:
                return True
            time.sleep(0.05)
        self.stop()
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
