//! One file over HTTP(S) into the cache, never leaving a partial file under its final name:
//! bytes go to a temporary file beside the destination while being hashed; only a transfer
//! that is complete (as long as announced) and has the published digest is renamed into place.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::download::checksum::Checksum;
use crate::error::{DataError, Result};
use crate::io::{parent_dir, temp_path};

/// Called as bytes arrive: (file name, bytes so far, total if announced).
pub type ProgressFn = Arc<dyn Fn(&str, u64, Option<u64>) + Send + Sync>;

/// How downloads behave.
#[derive(Clone)]
pub struct FetchOptions {
    /// Try `{mirror}/{file name}` before the canonical addresses (a local or institutional
    /// copy of the archives).
    pub mirror: Option<String>,
    /// Connection and first-response timeout.
    pub timeout: Duration,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            mirror: None,
            timeout: Duration::from_secs(30),
            progress: None,
        }
    }
}

/// Environment variable naming a mirror folder URL (see [`FetchOptions::mirror`]).
pub const MIRROR_ENV: &str = "DWLTH_MIRROR";

impl FetchOptions {
    /// Defaults, with the mirror from `$DWLTH_MIRROR` when set.
    pub fn from_env() -> Self {
        Self {
            mirror: std::env::var(MIRROR_ENV).ok().filter(|m| !m.is_empty()),
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for FetchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchOptions")
            .field("mirror", &self.mirror)
            .field("timeout", &self.timeout)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

fn is_loopback(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    rest.starts_with("127.") || rest.starts_with("localhost") || rest.starts_with("[::1]")
}

fn agent(url: &str, options: &FetchOptions) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(Some(options.timeout))
        .timeout_recv_response(Some(options.timeout))
        .http_status_as_error(true);
    if is_loopback(url) {
        config = config.proxy(None);
    }
    config.build().into()
}

/// Why one attempt failed: a checksum mismatch is reported as such, the rest as text.
enum Failure {
    Checksum { actual: String },
    Other(String),
}

/// Streams `url` to a temporary file, verifies it and renames it to `dest`.
fn attempt(
    url: &str,
    dest: &Path,
    checksum: &Checksum,
    options: &FetchOptions,
) -> Result<(), Failure> {
    let part = temp_path(dest, "part");
    let result = stream(url, &part, checksum, options);
    let outcome = match result {
        Ok(actual) if checksum.matches(&actual) => fs::rename(&part, dest)
            .map_err(|e| Failure::Other(format!("cannot rename into place: {e}"))),
        Ok(actual) => Err(Failure::Checksum { actual }),
        Err(reason) => Err(Failure::Other(reason)),
    };
    if outcome.is_err() {
        let _ = fs::remove_file(&part);
    }
    outcome
}

/// Writes the body to `part`, returns its hex digest; any short or broken transfer is an error.
fn stream(
    url: &str,
    part: &Path,
    checksum: &Checksum,
    options: &FetchOptions,
) -> Result<String, String> {
    let mut response = agent(url, options).get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => format!("the server answered HTTP {code}"),
        other => other.to_string(),
    })?;
    let announced = response.body().content_length();
    let name = part
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut reader = response.body_mut().as_reader();
    let mut file =
        File::create(part).map_err(|e| format!("cannot create `{}`: {e}", part.display()))?;
    let mut hasher = checksum.hasher();
    let mut buf = vec![0u8; 1 << 16];
    let mut received: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(format!(
                    "the transfer broke off after {received} bytes{} ({e})",
                    announced.map(|t| format!(" of {t}")).unwrap_or_default()
                ))
            }
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| format!("cannot write `{}`: {e}", part.display()))?;
        received += n as u64;
        if let Some(progress) = &options.progress {
            progress(&name, received, announced);
        }
    }
    if let Some(total) = announced {
        if received != total {
            return Err(format!(
                "the transfer stopped after {received} of {total} bytes"
            ));
        }
    }
    file.sync_all()
        .map_err(|e| format!("cannot write `{}`: {e}", part.display()))?;
    Ok(hasher.finish())
}

/// Downloads `dest` from the first of `urls` that delivers the right bytes.
pub fn download(
    urls: &[String],
    dest: &Path,
    checksum: &Checksum,
    options: &FetchOptions,
) -> Result<()> {
    let dir = parent_dir(dest);
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let mut last = None;
    for url in urls {
        match attempt(url, dest, checksum, options) {
            Ok(()) => return Ok(()),
            Err(f) => last = Some((url.clone(), f)),
        }
    }
    Err(match last {
        Some((url, Failure::Checksum { actual })) => DataError::Checksum {
            path: dest.to_path_buf(),
            url: Some(url),
            algorithm: checksum.algorithm(),
            expected: checksum.expected().to_string(),
            actual,
        },
        Some((url, Failure::Other(reason))) => DataError::Download {
            url,
            dest: dest.to_path_buf(),
            checksum: checksum.to_string(),
            reason,
        },
        None => DataError::invalid(format!("no address to download `{}` from", dest.display())),
    })
}
