#!/bin/sh
# UDP timestamp reply (a dgram nowait service): the request datagram is on
# stdin, and what is written to stdout goes back as the reply datagram.
request=$(cat)
printf '[%s]: %s\n' "$(date '+%a %b %e %H:%M:%S %Y')" "$request"
