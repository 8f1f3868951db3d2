//! The provider's secret key, for handlers that derive values from one
//! (such as `Custom::RandomString`).
//!
//! It comes from `STACKHOOK_SECRET_KEY` when set. Otherwise it is read from
//! `<state dir>/secret.key`, which is created on first start with 32 random
//! bytes and mode 0600. Replicas of one provider must share the key.

use std::path::Path;

use rand::RngCore;

use stackhook::error::{Error, Result};

/// The key file's name inside the state directory.
pub(crate) const KEY_FILE: &str = "secret.key";

/// Shortest key accepted from the environment, in bytes.
pub(crate) const MIN_KEY_LEN: usize = 16;

/// Check a key given directly (flag or environment).
///
/// # Errors
/// [`Error::Config`] when it is shorter than [`MIN_KEY_LEN`] bytes.
pub(crate) fn from_text(text: &str) -> Result<Vec<u8>> {
    let key = text.trim().as_bytes().to_vec();
    if key.len() < MIN_KEY_LEN {
        return Err(Error::Config(format!(
            "the secret key is {} bytes; use at least {MIN_KEY_LEN} random bytes",
            key.len()
        )));
    }
    Ok(key)
}

/// Read the key from `dir`, creating the directory (mode 0700: it will also
/// hold the journal, presigned URLs included) and a fresh key if needed.
///
/// # Errors
/// [`Error::Io`] when the directory or file cannot be read or written, and
/// [`Error::Config`] when the file holds something that is not a key.
pub(crate) fn load_or_create(dir: &Path) -> Result<Vec<u8>> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => hex::decode(text.trim()).map_err(|_| {
            Error::Config(format!(
                "{} does not hold a hex-encoded key",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(dir)?;
            let mut key = vec![0u8; 32];
            rand::rng().fill_bytes(&mut key);
            write_private(&path, hex::encode(&key).as_bytes())?;
            tracing::info!(path = %path.display(), "created a new secret key");
            Ok(key)
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// `dir` and its missing parents, readable by the owner only. A directory
/// that already exists keeps its mode.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| Error::io(format!("creating the state directory {}", dir.display()), e))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create(dir.path()).expect("created");
        let second = load_or_create(dir.path()).expect("read");
        assert_eq!(first, second);
        assert_eq!(first.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_new_state_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        load_or_create(&state).expect("created");
        let mode = std::fs::metadata(&state)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(from_text("short").is_err());
        assert!(from_text("0123456789abcdef").is_ok());
    }

    #[test]
    fn garbage_key_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(KEY_FILE), "not hex").expect("write");
        assert!(load_or_create(dir.path()).is_err());
    }
}
