/* The state store's test fixtures, shared by tests/unit/test-state.c and
   bench/bench-state.c (see state-fixture.h). */

#include "state-fixture.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef BF_HAVE_REDIS
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

int bf_fixture_mkdtemp(const char *base, const char *name, char *dir_r,
                       size_t size)
{
	int len = snprintf(dir_r, size, "%s/%s.XXXXXX", base, name);

	if (len < 0 || (size_t)len >= size) {
		fprintf(stderr, "fixture: directory name too long under %s\n",
		        base);
		return -1;
	}
	if (mkdtemp(dir_r) == NULL) {
		perror("fixture: mkdtemp");
		return -1;
	}
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void bf_fixture_rmtree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

unsigned int bf_fixture_wait_children(const pid_t *pids, unsigned int count)
{
	unsigned int i, failed = 0;
	int status;

	for (i = 0; i < count; i++) {
		if (waitpid(pids[i], &status, 0) != pids[i] ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	return failed;
}

double bf_fixture_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

#ifdef BF_HAVE_REDIS

const char *bf_fixture_redis_server(void)
{
	static char found[512];
	const char *env = getenv("BF_REDIS_SERVER");
	const char *path = getenv("PATH");
	char dirs[2048], *dir, *save = NULL;

	if (env != NULL && *env != '\0')
		return access(env, X_OK) == 0 ? env : NULL;
	snprintf(dirs, sizeof(dirs), "%s:/usr/bin:/usr/sbin:/usr/local/bin",
	         path != NULL ? path : "");
	for (dir = strtok_r(dirs, ":", &save); dir != NULL;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(found, sizeof(found), "%s/redis-server", dir);
		if (access(found, X_OK) == 0)
			return found;
	}
	return NULL;
}

int bf_fixture_free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd < 0)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

redisContext *bf_fixture_redis_connect(const struct bf_fixture_redis *redis,
                                       const char *password)
{
	redisContext *c = redis->port != 0 && !redis->tls
	                          ? redisConnect("127.0.0.1", redis->port)
	                          : redisConnectUnix(redis->sock);
	redisReply *reply;

	if (c == NULL || c->err != 0) {
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	if (password != NULL) {
		reply = redisCommand(c, "AUTH %s", password);
		freeReplyObject(reply);
	}
	return c;
}

void bf_fixture_redis_log_dump(const struct bf_fixture_redis *redis)
{
	char path[160], buf[4096];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/redis.log", redis->dir);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		fprintf(stderr, "redis-server log:\n%s\n", buf);
	}
}

/* A throwaway CA and the certificates of a TLS test in dir (EC keys:
   quick to make on a loaded machine). */
static int make_test_ca(const char *dir)
{
	static const char script[] =
	        "set -e; cd \"$1\"; exec 2>openssl.log\n"
	        "key='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
	        "-nodes'\n"
	        "for ca in ca other-ca; do\n"
	        "  openssl req -x509 $key -days 2 -subj /CN=backfill-test-$ca "
	        "-keyout $ca.key -out $ca.pem\n"
	        "done\n"
	        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' "
	        ">server.ext\n"
	        "printf 'extendedKeyUsage=clientAuth\\n' >client.ext\n"
	        "for c in server client; do\n"
	        "  openssl req -new $key -subj /CN=$c -keyout $c.key "
	        "-out $c.csr\n"
	        "  openssl x509 -req -in $c.csr -CA ca.pem -CAkey ca.key "
	        "-CAcreateserial -days 2 -extfile $c.ext -out $c.pem\n"
	        "done\n";
	pid_t pid = fork();
	int status, fd;

	if (pid < 0) {
		perror("fixture: fork");
		return -1;
	}
	if (pid == 0) {
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
		}
		execl("/bin/sh", "sh", "-c", script, "sh", dir, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr,
		        "fixture: openssl could not make the test CA "
		        "(see %s/openssl.log)\n",
		        dir);
		return -1;
	}
	return 0;
}

static int redis_start(struct bf_fixture_redis *redis, const char *dir,
                       int port, const char *password, const char *appendfsync,
                       bool tls)
{
	const char *server = bf_fixture_redis_server();
	char port_str[16], log[160], files[3][160];
	redisContext *c;
	redisReply *reply;
	int i, status, len;
	bool up = false;

	if (server == NULL) {
		fprintf(stderr, "fixture: redis-server not found (install "
		                "redis-server or set BF_REDIS_SERVER)\n");
		return -1;
	}
	len = snprintf(redis->sock, sizeof(redis->sock), "%s/redis.sock", dir);
	if (len < 0 || (size_t)len >= sizeof(redis->sock) ||
	    strlen(dir) >= sizeof(redis->dir)) {
		fprintf(stderr, "fixture: %s: too long for a unix socket\n",
		        dir);
		return -1;
	}
	memcpy(redis->dir, dir, strlen(dir) + 1);
	snprintf(port_str, sizeof(port_str), "%d", port);
	snprintf(log, sizeof(log), "%s/redis.log", dir);
	redis->port = port;
	redis->tls = tls;
	if (tls && make_test_ca(dir) < 0)
		return -1;
	snprintf(files[0], sizeof(files[0]), "%s/server.pem", dir);
	snprintf(files[1], sizeof(files[1]), "%s/server.key", dir);
	snprintf(files[2], sizeof(files[2]), "%s/ca.pem", dir);
	redis->pid = fork();
	if (redis->pid < 0) {
		redis->pid = 0;
		perror("fixture: fork");
		return -1;
	}
	if (redis->pid == 0) {
		const char *argv[40];
		int n = 0, fd = open("/dev/null", O_RDWR);

		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		argv[n++] = "redis-server";
		argv[n++] = "--port";
		argv[n++] = tls ? "0" : port_str;
		if (tls) {
			argv[n++] = "--tls-port";
			argv[n++] = port_str;
			argv[n++] = "--tls-cert-file";
			argv[n++] = files[0];
			argv[n++] = "--tls-key-file";
			argv[n++] = files[1];
			argv[n++] = "--tls-ca-cert-file";
			argv[n++] = files[2];
		}
		argv[n++] = "--bind";
		argv[n++] = "127.0.0.1";
		argv[n++] = "--unixsocket";
		argv[n++] = redis->sock;
		argv[n++] = "--unixsocketperm";
		argv[n++] = "700";
		argv[n++] = "--dir";
		argv[n++] = dir;
		argv[n++] = "--logfile";
		argv[n++] = log;
		argv[n++] = "--save";
		argv[n++] = "";
		argv[n++] = "--appendonly";
		argv[n++] = "yes";
		argv[n++] = "--appendfsync";
		argv[n++] = appendfsync;
		argv[n++] = "--daemonize";
		argv[n++] = "no";
		if (password != NULL) {
			argv[n++] = "--requirepass";
			argv[n++] = password;
		}
		argv[n] = NULL;
		execv(server, (char *const *)argv);
		_exit(127);
	}
	for (i = 0; i < 500 && !up; i++) {
		if (waitpid(redis->pid, &status, WNOHANG) == redis->pid) {
			redis->pid = 0;
			bf_fixture_redis_log_dump(redis);
			return -1;
		}
		c = bf_fixture_redis_connect(redis, password);
		if (c != NULL) {
			reply = redisCommand(c, "PING");
			up = reply != NULL && reply->type == REDIS_REPLY_STATUS;
			freeReplyObject(reply);
			redisFree(c);
		}
		if (!up)
			usleep(10000);
	}
	if (!up) {
		bf_fixture_redis_log_dump(redis);
		fprintf(stderr, "fixture: redis-server did not answer within "
		                "5 s\n");
		bf_fixture_redis_stop(redis);
		return -1;
	}
	return 0;
}

int bf_fixture_redis_start(struct bf_fixture_redis *redis, const char *dir,
                           int port, const char *password,
                           const char *appendfsync)
{
	return redis_start(redis, dir, port, password, appendfsync, false);
}

int bf_fixture_redis_start_tls(struct bf_fixture_redis *redis, const char *dir,
                               int port)
{
	return redis_start(redis, dir, port, NULL, "always", true);
}

void bf_fixture_redis_stop(struct bf_fixture_redis *redis)
{
	if (redis->pid <= 0)
		return;
	kill(redis->pid, SIGCONT);
	kill(redis->pid, SIGTERM);
	waitpid(redis->pid, NULL, 0);
	redis->pid = 0;
}

#endif
