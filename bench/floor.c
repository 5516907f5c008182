/*
 * The floor: the least a super-server can do per connection. Accept on one
 * TCP listener and start HANDLER with the connection on fd 0 and 1; no
 * config, no access checks, no limits, no user switch. Except in duty mode,
 * nothing is logged and children are reaped by the kernel (SIGCHLD
 * ignored). Whatever a real supervisor adds shows up as the distance from
 * this.
 *
 * usage: floor fork|vfork|spawn|duty ADDR PORT HANDLER
 *   fork   fork(), then dup2 + execve in the child
 *   vfork  vfork(): the parent is suspended until the child has exec'd
 *   spawn  posix_spawn() with dup2 file actions (glibc uses clone(CLONE_VM))
 *   duty   vfork, plus the least of what every super-server owes its
 *          handlers and its admin, which the three above skip: the handler
 *          in a session of its own with an empty signal mask, its exit
 *          status collected (SIGCHLD read from a signalfd, then waitpid),
 *          and a log line for each start and each exit (buffered, one write
 *          per turn of the epoll loop)
 *
 * Every descriptor is close-on-exec, so the handler gets only 0, 1 and 2
 * (dup2 clears the flag on its target).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum mode { FORK, VFORK, SPAWN, DUTY };

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void start(enum mode mode, int conn, char *const argv[])
{
	pid_t pid;

	switch (mode) {
	case FORK:
		pid = fork();
		if (pid == 0) {
			dup2(conn, 0);
			dup2(conn, 1);
			execve(argv[0], argv, environ);
			_exit(127);
		}
		break;
	case VFORK:
		pid = vfork();
		if (pid == 0) {
			dup2(conn, 0);
			dup2(conn, 1);
			execve(argv[0], argv, environ);
			_exit(127);
		}
		break;
	case SPAWN: {
		posix_spawn_file_actions_t fa;
		int err;

		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_adddup2(&fa, conn, 0);
		posix_spawn_file_actions_adddup2(&fa, conn, 1);
		err = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
		posix_spawn_file_actions_destroy(&fa);
		if (err != 0)
			pid = -1;
		break;
	}
	case DUTY: /* duty_loop() starts its own */
		return;
	}
	if (pid < 0)
		perror("spawn");
}

/* Log lines of one turn of the loop, written at its end. */
static char logbuf[1 << 16];
static size_t loglen;

static void logline(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logline(const char *fmt, ...)
{
	va_list ap;
	int n;

	if (sizeof logbuf - loglen < 256) {
		if (write(2, logbuf, loglen) < 0)
			perror("write");
		loglen = 0;
	}
	va_start(ap, fmt);
	n = vsnprintf(logbuf + loglen, sizeof logbuf - loglen, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof logbuf - loglen)
		loglen += (size_t)n;
}

static void duty_start(int conn, const struct sockaddr_in *peer, char *const argv[])
{
	char ip[INET_ADDRSTRLEN];
	pid_t pid = vfork();

	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		setsid();
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(conn, 0);
		dup2(conn, 1);
		execve(argv[0], argv, environ);
		_exit(127);
	}
	if (pid < 0) {
		perror("vfork");
		return;
	}
	inet_ntop(AF_INET, &peer->sin_addr, ip, sizeof ip);
	logline("start pid=%d peer=%s:%u\n", pid, ip, ntohs(peer->sin_port));
}

static void duty_reap(int sfd)
{
	struct signalfd_siginfo si[16];
	pid_t pid;
	int status;

	while (read(sfd, si, sizeof si) > 0)
		;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (WIFEXITED(status))
			logline("exit pid=%d status=%d\n", pid, WEXITSTATUS(status));
		else
			logline("exit pid=%d signal=%d\n", pid, WTERMSIG(status));
	}
}

/* An epoll loop over the listener and a signalfd for SIGCHLD. */
static void duty_loop(int lfd, char *const argv[])
{
	struct epoll_event ev[2], add = { .events = EPOLLIN };
	sigset_t chld;
	int ep, sfd;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0)
		die("sigprocmask");
	sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || ep < 0)
		die("signalfd/epoll");
	add.data.fd = lfd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &add) < 0)
		die("epoll_ctl");
	add.data.fd = sfd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &add) < 0)
		die("epoll_ctl");
	for (;;) {
		int n = epoll_wait(ep, ev, 2, -1);

		for (int i = 0; i < n; i++) {
			if (ev[i].data.fd == sfd) {
				duty_reap(sfd);
				continue;
			}
			/* Accept what is queued, as a real supervisor would. */
			for (int k = 0; k < 64; k++) {
				struct sockaddr_in peer;
				socklen_t len = sizeof peer;
				int conn = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);

				if (conn < 0)
					break;
				duty_start(conn, &peer, argv);
				close(conn);
			}
		}
		if (loglen > 0) {
			if (write(2, logbuf, loglen) < 0)
				perror("write");
			loglen = 0;
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin;
	enum mode mode;
	int one = 1;
	int lfd;

	if (argc != 5) {
		fprintf(stderr, "usage: floor fork|vfork|spawn|duty ADDR PORT HANDLER\n");
		return 2;
	}
	if (strcmp(argv[1], "fork") == 0)
		mode = FORK;
	else if (strcmp(argv[1], "vfork") == 0)
		mode = VFORK;
	else if (strcmp(argv[1], "spawn") == 0)
		mode = SPAWN;
	else if (strcmp(argv[1], "duty") == 0)
		mode = DUTY;
	else {
		fprintf(stderr, "floor: unknown mode %s\n", argv[1]);
		return 2;
	}
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)atoi(argv[3]));
	if (inet_pton(AF_INET, argv[2], &sin.sin_addr) != 1) {
		fprintf(stderr, "floor: bad address %s\n", argv[2]);
		return 2;
	}
	if (mode != DUTY)
		signal(SIGCHLD, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (mode == DUTY ? SOCK_NONBLOCK : 0), 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0)
		die("bind");
	if (listen(lfd, 1024) < 0)
		die("listen");

	char *hargv[] = { argv[4], NULL };
	if (mode == DUTY)
		duty_loop(lfd, hargv);
	for (;;) {
		int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (conn < 0)
			continue;
		start(mode, conn, hargv);
		close(conn);
	}
}
