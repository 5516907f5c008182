//! `rlimits`, `nice`, `umask`, `no_new_privs`, `capabilities`, `chroot`,
//! `private_tmp`, `private_network`: what a handler may do.

use super::field::Field;
use super::Svc;
use crate::config::error::{did_you_mean, quote};
use crate::config::raw::Value;
use crate::config::ConfigError;
use crate::confine::{self, Confine, Resource, Rlimit, Unit};

/// The confinement of a service's handlers; none for an internal service
/// (its keys are refused there with the other program-only keys).
pub fn resolve(svc: &Svc<'_>, internal: bool) -> Confine {
    if internal {
        return Confine::default();
    }
    let mut c = Confine::default();
    limits(svc, &mut c);
    privileges(svc, &mut c);
    c
}

/// `rlimits`, `nice`, `umask`.
fn limits(svc: &Svc<'_>, c: &mut Confine) {
    if let Some(f) = svc.get("rlimits") {
        c.rlimits = svc.many(rlimits(f)).unwrap_or_default();
    }
    if let Some(f) = svc.get("nice") {
        c.nice = svc.ok(f.int(-20, 19)).map(|n| n as i32);
    }
    if let Some(f) = svc.get("umask") {
        c.umask = svc.ok(f.mode());
    }
}

/// `no_new_privs` (on unless set to false: the classic front-ends write
/// `false`) and `capabilities`.
fn privileges(svc: &Svc<'_>, c: &mut Confine) {
    c.no_new_privs = match svc.get("no_new_privs") {
        Some(f) => svc.ok(f.bool()).unwrap_or(true),
        None => true,
    };
    if let Some(f) = svc.get("capabilities") {
        c.capabilities = svc.many(capabilities(f));
    }
}

/// `rlimits = { as = "512M", cpu = 20, ... }`: each resource once, in the
/// order written; every bad entry reported at its value.
fn rlimits(f: Field<'_>) -> Result<Vec<Rlimit>, Vec<ConfigError>> {
    if !matches!(f.value, Value::Table(_)) {
        return Err(vec![f.err(format!(
            "rlimits: expected a table such as {{ as = \"512M\", nofile = 64 }}, found {}",
            f.value.type_str()
        ))]);
    }
    let entries = f.entries().map_err(|e| vec![e])?;
    let mut out = Vec::with_capacity(entries.len());
    let mut errs = Vec::new();
    for (name, value, at) in entries {
        match rlimit(name, value) {
            Ok(r) => out.push(r),
            Err(m) => errs.push(ConfigError::new(at.clone(), m)),
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// One entry of `rlimits`.
fn rlimit(name: &str, value: &Value) -> Result<Rlimit, String> {
    let Some(resource) = Resource::from_name(name) else {
        return Err(unknown_resource(name));
    };
    let limit = match value {
        Value::Str(s) if s == "infinity" => {
            if resource == Resource::Nofile {
                return Err(
                    "rlimits.nofile: \"infinity\" is not possible on Linux (at most fs.nr_open)"
                        .to_owned(),
                );
            }
            None
        }
        Value::Int(n) => Some(u64::try_from(*n).map_err(|_| expected(resource))?),
        Value::Str(s) if resource.unit() == Unit::Bytes => {
            Some(size(s).ok_or_else(|| expected(resource))?)
        }
        _ => return Err(expected(resource)),
    };
    Ok(Rlimit { resource, limit })
}

fn expected(r: Resource) -> String {
    let what = match r.unit() {
        Unit::Bytes => {
            "a size in bytes (an integer, or a string such as \"512M\" with a K, M or G suffix)"
        }
        Unit::Seconds => "seconds of CPU time (an integer)",
        Unit::Count => "a count (an integer)",
    };
    format!("rlimits.{}: expected {what} or \"infinity\"", r.name())
}

fn unknown_resource(name: &str) -> String {
    let names: Vec<&str> = Resource::ALL.iter().map(|r| r.name()).collect();
    let mut m = format!("rlimits: unknown resource \"{}\"", quote(name));
    if name == "rss" {
        m.push_str(" (Linux does not enforce RLIMIT_RSS; limit as or data instead)");
    } else if let Some(s) = did_you_mean(name, &names) {
        m.push_str(&format!(" (did you mean \"{s}\"?)"));
    } else {
        m.push_str(&format!(" (one of {})", names.join(", ")));
    }
    m
}

/// A size: digits with an optional K, M or G (powers of 1024; either
/// case), no overflow.
pub fn size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1 << shift).filter(|v| *v < u64::MAX)
}

/// `capabilities = ["net_bind_service", ...]`: the numbers, sorted, once
/// each; an unknown name (or one this kernel does not know) is an error
/// at its item.
fn capabilities(f: Field<'_>) -> Result<Vec<u8>, Vec<ConfigError>> {
    let items = f.list().map_err(|e| vec![e])?;
    let last = confine::caps().last;
    let mut out = Vec::with_capacity(items.len());
    let mut errs = Vec::new();
    for (name, at) in items {
        match capability(name, last) {
            Ok(n) => out.push(n),
            Err(m) => errs.push(ConfigError::new(at, m)),
        }
    }
    out.sort_unstable();
    out.dedup();
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

fn capability(name: &str, last: u8) -> Result<u8, String> {
    let Some(n) = confine::capability(name) else {
        let lower = name.to_ascii_lowercase();
        let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
        let mut m = format!("capabilities: unknown capability \"{}\"", quote(name));
        if bare == "all" {
            m.push_str(" (name each one kept; without capabilities a root handler keeps all)");
            return Err(m);
        }
        let mut starting = confine::CAPABILITIES
            .iter()
            .filter(|c| !bare.is_empty() && c.starts_with(bare));
        let prefix_of = match (starting.next(), starting.next()) {
            (Some(one), None) => Some(*one),
            _ => None,
        };
        if let Some(s) = did_you_mean(bare, &confine::CAPABILITIES).or(prefix_of) {
            m.push_str(&format!(" (did you mean \"{s}\"?)"));
        }
        return Err(m);
    };
    if n > last {
        return Err(format!(
            "capabilities: this kernel does not know \"{}\" (capability {n}; it knows 0 to {last})",
            quote(name)
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_k_m_g_in_powers_of_1024() {
        assert_eq!(size("0"), Some(0));
        assert_eq!(size("512"), Some(512));
        assert_eq!(size("10K"), Some(10 << 10));
        assert_eq!(size("512M"), Some(512 << 20));
        assert_eq!(size("2g"), Some(2 << 30));
        for bad in [
            "",
            "M",
            "1.5M",
            "-1",
            "1T",
            "1 M",
            "0x10",
            "99999999999999999999",
        ] {
            assert_eq!(size(bad), None, "{bad}");
        }
        // 2^34 G overflows u64.
        assert_eq!(size("17179869184G"), None);
    }

    #[test]
    fn rlimit_values() {
        let r = |name: &str, v: Value| rlimit(name, &v);
        assert_eq!(
            r("as", Value::Str("1M".into())),
            Ok(Rlimit {
                resource: Resource::As,
                limit: Some(1 << 20)
            })
        );
        assert_eq!(r("cpu", Value::Int(20)).map(|r| r.limit), Ok(Some(20)));
        assert_eq!(
            r("core", Value::Str("infinity".into())).map(|r| r.limit),
            Ok(None)
        );
        let err = |name: &str, v: Value| r(name, v).unwrap_err();
        assert!(err("cpu", Value::Str("20".into())).contains("seconds of CPU time"));
        assert!(err("nproc", Value::Int(-1)).contains("a count"));
        assert!(err("as", Value::Str("lots".into())).contains("\"512M\""));
        assert!(err("as", Value::Bool(true)).contains("rlimits.as: expected"));
        assert!(err("nofile", Value::Str("infinity".into())).contains("nr_open"));
        assert!(err("nfile", Value::Int(1)).contains("did you mean \"nofile\""));
        assert!(err("rss", Value::Int(1)).contains("RLIMIT_RSS"));
        assert!(err("zzzzzzzzz", Value::Int(1)).contains("one of as, cpu"));
    }

    #[test]
    fn capability_names() {
        assert_eq!(capability("net_bind_service", 40), Ok(10));
        assert_eq!(capability("CAP_NET_BIND_SERVICE", 40), Ok(10));
        assert_eq!(capability("Cap_Chown", 40), Ok(0));
        assert_eq!(capability("checkpoint_restore", 40), Ok(40));
        assert!(capability("checkpoint_restore", 39)
            .unwrap_err()
            .contains("does not know"));
        assert!(capability("net_bind", 40)
            .unwrap_err()
            .contains("did you mean \"net_bind_service\""));
        assert!(capability("CAP_SYS_ADMN", 40)
            .unwrap_err()
            .contains("did you mean \"sys_admin\""));
    }
}
