//! Port names from the services database (`/etc/services`), read directly so
//! that config loading needs no NSS and no unsafe code.

use std::path::Path;

/// The port of service `name` (or one of its aliases) over `protocol`.
pub fn lookup(db: &Path, name: &str, protocol: &str) -> Option<u16> {
    let text = std::fs::read_to_string(db).ok()?;
    find(&text, name, protocol)
}

fn find(text: &str, name: &str, protocol: &str) -> Option<u16> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let first = words.next()?;
        let (port, proto) = words.next()?.split_once('/')?;
        let matches = proto == protocol && (first == name || words.any(|alias| alias == name));
        if matches {
            port.parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_by_protocol() {
        let db = "echo 7/tcp\necho 7/udp\n# x\nsmtp 25/tcp mail # comment\ntftp 69/udp\n";
        assert_eq!(find(db, "echo", "udp"), Some(7));
        assert_eq!(find(db, "mail", "tcp"), Some(25));
        assert_eq!(find(db, "tftp", "tcp"), None);
        assert_eq!(find(db, "x", "tcp"), None);
    }
}
