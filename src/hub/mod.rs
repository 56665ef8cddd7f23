//! The Hugging Face hub: where its cache lives, what the environment says about it, and the
//! downloads into it. The cache is laid out exactly as huggingface_hub lays it out, so files
//! one tool downloaded are found by the other.
pub mod cache;
mod client;
pub mod dataset;
pub mod model;

pub use client::{Client, RepoInfo};
use std::path::PathBuf;
use std::time::Duration;

/// The hub that answers when HF_ENDPOINT is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// What a repository holds; the hub names each kind differently in paths and URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoType {
    Model,
    Dataset,
}

impl RepoType {
    /// The cache folder's prefix: `models--ORG--NAME`, `datasets--ORG--NAME`.
    pub fn cache_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
        }
    }

    /// The prefix of download URLs: models have none.
    fn url_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
        }
    }

    /// A flag users type, for error messages.
    fn flag(self) -> &'static str {
        match self {
            RepoType::Model => "--model",
            RepoType::Dataset => "--dataset",
        }
    }
}

/// The hub settings from the environment, as huggingface_hub reads them.
#[derive(Clone)]
pub struct Settings {
    /// $HF_ENDPOINT, without a trailing slash.
    pub endpoint: String,
    /// $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
    pub cache_dir: PathBuf,
    /// $HF_HUB_OFFLINE: use the cache only, never the network.
    pub offline: bool,
    /// $HF_TOKEN, else the file $HF_TOKEN_PATH, else $HF_HOME/token. Never printed.
    token: Option<String>,
    /// $HF_HUB_ETAG_TIMEOUT (default 10 s): how long a listing or a file's HEAD may keep the
    /// line silent (connecting, or between two reads).
    pub etag_timeout: Duration,
    /// $HF_HUB_DOWNLOAD_TIMEOUT (default 10 s): the same for a file's bytes; a download that
    /// stalls longer fails, and the next run resumes it.
    pub download_timeout: Duration,
    /// A timeout variable that is not a positive number of seconds: every request fails with it.
    env_error: Option<String>,
}

// Written by hand so that no debug print can show the token.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("etag_timeout", &self.etag_timeout)
            .field("download_timeout", &self.download_timeout)
            .finish()
    }
}

impl Settings {
    pub fn from_env() -> Self {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let mut env_error = None;
        let mut timeout = |var: &str| match seconds(var) {
            Ok(t) => t,
            Err(e) => {
                env_error.get_or_insert(e);
                DEFAULT_TIMEOUT
            }
        };
        let (etag_timeout, download_timeout) = (
            timeout("HF_HUB_ETAG_TIMEOUT"),
            timeout("HF_HUB_DOWNLOAD_TIMEOUT"),
        );
        Settings {
            endpoint: endpoint.trim().trim_end_matches('/').to_string(),
            cache_dir: cache_dir(),
            offline: truthy("HF_HUB_OFFLINE"),
            token: token(),
            etag_timeout,
            download_timeout,
            env_error,
        }
    }

    /// An environment variable of these settings that could not be read.
    pub fn env_error(&self) -> Option<&str> {
        self.env_error.as_deref()
    }

    /// Settings for the hub at `endpoint` and the cache folder `cache_dir`, online, with no
    /// token (a test's or an embedding program's; `from_env` is the user's).
    pub fn new(endpoint: &str, cache_dir: PathBuf) -> Self {
        Settings {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cache_dir,
            offline: false,
            token: None,
            etag_timeout: DEFAULT_TIMEOUT,
            download_timeout: DEFAULT_TIMEOUT,
            env_error: None,
        }
    }

    /// These settings with other read timeouts (listings and HEADs, file bytes).
    pub fn with_timeouts(mut self, etag: Duration, download: Duration) -> Self {
        self.etag_timeout = etag;
        self.download_timeout = download;
        self
    }

    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// These settings with another cache folder and offline switch.
    pub fn with_cache(mut self, cache_dir: PathBuf, offline: bool) -> Self {
        self.cache_dir = cache_dir;
        self.offline = offline;
        self
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }
}

/// $HF_HOME, else ~/.cache/huggingface.
fn hf_home() -> PathBuf {
    if let Some(home) = std::env::var_os("HF_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface")
}

/// The hub cache folder: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("HF_HUB_CACHE").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => hf_home().join("hub"),
    }
}

/// huggingface_hub's default for HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A timeout variable in seconds (huggingface_hub reads whole seconds; fractions are kept);
/// unset or empty is the default.
fn seconds(var: &str) -> Result<Duration, String> {
    let Ok(text) = std::env::var(var) else {
        return Ok(DEFAULT_TIMEOUT);
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(DEFAULT_TIMEOUT);
    }
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 1e6 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "{var}={text:?}: expected a positive number of seconds (default 10)"
        )),
    }
}

/// huggingface_hub's reading of boolean variables.
fn truthy(var: &str) -> bool {
    matches!(
        std::env::var(var)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("1" | "true" | "yes" | "on")
    )
}

/// The token huggingface_hub would use: $HF_TOKEN (or the older $HUGGING_FACE_HUB_TOKEN),
/// else the file `huggingface-cli login` writes.
fn token() -> Option<String> {
    let non_empty = |s: String| Some(s.trim().to_string()).filter(|t| !t.is_empty());
    for var in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
        if let Some(t) = std::env::var(var).ok().and_then(non_empty) {
            return Some(t);
        }
    }
    let path = std::env::var_os("HF_TOKEN_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| hf_home().join("token"));
    std::fs::read_to_string(path).ok().and_then(non_empty)
}

/// A full commit hash, as opposed to a branch or tag name.
pub fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40
        && revision
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
