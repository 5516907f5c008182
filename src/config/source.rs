//! Reading the files of one config load, with its work bounded.
//!
//! `include` (TOML) and `include`/`includedir` (xinetd) can name the same
//! file twice, or the including file itself (through a glob): read naively,
//! N files that each include `*.toml` cost N^depth reads. `Sources` reads
//! each file once, keyed by device and inode, reports an include cycle once
//! with its chain, and caps the number of files and bytes a load reads.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{ConfigError, Location};

/// Files one load may read, the main file included.
pub const MAX_FILES: usize = 1000;
/// Bytes of one config file.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes of all the files of one load.
pub const MAX_TOTAL_BYTES: u64 = 16 * 1024 * 1024;

type FileId = (u64, u64);

/// What `Sources::enter` found.
pub enum Entry {
    /// The file's text: parse it, then call `Sources::leave`.
    Read(String),
    /// Already read in this load (or refused, with the error already
    /// reported): nothing to do, and no `leave`.
    Skip,
}

/// The files of one load: what has been read, and the chain of includes
/// being followed.
#[derive(Default)]
pub struct Sources {
    seen: HashSet<FileId>,
    /// The files being read, outermost first: an include of one of these
    /// is a cycle.
    stack: Vec<(FileId, PathBuf)>,
    files: usize,
    bytes: u64,
    /// The first cycle found; later ones are only counted.
    cycle: Option<ConfigError>,
    more_cycles: usize,
    /// The file-count and total-size limits are reported once each.
    files_reported: bool,
    bytes_reported: bool,
}

impl Sources {
    /// The total-size limit, reported once.
    fn too_many_bytes(&mut self, at: Location, errors: &mut Vec<ConfigError>) {
        if !std::mem::replace(&mut self.bytes_reported, true) {
            errors.push(ConfigError::new(
                at,
                format!(
                    "include: config files larger than {} MiB in all; the rest are not read",
                    MAX_TOTAL_BYTES / (1024 * 1024)
                ),
            ));
        }
    }

    /// Read `path`, included at `at` (`None` for the main file or a file of
    /// a directory given on the command line). Problems go to `errors`.
    pub fn enter(
        &mut self,
        path: &Path,
        at: Option<&Location>,
        errors: &mut Vec<ConfigError>,
    ) -> Entry {
        let here = at.cloned().unwrap_or_else(|| Location::file(path));
        let (file, id) = match open(path, at) {
            Ok(opened) => opened,
            Err(e) => {
                errors.push(e);
                return Entry::Skip;
            }
        };
        if self.is_cycle(id, path, &here) || !self.seen.insert(id) {
            return Entry::Skip;
        }
        if !self.may_read_more(&here, errors) {
            return Entry::Skip;
        }
        self.files += 1;
        let bytes = match read(file, path) {
            Ok(bytes) => bytes,
            Err(e) => {
                errors.push(e);
                return Entry::Skip;
            }
        };
        self.bytes += bytes.len() as u64;
        if self.bytes > MAX_TOTAL_BYTES {
            self.too_many_bytes(here, errors);
            return Entry::Skip;
        }
        match String::from_utf8(bytes) {
            Ok(text) => {
                self.stack.push((id, path.to_path_buf()));
                Entry::Read(text)
            }
            Err(_) => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "stream did not contain valid UTF-8",
                );
                errors.push(unreadable(path, &e));
                Entry::Skip
            }
        }
    }

    /// True when `id` is being read already: the first cycle is kept with
    /// its chain, later ones only counted.
    fn is_cycle(&mut self, id: FileId, path: &Path, here: &Location) -> bool {
        let Some(start) = self.stack.iter().position(|(f, _)| *f == id) else {
            return false;
        };
        if self.cycle.is_some() {
            self.more_cycles += 1;
        } else {
            let chain: Vec<String> = self.stack[start..]
                .iter()
                .map(|(_, p)| p.display().to_string())
                .chain(std::iter::once(path.display().to_string()))
                .collect();
            self.cycle = Some(ConfigError::new(
                here.clone(),
                format!("include cycle: {}", chain.join(" -> ")),
            ));
        }
        true
    }

    /// False (reported once) when the load has read as many files or
    /// bytes as it may.
    fn may_read_more(&mut self, here: &Location, errors: &mut Vec<ConfigError>) -> bool {
        if self.files >= MAX_FILES {
            if !std::mem::replace(&mut self.files_reported, true) {
                errors.push(ConfigError::new(
                    here.clone(),
                    format!("include: more than {MAX_FILES} config files; the rest are not read"),
                ));
            }
            return false;
        }
        if self.bytes >= MAX_TOTAL_BYTES {
            self.too_many_bytes(here.clone(), errors);
            return false;
        }
        true
    }

    /// Done with the file the last `Entry::Read` returned.
    pub fn leave(&mut self) {
        self.stack.pop();
    }

    /// How many files are open in the include chain (the main file is 1).
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// The cycle found, if any, once, counting the others.
    pub fn finish(self, errors: &mut Vec<ConfigError>) {
        if let Some(mut e) = self.cycle {
            if self.more_cycles > 0 {
                e.message.push_str(&format!(
                    " ({} more include cycles not listed)",
                    self.more_cycles
                ));
            }
            errors.push(e);
        }
    }
}

/// Open `path` and identify it. An include that matches a FIFO or a device
/// must not block the supervisor or read forever; the main file may be
/// anything. The check is on the descriptor opened (non-blocking, so a
/// FIFO does not wait for a writer), not on the name, which may change.
/// `at`: where it is included, `None` for a file named on the command line.
fn open(path: &Path, at: Option<&Location>) -> Result<(std::fs::File, FileId), ConfigError> {
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    if at.is_some() {
        open.custom_flags(libc::O_NONBLOCK);
    }
    let file = open.open(path).map_err(|e| unreadable(path, &e))?;
    if let Some(at) = at.filter(|_| !file.metadata().is_ok_and(|m| m.is_file())) {
        return Err(ConfigError::new(at.clone(), "include: not a regular file"));
    }
    let meta = file.metadata().map_err(|e| unreadable(path, &e))?;
    Ok((file, (meta.dev(), meta.ino())))
}

/// The bytes of an opened file, at most `MAX_FILE_BYTES`.
fn read(file: std::fs::File, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| unreadable(path, &e))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigError::new(
            Location::file(path),
            format!(
                "config file larger than {} MiB",
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        ));
    }
    Ok(buf)
}

fn unreadable(path: &Path, e: &std::io::Error) -> ConfigError {
    ConfigError::new(Location::file(path), format!("unable to read config: {e}"))
}
