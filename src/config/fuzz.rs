//! Fuzzing of the inetd and xinetd parsers: `exercise` is one input
//! through both, used by the cargo-fuzz target in `fuzz/` (coverage-guided,
//! libFuzzer) and by the mutation test below, which runs in every
//! `cargo test` with no extra tooling.
//!
//! The seed corpus is tests/fixtures/compat (every file), tests/fuzz-corpus
//! (inputs that once broke something, kept as regressions) and the
//! cargo-fuzz corpus in fuzz/corpus/parsers. Each round mutates a seed
//! (bytes flipped, inserted, deleted, lines duplicated or spliced, fields
//! swapped), runs the translation, writes it as `oxinetd import` does, and
//! resolves it as running the original does. The properties: nothing
//! panics, and the import, read back by the TOML front-end, holds exactly
//! the keys and values that run (unless the translation says one thing
//! twice, which TOML cannot hold and which refuses the whole config).
//!
//! A normal `cargo test` runs a few thousand rounds; for a long run:
//! `OXINETD_FUZZ_SECS=300 cargo test --lib fuzz -- --nocapture`.

use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
#[cfg(test)]
use std::time::{Duration, Instant};

use super::classic::Translation;
use super::raw::{Key, Value};
use super::{inetd, xinetd, Context};

#[cfg(test)]
struct Rng(u64);

#[cfg(test)]
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

#[cfg(test)]
fn seeds() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "tests/fixtures/compat",
        "tests/fuzz-corpus",
        "fuzz/corpus/parsers",
    ] {
        collect(&root.join(dir), &mut files);
    }
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

#[cfg(test)]
fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Tokens that matter to the grammars, spliced in by the mutator.
#[cfg(test)]
const TOKENS: &[&str] = &[
    "{",
    "}",
    "=",
    "+=",
    "-=",
    ":",
    "/",
    ".",
    "[",
    "]",
    "#",
    "#@",
    "\n",
    "\t",
    " ",
    "internal",
    "wait",
    "nowait",
    "stream",
    "dgram",
    "tcp6",
    "udp46",
    "unix",
    "rpc/tcp",
    "service x",
    "defaults",
    "*:",
    "[::1]:",
    "127.0.0.1:",
    "root",
    "nobody:nogroup",
    "/bin/cat",
    "UNLIMITED",
    "flags = IPv6",
    "type = INTERNAL",
    "\"",
    "\\",
    "\u{0}",
    "é",
    "99999999999999999999",
];

#[cfg(test)]
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.insert(at, rng.next() as u8),
            2 if at < data.len() => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 | 4 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                data.splice(at..at, t.iter().copied());
            }
            5 => {
                // Splice a piece of another seed.
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let end = (from + rng.below(200)).min(other.len());
                data.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                // Duplicate a line.
                let text = data.clone();
                let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
                let line = lines[rng.below(lines.len())];
                data.splice(at..at, line.iter().chain(b"\n").copied());
            }
        }
    }
    data
}

/// One input through both front-ends and the resolver. Panics if a
/// property is broken: nothing may panic, and the import must read back as
/// what runs.
pub fn exercise(input: &[u8], ctx: &Context) {
    let text = String::from_utf8_lossy(input);
    // Never follow includes out of the fuzzer's input (`include /dev/zero`).
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("include"))
        .map(|l| format!("{l}\n"))
        .collect();
    let file = Path::new("/nonexistent/fuzz/inetd.conf");
    let mut t = Translation::default();
    inetd::translate_text(file, &text, &mut t);
    check_rendering(t, "inetd", ctx, &text);
    let t = xinetd::translate_text(Path::new("/nonexistent/fuzz/xinetd.conf"), &text);
    check_rendering(t, "xinetd", ctx, &text);
}

fn check_rendering(t: Translation, format: &str, ctx: &Context, input: &str) {
    let rendered = super::import::render(&t, format);
    if t.duplicates().is_empty() {
        let read = super::toml::read_text(Path::new("/nonexistent/fuzz/x.toml"), rendered.clone());
        let raw = match read {
            Ok(raw) => raw,
            Err(e) => panic!(
                "{format} import does not parse: {e:?}\n--- input:\n{input}\n--- rendered:\n{rendered}"
            ),
        };
        let runs: Vec<Vec<(&str, Value)>> = t
            .services
            .iter()
            .filter(|d| d.disabled.is_none())
            .map(|d| as_toml_holds(&d.keys))
            .collect();
        let imported: Vec<Vec<(&str, Value)>> = raw
            .services
            .iter()
            .map(|d| as_toml_holds(&d.keys))
            .collect();
        assert!(
            imported == runs,
            "{format} import reads back otherwise\n--- input:\n{input}\n--- rendered:\n{rendered}"
        );
        assert!(raw.diagnostics.is_empty() && raw.services.iter().all(|d| d.problems.is_empty()));
    }
    let _ = t.resolve(Path::new("/nonexistent/fuzz/x.conf"), ctx);
}

/// Keys and values as a TOML table holds them: keys in order, as are the
/// keys of inline tables.
fn as_toml_holds(keys: &[Key]) -> Vec<(&'static str, Value)> {
    let mut out: Vec<(&'static str, Value)> = keys
        .iter()
        .map(|k| {
            let mut value = k.value.clone();
            if let Value::Table(pairs) = &mut value {
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            (k.name, value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(b.0));
    out
}

#[test]
fn parsers_survive_mutated_configs() {
    let seeds = seeds();
    assert!(seeds.len() >= 10, "seed corpus missing");
    let ctx = Context {
        etc_services: PathBuf::from("/etc/services"),
        ..Context::current()
    };
    for s in &seeds {
        exercise(s, &ctx);
    }
    let budget = std::env::var("OXINETD_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let seed = std::env::var("OXINETD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0D15_EA5E_u64);
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let mut rounds = 0u64;
    loop {
        let done = match budget {
            Some(b) => start.elapsed() >= b,
            None => rounds >= 3000,
        };
        if done {
            break;
        }
        let input = mutate(&mut rng, &seeds);
        exercise(&input, &ctx);
        rounds += 1;
    }
    eprintln!(
        "fuzz: {rounds} inputs in {:.1} s, seed {seed}",
        start.elapsed().as_secs_f64()
    );
}
