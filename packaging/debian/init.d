#!/bin/sh
### BEGIN INIT INFO
# Provides:          oxinetd
# Required-Start:    $local_fs $remote_fs $network $syslog
# Required-Stop:     $local_fs $remote_fs $network $syslog
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: oxinetd super-server
# Description:       oxinetd serves /etc/oxinetd/oxinetd.toml and, through
#                    it, the services packages register in /etc/inetd.conf.
### END INIT INFO

# /etc/init.d/oxinetd: for machines without systemd. Where systemd runs,
# oxinetd.service is used instead and this script is not run: invoke-rc.d
# and the package's scripts act on the unit.
#
# update-inetd(8), which packages such as fingerd run to register in
# /etc/inetd.conf, wakes the super-server through the first
# /etc/init.d/*inetd it finds: `invoke-rc.d oxinetd ACTION`, where ACTION
# is "start" when inetd.conf had no enabled service before the change,
# "restart" after any other --add or --enable, and "force-reload" after
# --disable or --remove (DebianNet.pm). See oxinetd(8), "inetd.conf and
# update-inetd".

PATH=/usr/sbin:/usr/bin:/sbin:/bin
DAEMON=/usr/sbin/oxinetd
CONFIG=/etc/oxinetd/oxinetd.toml
# Written by oxinetd itself once its listeners are bound, removed on exit.
PIDFILE=/run/oxinetd.pid
NAME=oxinetd

# Removed but not purged: nothing to run.
[ -x "$DAEMON" ] || exit 0

. /lib/lsb/init-functions

# The pid file and the process name together: a stale pid file naming
# another process is not oxinetd. (Not --exec: after an upgrade the
# running process's executable is the deleted old one.)
running() {
	start-stop-daemon --status --pidfile "$PIDFILE" --name "$NAME"
}

check_config() {
	"$DAEMON" check -f "$CONFIG" >/dev/null
}

do_reload() {
	start-stop-daemon --stop --signal HUP --quiet --pidfile "$PIDFILE" --name "$NAME"
}

# Returns once oxinetd is ready (sd_notify READY=1: every listener bound,
# the pid file written), or fails if it exits first.
do_start() {
	if running; then
		# update-inetd asks for "start" when it adds the first service to
		# inetd.conf; oxinetd runs (idle until then), so what that needs
		# is a reload. A reload changes nothing else.
		do_reload
		return
	fi
	check_config || return 1
	start-stop-daemon --start --quiet --background --notify-await \
		--pidfile "$PIDFILE" --name "$NAME" --exec "$DAEMON" -- \
		-f "$CONFIG" --pidfile "$PIDFILE"
}

do_stop() {
	# TERM: oxinetd stops listening and waits shutdown_grace for its
	# handlers; what is left after 30 seconds is killed.
	start-stop-daemon --stop --quiet --retry=TERM/30/KILL/5 \
		--pidfile "$PIDFILE" --name "$NAME"
	case $? in
	0 | 1) rm -f "$PIDFILE" ;;
	*) return 1 ;;
	esac
}

case "$1" in
start)
	log_daemon_msg "Starting super-server" "$NAME"
	do_start
	log_end_msg $?
	;;
stop)
	log_daemon_msg "Stopping super-server" "$NAME"
	do_stop
	log_end_msg $?
	;;
reload | force-reload)
	# Unchanged listeners keep their sockets. Not running: nothing to do
	# (update-inetd's --disable must not start a stopped oxinetd).
	log_daemon_msg "Reloading super-server" "$NAME"
	if running; then
		do_reload
		log_end_msg $?
	else
		log_progress_msg "not running"
		log_end_msg 0
	fi
	;;
restart)
	# A broken config leaves the running oxinetd alone.
	log_daemon_msg "Restarting super-server" "$NAME"
	if check_config; then
		do_stop && do_start
		log_end_msg $?
	else
		log_end_msg 1
	fi
	;;
try-restart)
	if running; then
		"$0" restart
	fi
	;;
status)
	status_of_proc -p "$PIDFILE" "$DAEMON" "$NAME"
	;;
*)
	echo "Usage: /etc/init.d/$NAME {start|stop|restart|try-restart|reload|force-reload|status}" >&2
	exit 3
	;;
esac
