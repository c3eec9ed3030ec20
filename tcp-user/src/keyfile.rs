//! The fleet secret and its key file: `synshield keygen` writes it, `serve --key-file` reads
//! it, and every cookie key of the fleet is derived from it (see `secrets::FleetKeeper`).
//!
//! The file is one line of text, so configuration management can carry it like any secret:
//!
//! ```text
//! # synshield fleet secret (synshield keygen): the same file on every host, mode 0600.
//! synshield-fleet-v1 <64 hex digits: 256 bits from getrandom(2)>
//! ```
//!
//! It must be readable by its owner only: a file that its group or others may read or write is
//! refused, before a byte of it is read. No error message, log line or `Debug` output holds
//! any of the secret: errors name the file and what to do, never its content.
//!
//! Key derivation is HKDF-SHA256 (RFC 5869): a standard, reviewed construction for turning
//! one high-entropy secret into many independent keys, here one per epoch. `info` binds each
//! key to its use, the rotation period and the epoch number, so hosts configured with
//! different periods never share a key by accident.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use hkdf::Hkdf;
use sha2::Sha256;
use tcp_common::cookie::CookieKey;

/// Bytes in a fleet secret (256 bits).
pub const SECRET_LEN: usize = 32;

/// What the key line starts with; the version names the format and the derivation.
const TAG: &str = "synshield-fleet-v1";

/// HKDF salt: a fixed label (the secret is uniformly random; the salt only separates domains).
const SALT: &[u8] = b"synshield fleet secret";

/// HKDF `info` prefix of a cookie key; the rotation period and the epoch number follow.
const COOKIE_KEY_INFO: &[u8] = b"synshield cookie key v1";

/// Longest key file read: one comment line and the key line fit many times over.
const MAX_FILE_LEN: u64 = 4096;

/// The fleet secret. Its `Debug` shows nothing of it, and its bytes are overwritten when it
/// is dropped (best effort: copies the allocator or HKDF's state made are not).
#[derive(Clone, PartialEq, Eq)]
pub struct FleetSecret {
    bytes: [u8; SECRET_LEN],
}

impl fmt::Debug for FleetSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FleetSecret(..)")
    }
}

impl Drop for FleetSecret {
    fn drop(&mut self) {
        for b in &mut self.bytes {
            // SAFETY: a valid, aligned, exclusive reference to a byte of our own array; volatile
            // so that the compiler keeps a store to memory about to be freed.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl FleetSecret {
    /// 256 bits from the OS random source (`getrandom(2)`).
    pub fn generate() -> io::Result<FleetSecret> {
        let mut bytes = [0u8; SECRET_LEN];
        let mut filled = 0;
        while filled < bytes.len() {
            // SAFETY: writes at most `bytes.len() - filled` bytes into `bytes[filled..]`.
            let n = unsafe {
                libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
            };
            if let Ok(n) = usize::try_from(n) {
                filled += n;
            } else {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        Ok(FleetSecret { bytes })
    }

    /// A secret from its bytes (tests).
    #[must_use]
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> FleetSecret {
        FleetSecret { bytes }
    }

    /// The SipHash key of `epoch` for a rotation period of `rotation_secs`:
    /// `HKDF-SHA256(salt, secret, info = label | rotation_secs | epoch)`, 16 bytes, the two
    /// numbers as big-endian 64-bit words.
    #[must_use]
    pub fn cookie_key(&self, rotation_secs: u64, epoch: u64) -> CookieKey {
        let hk = Hkdf::<Sha256>::new(Some(SALT), &self.bytes);
        let mut info = [0u8; COOKIE_KEY_INFO.len() + 16];
        info[..COOKIE_KEY_INFO.len()].copy_from_slice(COOKIE_KEY_INFO);
        info[COOKIE_KEY_INFO.len()..][..8].copy_from_slice(&rotation_secs.to_be_bytes());
        info[COOKIE_KEY_INFO.len() + 8..].copy_from_slice(&epoch.to_be_bytes());
        let mut okm = [0u8; 16];
        // 16 bytes are far below HKDF-SHA256's limit of 255 * 32: expand cannot fail.
        if hk.expand(&info, &mut okm).is_err() {
            unreachable!("HKDF-SHA256 gives up to 8160 bytes");
        }
        CookieKey::from_bytes(okm)
    }

    /// The key file's text.
    fn to_file_text(&self) -> String {
        use fmt::Write as _;
        let mut s = String::from(
            "# synshield fleet secret (synshield keygen): the same file on every host, mode 0600.\n",
        );
        s.push_str(TAG);
        s.push(' ');
        for b in &self.bytes {
            let _ = write!(s, "{b:02x}");
        }
        s.push('\n');
        s
    }

    /// The secret in a key file's text: comment (`#`) and blank lines, and one key line.
    fn parse(text: &str) -> Option<FleetSecret> {
        let mut lines =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let (tag, hex) = lines.next()?.split_once(' ')?;
        let hex = hex.trim().as_bytes();
        if tag != TAG || hex.len() != 2 * SECRET_LEN || lines.next().is_some() {
            return None;
        }
        let mut bytes = [0u8; SECRET_LEN];
        for (b, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            *b = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(FleetSecret { bytes })
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Why a key file could not be read or written. Each a sentence that names the file and what
/// to do, and none holds any of its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Opening or reading failed.
    #[error("cannot read the key file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// Its group or others may read or write it.
    #[error(
        "the key file {} is open to its group or others (mode {mode:04o}): make it private with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    LoosePermissions { path: PathBuf, mode: u32 },
    /// Not a regular file.
    #[error("the key file {} is not a regular file: give the file `synshield keygen` wrote", path.display())]
    NotAFile { path: PathBuf },
    /// Not in the format `synshield keygen` writes.
    #[error(
        "{} is not a synshield key file (one line `{TAG} <64 hex digits>`): make one with `synshield keygen`",
        path.display()
    )]
    Malformed { path: PathBuf },
    /// `keygen` would replace an existing file.
    #[error(
        "{} already exists: give --force to replace it (hosts with the old secret then reject the cookies of hosts with the new one until all have it)",
        path.display()
    )]
    Exists { path: PathBuf },
    /// Writing failed.
    #[error("cannot write the key file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// Reads the fleet secret from `path`, refusing a file that is not private to its owner.
pub fn read(path: &Path) -> Result<FleetSecret, KeyFileError> {
    let read_err = |source| KeyFileError::Read { path: path.to_owned(), source };
    // The checks are on the open file, so the file checked is the file read.
    let mut file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile { path: path.to_owned() });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::LoosePermissions { path: path.to_owned(), mode });
    }
    let mut text = String::new();
    (&mut file).take(MAX_FILE_LEN).read_to_string(&mut text).map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidData {
            KeyFileError::Malformed { path: path.to_owned() }
        } else {
            read_err(e)
        }
    })?;
    let secret = FleetSecret::parse(&text);
    // The text holds the secret: overwrite it before it is freed (best effort).
    // SAFETY: zero bytes are valid UTF-8.
    unsafe { text.as_bytes_mut() }.iter_mut().for_each(|b| {
        // SAFETY: an exclusive reference to a byte of our own string.
        unsafe { std::ptr::write_volatile(b, 0) };
    });
    secret.ok_or_else(|| KeyFileError::Malformed { path: path.to_owned() })
}

/// Writes a new random fleet secret to `path` with mode 0600. An existing file is replaced
/// only if `overwrite`, and then atomically (a new file renamed over it), so a host that
/// re-reads it meanwhile sees the old secret or the new one, never a mix.
pub fn generate(path: &Path, overwrite: bool) -> Result<(), KeyFileError> {
    let write_err = |source| KeyFileError::Write { path: path.to_owned(), source };
    let secret = FleetSecret::generate().map_err(write_err)?;
    let text = secret.to_file_text();
    let create = |at: &Path| {
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(at).and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
    };
    if !overwrite {
        return create(path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                KeyFileError::Exists { path: path.to_owned() }
            } else {
                write_err(e)
            }
        });
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".new-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    create(&tmp).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_err(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A fresh temporary directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("synshield-keyfile-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn hex(secret: &FleetSecret) -> String {
        let text = secret.to_file_text();
        text.lines().nth(1).and_then(|l| l.split(' ').nth(1)).expect("key line").to_owned()
    }

    #[test]
    fn keygen_writes_a_private_file_that_reads_back() {
        let dir = TempDir::new();
        let path = dir.0.join("fleet.key");
        generate(&path, false).expect("keygen");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let secret = read(&path).expect("read");
        let text = std::fs::read_to_string(&path).expect("text");
        assert!(text.contains(&hex(&secret)), "the file holds the secret in hex");
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 1);
    }

    #[test]
    fn keygen_refuses_to_overwrite_unless_forced() {
        let dir = TempDir::new();
        let path = dir.0.join("fleet.key");
        generate(&path, false).expect("keygen");
        let first = read(&path).expect("read");
        let e = generate(&path, false).expect_err("exists");
        assert!(matches!(e, KeyFileError::Exists { .. }), "{e}");
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(read(&path).expect("read"), first, "untouched");
        // Forced over a file with loose permissions: the new one is private again.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        generate(&path, true).expect("forced keygen");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        assert_ne!(read(&path).expect("read"), first, "a new secret");
        assert_eq!(std::fs::read_dir(&dir.0).expect("ls").count(), 1, "no temporary file left");
    }

    #[test]
    fn loose_permissions_are_refused_in_one_sentence_without_the_secret() {
        let dir = TempDir::new();
        let path = dir.0.join("fleet.key");
        generate(&path, false).expect("keygen");
        let secret_hex = {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            hex(&read(&path).expect("read"))
        };
        for mode in [0o640, 0o604, 0o620, 0o602, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let e = read(&path).expect_err("loose").to_string();
            assert!(e.contains("chmod 600") && e.contains(&format!("{mode:04o}")), "{e}");
            assert_eq!(e.matches(". ").count() + e.matches(":\n").count(), 0, "one sentence: {e}");
            assert!(!e.contains(&secret_hex[..8]), "no key material: {e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(read(&path).is_ok(), "owner read-only is fine");
    }

    #[test]
    fn malformed_files_are_refused_without_echoing_them() {
        let dir = TempDir::new();
        let path = dir.0.join("fleet.key");
        let good = FleetSecret::from_bytes([0xab; SECRET_LEN]).to_file_text();
        let key_line = good.lines().nth(1).expect("key line");
        for text in [
            String::new(),
            "synshield-fleet-v1\n".to_owned(),
            key_line.replace("synshield-fleet-v1", "synshield-fleet-v2"),
            format!("{}\n", &key_line[..key_line.len() - 2]),
            format!("{key_line}ab\n"),
            key_line.replace("ab", "zz"),
            format!("{key_line}\n{key_line}\n"),
        ] {
            std::fs::write(&path, &text).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            let e = read(&path).expect_err("malformed").to_string();
            assert!(e.contains("synshield keygen"), "{e}");
            assert!(!e.contains("abab"), "no key material: {e}");
        }
        std::fs::write(&path, format!("\n# a comment\n  {key_line}  \n\n")).expect("write");
        assert_eq!(read(&path).expect("comments and blanks"), FleetSecret::from_bytes([0xab; 32]));
        let e = read(&dir.0).expect_err("a directory").to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let s = FleetSecret::from_bytes([0x5a; SECRET_LEN]);
        assert_eq!(format!("{s:?}"), "FleetSecret(..)");
    }

    /// HKDF-SHA256 as RFC 5869 defines it: test case 1 of its appendix A, through the same
    /// crate, then our derivation pinned (a change of it would split a fleet of mixed versions).
    #[test]
    fn cookie_keys_are_hkdf_sha256_of_the_documented_info() {
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        Hkdf::<Sha256>::new(Some(&salt), &ikm).expand(&info, &mut okm).expect("expand");
        assert_eq!(
            hex(&FleetSecret::from_bytes(okm[..32].try_into().expect("32"))),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );

        let s = FleetSecret::from_bytes(core::array::from_fn(|i| u8::try_from(i).expect("i")));
        let mut info = COOKIE_KEY_INFO.to_vec();
        info.extend_from_slice(&3600u64.to_be_bytes());
        info.extend_from_slice(&480_000u64.to_be_bytes());
        let mut okm = [0u8; 16];
        Hkdf::<Sha256>::new(Some(SALT), &s.bytes).expand(&info, &mut okm).expect("expand");
        assert_eq!(s.cookie_key(3600, 480_000), CookieKey::from_bytes(okm));
        assert_ne!(s.cookie_key(3600, 480_000), s.cookie_key(3600, 480_001), "per epoch");
        assert_ne!(s.cookie_key(3600, 480_000), s.cookie_key(1800, 480_000), "per period");
        let other = FleetSecret::from_bytes([7; SECRET_LEN]);
        assert_ne!(s.cookie_key(3600, 1), other.cookie_key(3600, 1), "per secret");
    }
}
