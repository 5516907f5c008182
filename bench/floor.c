/*
 * The floor: the least a super-server can do per connection. Accept on one
 * TCP listener and start HANDLER with the connection on fd 0 and 1; no
 * config, no access checks, no limits, no logging, no user switch. Children
 * are reaped by the kernel (SIGCHLD ignored). Whatever a real supervisor adds
 * shows up as the distance from this.
 *
 * usage: floor fork|vfork|spawn ADDR PORT HANDLER
 *   fork   fork(), then dup2 + execve in the child
 *   vfork  vfork(): the parent is suspended until the child has exec'd
 *   spawn  posix_spawn() with dup2 file actions (glibc uses clone(CLONE_VM))
 *
 * Every descriptor is close-on-exec, so the handler gets only 0, 1 and 2
 * (dup2 clears the flag on its target).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern char **environ;

enum mode { FORK, VFORK, SPAWN };

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
	}
	if (pid < 0)
		perror("spawn");
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin;
	enum mode mode;
	int one = 1;
	int lfd;

	if (argc != 5) {
		fprintf(stderr, "usage: floor fork|vfork|spawn ADDR PORT HANDLER\n");
		return 2;
	}
	if (strcmp(argv[1], "fork") == 0)
		mode = FORK;
	else if (strcmp(argv[1], "vfork") == 0)
		mode = VFORK;
	else if (strcmp(argv[1], "spawn") == 0)
		mode = SPAWN;
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
	signal(SIGCHLD, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0)
		die("bind");
	if (listen(lfd, 1024) < 0)
		die("listen");

	char *hargv[] = { argv[4], NULL };
	for (;;) {
		int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (conn < 0)
			continue;
		start(mode, conn, hargv);
		close(conn);
	}
}
