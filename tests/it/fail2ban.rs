//! packaging/fail2ban: the filter, run by the real `fail2ban-regex` on the
//! log of a real run, matches the refusals that say something about the
//! peer (access rules, per_source, per_source_rate), with the right
//! addresses, IPv4 and IPv6, and no other line: not a `cps` refusal, not
//! `start`, `exit` or `listen`.

use std::path::Path;
use std::process::Command;

use crate::harness::{eventually, talk_from, user_line, Dir, Server};

/// The filter installed as fail2ban has it: beside fail2ban's own
/// `common.conf`, which it includes.
fn filter(dir: &Dir) -> std::path::PathBuf {
    let filter_d = dir.path().join("fail2ban/filter.d");
    std::fs::create_dir_all(&filter_d).unwrap();
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/fail2ban/filter.d/oxinetd.conf");
    std::fs::copy(shipped, filter_d.join("oxinetd.conf")).unwrap();
    std::os::unix::fs::symlink(
        "/etc/fail2ban/filter.d/common.conf",
        filter_d.join("common.conf"),
    )
    .unwrap();
    filter_d.join("oxinetd.conf")
}

#[test]
fn fail2ban_regex_matches_the_refusals_of_a_real_run() {
    let regex = crate::need!("fail2ban-regex", "fail2ban");
    let user = user_line();
    let config = format!(
        "[[service]]\nname = \"deny4\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/cat\"\nno_access = \"127.0.0.3\"\n{user}\n\n\
         [[service]]\nname = \"deny6\"\nlisten = \"[::1]:0\"\nserver = \"/bin/cat\"\nonly_from = \"127.0.0.0/8\"\n{user}\n\n\
         [[service]]\nname = \"psr\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/cat\"\nper_source_rate = [1, 60]\n{user}\n\n\
         [[service]]\nname = \"busy\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/cat\"\ncps = [1, 1]\n{user}\n"
    );
    let s = Server::start(&config);
    // Refused by an access rule: three from 127.0.0.3, two from ::1.
    for _ in 0..3 {
        assert_eq!(talk_from("127.0.0.3", s.addr("deny4"), "x"), "");
    }
    for _ in 0..2 {
        assert_eq!(talk_from("::1", s.addr("deny6"), "x"), "");
    }
    // per_source_rate: 127.0.0.4 gets one in, then two refused.
    assert_eq!(talk_from("127.0.0.4", s.addr("psr"), "in"), "in");
    for _ in 0..2 {
        assert_eq!(talk_from("127.0.0.4", s.addr("psr"), "x"), "");
    }
    // cps: the service's own limit; 127.0.0.5 is refused but not to blame.
    let busy = s.addr("busy");
    let _ = talk_from("127.0.0.5", busy, "a");
    let _ = talk_from("127.0.0.5", busy, "b");
    assert!(
        eventually(|| s.count(&["refuse service="]) == 8),
        "{}",
        s.log()
    );
    assert!(
        eventually(|| s.count(&["exit service="]) >= 2),
        "{}",
        s.log()
    );
    assert_eq!(s.count(&["reason=cps"]), 1, "{}", s.log());

    let dir = s.dir.clone();
    let log = dir.path().join("oxinetd.log");
    // One snapshot for the file and the count below: a line may still come
    // (the cps pause's `resume`) between two reads of the log.
    let snapshot = s.lines();
    std::fs::write(&log, snapshot.join("\n") + "\n").unwrap();
    let filter = filter(&dir);
    let run = |args: &[&str]| {
        let out = Command::new(&regex)
            .args(args)
            .arg(&log)
            .arg(&filter)
            .output()
            .expect("run fail2ban-regex");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "fail2ban-regex failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let summary = run(&[]);
    let lines = snapshot.len();
    assert!(
        summary.contains(&format!(
            "Lines: {lines} lines, 0 ignored, 7 matched, {} missed",
            lines - 7
        )),
        "{summary}\nlog:\n{}",
        s.log()
    );
    // The addresses, one per matched line.
    let mut ips: Vec<String> = run(&["--out", "ip"]).lines().map(str::to_string).collect();
    ips.sort();
    assert_eq!(
        ips,
        [
            "127.0.0.3",
            "127.0.0.3",
            "127.0.0.3",
            "127.0.0.4",
            "127.0.0.4",
            "::1",
            "::1"
        ],
        "{summary}"
    );
    // What was matched is refusals only.
    let matched = run(&["--out", "msg"]);
    assert!(
        matched.lines().all(|l| l.contains(" refuse service=")),
        "{matched}"
    );
    assert!(!matched.contains("reason=cps"), "{matched}");
}
