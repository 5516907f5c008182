# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_oxinetd_global_optspecs
    string join \n f/config= format= log= syslog-socket= pidfile= control= h/help V/version
end

function __fish_oxinetd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_oxinetd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_oxinetd_using_subcommand
    set -l cmd (__fish_oxinetd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c oxinetd -n "__fish_oxinetd_needs_command" -s f -l config -d 'Config file' -r -F
complete -c oxinetd -n "__fish_oxinetd_needs_command" -l format -d 'Syntax of the config: toml, inetd (inetd.conf) or xinetd. Without it, *.toml is TOML, a file named inetd.conf is inetd, xinetd.conf or a file under xinetd.d/ is xinetd; other names must be told' -r -f -a "toml\t''
inetd\t''
xinetd\t''"
complete -c oxinetd -n "__fish_oxinetd_needs_command" -l log -d 'Where log lines go. Falls back to stderr when syslog is unreachable' -r -f -a "syslog\t''
stderr\t''"
complete -c oxinetd -n "__fish_oxinetd_needs_command" -l syslog-socket -d 'The syslog daemon\'s socket (overrides [global] syslog_socket)' -r -F
complete -c oxinetd -n "__fish_oxinetd_needs_command" -l pidfile -d 'Write the supervisor\'s pid to FILE (removed on exit)' -r -F
complete -c oxinetd -n "__fish_oxinetd_needs_command" -l control -d 'The control socket: where status, reload and stop find a running oxinetd, and where it listens (over [global] control_socket)' -r -F
complete -c oxinetd -n "__fish_oxinetd_needs_command" -s h -l help -d 'Print help'
complete -c oxinetd -n "__fish_oxinetd_needs_command" -s V -l version -d 'Print version'
complete -c oxinetd -n "__fish_oxinetd_needs_command" -f -a "run" -d 'Serve (the default)'
complete -c oxinetd -n "__fish_oxinetd_needs_command" -f -a "check" -d 'Validate the config without binding: print every error as FILE:LINE:COL: message; exit 0 when valid, 1 otherwise'
complete -c oxinetd -n "__fish_oxinetd_needs_command" -f -a "import" -d 'Print inetd.conf or xinetd configs as equivalent TOML: each service with a comment naming its source line, every setting without an equivalent as a comment. Exit 1 if something could not be converted'
complete -c oxinetd -n "__fish_oxinetd_needs_command" -f -a "status" -d 'Show what a running oxinetd is doing: each service\'s listeners (armed, busy, paused and why, failed to bind), handlers and counters, and global figures. Exit 1 if it cannot be asked or SERVICE is not one of its services'
complete -c oxinetd -n "__fish_oxinetd_needs_command" -f -a "reload" -d 'Reload a running oxinetd and wait for the outcome: print "reloaded: kept N, bound N, closed N", or every config error as FILE:LINE:COL: message and exit 1 (the running config stays)'
complete -c oxinetd -n "__fish_oxinetd_needs_command" -f -a "stop" -d 'Stop a running oxinetd: it closes its listeners, waits for its handlers up to the grace, and exits; this returns once it has'
complete -c oxinetd -n "__fish_oxinetd_needs_command" -f -a "completions" -d 'Print the completion script for SHELL; packages install these'
complete -c oxinetd -n "__fish_oxinetd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand run" -s f -l config -d 'Config file [default: /etc/oxinetd/oxinetd.toml]' -r -F
complete -c oxinetd -n "__fish_oxinetd_using_subcommand run" -l format -d 'Syntax of the config: toml, inetd (inetd.conf) or xinetd. Without it, *.toml is TOML, a file named inetd.conf is inetd, xinetd.conf or a file under xinetd.d/ is xinetd; other names must be told' -r -f -a "toml\t''
inetd\t''
xinetd\t''"
complete -c oxinetd -n "__fish_oxinetd_using_subcommand run" -l control -d 'The control socket: where status, reload and stop find a running oxinetd, and where it listens (over [global] control_socket)' -r -F
complete -c oxinetd -n "__fish_oxinetd_using_subcommand run" -s h -l help -d 'Print help'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand check" -s f -l config -d 'Config file [default: /etc/oxinetd/oxinetd.toml]' -r -F
complete -c oxinetd -n "__fish_oxinetd_using_subcommand check" -l format -d 'Syntax of the config: toml, inetd (inetd.conf) or xinetd. Without it, *.toml is TOML, a file named inetd.conf is inetd, xinetd.conf or a file under xinetd.d/ is xinetd; other names must be told' -r -f -a "toml\t''
inetd\t''
xinetd\t''"
complete -c oxinetd -n "__fish_oxinetd_using_subcommand check" -l control -d 'The control socket: where status, reload and stop find a running oxinetd, and where it listens (over [global] control_socket)' -r -F
complete -c oxinetd -n "__fish_oxinetd_using_subcommand check" -l list -d 'Also print each service as it would run: a [[service]] block of TOML with every setting in force, defaults included'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand check" -s h -l help -d 'Print help'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand import" -l format -d 'Syntax of the sources: inetd (inetd.conf) or xinetd. Without it, a file named inetd.conf is inetd, xinetd.conf or a file under xinetd.d/ is xinetd; other names must be told' -r -f -a "inetd\t''
xinetd\t''"
complete -c oxinetd -n "__fish_oxinetd_using_subcommand import" -l control -d 'The control socket: where status, reload and stop find a running oxinetd, and where it listens (over [global] control_socket)' -r -F
complete -c oxinetd -n "__fish_oxinetd_using_subcommand import" -s h -l help -d 'Print help'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand status" -s f -l config -d 'Config file [default: /etc/oxinetd/oxinetd.toml]' -r -F
complete -c oxinetd -n "__fish_oxinetd_using_subcommand status" -l format -d 'Syntax of the config: toml, inetd (inetd.conf) or xinetd. Without it, *.toml is TOML, a file named inetd.conf is inetd, xinetd.conf or a file under xinetd.d/ is xinetd; other names must be told' -r -f -a "toml\t''
inetd\t''
xinetd\t''"
complete -c oxinetd -n "__fish_oxinetd_using_subcommand status" -l control -d 'The control socket: where status, reload and stop find a running oxinetd, and where it listens (over [global] control_socket)' -r -F
complete -c oxinetd -n "__fish_oxinetd_using_subcommand status" -l json -d 'JSON, as documented in oxinetd(8)'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand status" -s h -l help -d 'Print help'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand reload" -s f -l config -d 'Config file [default: /etc/oxinetd/oxinetd.toml]' -r -F
complete -c oxinetd -n "__fish_oxinetd_using_subcommand reload" -l format -d 'Syntax of the config: toml, inetd (inetd.conf) or xinetd. Without it, *.toml is TOML, a file named inetd.conf is inetd, xinetd.conf or a file under xinetd.d/ is xinetd; other names must be told' -r -f -a "toml\t''
inetd\t''
xinetd\t''"
complete -c oxinetd -n "__fish_oxinetd_using_subcommand reload" -l control -d 'The control socket: where status, reload and stop find a running oxinetd, and where it listens (over [global] control_socket)' -r -F
complete -c oxinetd -n "__fish_oxinetd_using_subcommand reload" -s h -l help -d 'Print help'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand stop" -l grace -d 'Seconds to wait for handlers before signalling them [default: shutdown_grace]' -r
complete -c oxinetd -n "__fish_oxinetd_using_subcommand stop" -s f -l config -d 'Config file [default: /etc/oxinetd/oxinetd.toml]' -r -F
complete -c oxinetd -n "__fish_oxinetd_using_subcommand stop" -l format -d 'Syntax of the config: toml, inetd (inetd.conf) or xinetd. Without it, *.toml is TOML, a file named inetd.conf is inetd, xinetd.conf or a file under xinetd.d/ is xinetd; other names must be told' -r -f -a "toml\t''
inetd\t''
xinetd\t''"
complete -c oxinetd -n "__fish_oxinetd_using_subcommand stop" -l control -d 'The control socket: where status, reload and stop find a running oxinetd, and where it listens (over [global] control_socket)' -r -F
complete -c oxinetd -n "__fish_oxinetd_using_subcommand stop" -s h -l help -d 'Print help'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand completions" -l format -d 'Syntax of the config: toml, inetd (inetd.conf) or xinetd. Without it, *.toml is TOML, a file named inetd.conf is inetd, xinetd.conf or a file under xinetd.d/ is xinetd; other names must be told' -r -f -a "toml\t''
inetd\t''
xinetd\t''"
complete -c oxinetd -n "__fish_oxinetd_using_subcommand completions" -l control -d 'The control socket: where status, reload and stop find a running oxinetd, and where it listens (over [global] control_socket)' -r -F
complete -c oxinetd -n "__fish_oxinetd_using_subcommand completions" -s h -l help -d 'Print help'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand help; and not __fish_seen_subcommand_from run check import status reload stop completions help" -f -a "run" -d 'Serve (the default)'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand help; and not __fish_seen_subcommand_from run check import status reload stop completions help" -f -a "check" -d 'Validate the config without binding: print every error as FILE:LINE:COL: message; exit 0 when valid, 1 otherwise'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand help; and not __fish_seen_subcommand_from run check import status reload stop completions help" -f -a "import" -d 'Print inetd.conf or xinetd configs as equivalent TOML: each service with a comment naming its source line, every setting without an equivalent as a comment. Exit 1 if something could not be converted'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand help; and not __fish_seen_subcommand_from run check import status reload stop completions help" -f -a "status" -d 'Show what a running oxinetd is doing: each service\'s listeners (armed, busy, paused and why, failed to bind), handlers and counters, and global figures. Exit 1 if it cannot be asked or SERVICE is not one of its services'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand help; and not __fish_seen_subcommand_from run check import status reload stop completions help" -f -a "reload" -d 'Reload a running oxinetd and wait for the outcome: print "reloaded: kept N, bound N, closed N", or every config error as FILE:LINE:COL: message and exit 1 (the running config stays)'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand help; and not __fish_seen_subcommand_from run check import status reload stop completions help" -f -a "stop" -d 'Stop a running oxinetd: it closes its listeners, waits for its handlers up to the grace, and exits; this returns once it has'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand help; and not __fish_seen_subcommand_from run check import status reload stop completions help" -f -a "completions" -d 'Print the completion script for SHELL; packages install these'
complete -c oxinetd -n "__fish_oxinetd_using_subcommand help; and not __fish_seen_subcommand_from run check import status reload stop completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
