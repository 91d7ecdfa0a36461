/* Socket, pid file, detaching and privileges. */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libmilter/mfapi.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "milter-config.h"
#include "daemon.h"

static int fail(char **error_r, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static int fail(char **error_r, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	if (vasprintf(error_r, fmt, args) < 0)
		*error_r = NULL;
	va_end(args);
	return -1;
}

/* The filesystem path of a unix socket spec, or NULL for inet. */
static const char *socket_path(const char *spec)
{
	if (spec[0] == '/')
		return spec;
	if (strncasecmp(spec, "unix:", 5) == 0)
		return spec + 5;
	if (strncasecmp(spec, "local:", 6) == 0)
		return spec + 6;
	return NULL;
}

static int make_parent_dir(const char *path, char **error_r)
{
	char *dir = strdup(path), *slash;
	int ret = 0;

	if (dir == NULL)
		return fail(error_r, "out of memory");
	slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		/* Only the last level, like /run/backfill after a reboot
		   cleared /run; 0755 so that smtpd can reach the socket. */
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			ret = fail(error_r, "mkdir %s: %s", dir,
			           strerror(errno));
	}
	free(dir);
	return ret;
}

/* What is at the socket path before libmilter takes it: libmilter
   removes any socket there, also one a running milter listens on (a
   second milter started by hand beside the service), and that milter
   then runs on unreachable: Postfix finds nobody, and with
   default_action=accept passes mail unchecked and forged X-Backfill-*
   headers with it, until someone restarts it.  And a file that is not a
   socket (a typo in Socket) gave an error about another milter.  0: the
   path is free or holds a dead socket, -1: *error_r says what is there. */
static int check_socket_path(const char *path, char **error_r)
{
	struct sockaddr_un addr;
	struct stat st;
	int fd, ret;

	if (lstat(path, &st) < 0)
		return 0;
	if (!S_ISSOCK(st.st_mode))
		return fail(error_r,
		            "Socket %s: there is a file there that is not a "
		            "socket (the milter does not remove it)",
		            path);
	if (strlen(path) >= sizeof(addr.sun_path))
		return 0; /* libmilter refuses it with its own error */
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strcpy(addr.sun_path, path);
	/* non-blocking: a listener with a full backlog answers EAGAIN
	   instead of holding up the start */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return 0;
	ret = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
	if (ret < 0 && errno == EAGAIN)
		ret = 0;
	close(fd);
	if (ret == 0)
		return fail(error_r,
		            "Socket %s: another milter is listening there "
		            "(stop it first: taking its socket would leave it "
		            "running where Postfix cannot reach it)",
		            path);
	return 0;
}

int milter_daemon_open_socket(const struct milter_config *config,
                              char **error_r)
{
	const char *path = socket_path(config->socket);
	struct group *gr = NULL;
	struct stat st;
	mode_t old_umask;
	int ret;

	if (config->socket_group != NULL) {
		gr = getgrnam(config->socket_group);
		if (gr == NULL)
			return fail(error_r,
			            "SocketGroup: no group named '%s' (the "
			            "group Postfix's smtpd runs as, usually "
			            "postfix)",
			            config->socket_group);
	}
	if (path != NULL && (make_parent_dir(path, error_r) < 0 ||
	                     check_socket_path(path, error_r) < 0))
		return -1;
	if (smfi_setconn(config->socket) != MI_SUCCESS)
		return fail(error_r, "Socket %s: not usable by libmilter",
		            config->socket);
	/* The socket is born with its final mode: there is no moment in
	   which anybody else could connect. */
	old_umask = umask(0777 & ~config->socket_mode);
	ret = smfi_opensocket(true);
	umask(old_umask);
	if (ret != MI_SUCCESS)
		return fail(error_r,
		            "cannot listen on %s (the directory not "
		            "writable, the port taken?)",
		            config->socket);
	if (path == NULL)
		return 0;
	/* Nothing here follows a symlink: whoever could swap the socket
	   for one between its bind() and here would otherwise have root
	   give their choice of file to SocketGroup. */
	if (lstat(path, &st) < 0)
		return fail(error_r, "stat %s: %s", path, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return fail(error_r,
		            "Socket %s: replaced by something else right "
		            "after it was made (who else writes to its "
		            "directory?)",
		            path);
	if (gr != NULL && lchown(path, (uid_t)-1, gr->gr_gid) < 0)
		return fail(error_r, "chown %s to group %s: %s", path,
		            config->socket_group, strerror(errno));
	/* born with it (the umask above); only an odd umask leaves work */
	if ((st.st_mode & 07777) != config->socket_mode &&
	    fchmodat(AT_FDCWD, path, config->socket_mode, AT_SYMLINK_NOFOLLOW) <
	            0)
		return fail(error_r, "chmod %s: %s", path, strerror(errno));
	return 0;
}

int milter_daemon_detach(char **error_r)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		return fail(error_r, "fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return fail(error_r, "setsid: %s", strerror(errno));
	if (chdir("/") < 0)
		return fail(error_r, "chdir /: %s", strerror(errno));
	fd = open("/dev/null", O_RDWR);
	if (fd < 0)
		return fail(error_r, "/dev/null: %s", strerror(errno));
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
	return 0;
}

int milter_daemon_write_pid(const char *path, char **error_r)
{
	struct stat st;
	FILE *f;
	int fd;

	/* Written as root before the privileges are dropped, often in a
	   directory others can write to (/run, /tmp, a chroot): a symlink
	   planted there must not make us truncate the file it points to. */
	fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0 && errno == ELOOP)
		return fail(error_r,
		            "PidFile %s is a symbolic link: refused (remove "
		            "it, or point PidFile at the real file)",
		            path);
	if (fd < 0)
		return fail(error_r, "PidFile %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    ftruncate(fd, 0) < 0) {
		close(fd);
		return fail(error_r, "PidFile %s: not a regular file", path);
	}
	if ((f = fdopen(fd, "w")) == NULL) {
		close(fd);
		return fail(error_r, "PidFile %s: %s", path, strerror(errno));
	}
	fprintf(f, "%ld\n", (long)getpid());
	if (fclose(f) != 0)
		return fail(error_r, "PidFile %s: %s", path, strerror(errno));
	return 0;
}

int milter_daemon_drop_privileges(const char *user_id, char **error_r)
{
	char *user = strdup(user_id), *group;
	struct passwd *pw;
	gid_t gid;
	int ret = -1;

	if (user == NULL)
		return fail(error_r, "out of memory");
	group = strchr(user, ':');
	if (group != NULL)
		*group++ = '\0';
	pw = getpwnam(user);
	if (pw == NULL) {
		fail(error_r, "UserID: no user named '%s'", user);
		goto out;
	}
	gid = pw->pw_gid;
	if (group != NULL && *group != '\0') {
		struct group *gr = getgrnam(group);
		if (gr == NULL) {
			fail(error_r, "UserID: no group named '%s'", group);
			goto out;
		}
		gid = gr->gr_gid;
	}
	if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid &&
	    getgid() == gid) {
		ret = 0;
		goto out;
	}
	if (initgroups(user, gid) < 0 || setgid(gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		fail(error_r, "UserID %s: cannot switch to it: %s", user_id,
		     strerror(errno));
		goto out;
	}
	/* A process that could regain root has not dropped anything. */
	if (pw->pw_uid != 0 && setuid(0) == 0) {
		fail(error_r, "UserID %s: could regain root after switching",
		     user_id);
		goto out;
	}
	ret = 0;
out:
	free(user);
	return ret;
}
