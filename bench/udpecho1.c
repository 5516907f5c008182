/*
 * The UDP handler for inetd "wait" mode: the bound socket is fd 0; take one
 * datagram, send it back to its sender, exit. The supervisor watches the
 * socket again once this process is reaped.
 */
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	char buf[2048];
	struct sockaddr_storage from;
	socklen_t len = sizeof from;
	ssize_t n;

	n = recvfrom(0, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
	if (n < 0)
		return 1;
	return sendto(0, buf, (size_t)n, 0, (struct sockaddr *)&from, len) == n ? 0 : 1;
}
