#!/usr/bin/python3
# A datagram `wait` handler in the classic style: take one datagram from the
# socket on stdin, answer it with sendto, exit.
import socket

s = socket.socket(fileno=0)
data, peer = s.recvfrom(65536)
s.sendto(b"got " + data, peer)
