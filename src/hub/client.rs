//! HTTP to the hub, as huggingface_hub speaks it: a listing of a revision's files, then per
//! file a HEAD for its commit, ETag and size (LFS files answer with a redirect to their
//! storage), a GET resumed with a Range from `blobs/<etag>.incomplete`, a sha256 check for LFS
//! files (their ETag is the sha256), and a rename into `blobs/`.
use super::cache::{checked_relative, RepoCache};
use super::{is_commit_hash, RepoType, Settings};
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use ureq::http::{HeaderMap, Response};

/// Redirects followed before giving up (the hub uses one or two).
const MAX_REDIRECTS: usize = 10;

/// A revision's commit and file list, from `GET /api/{models,datasets}/ID/revision/REV`.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    pub commit: String,
    pub files: Vec<String>,
}

#[derive(serde::Deserialize)]
struct ApiInfo {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
}

/// What the hub says about one file before it is downloaded.
struct FileMeta {
    etag: String,
    size: u64,
    /// Where the bytes are: the resolve URL, or the storage an LFS redirect points to.
    url: String,
}

/// Names a repository (and file) in error messages, as the user typed it.
struct Target<'a> {
    kind: RepoType,
    id: &'a str,
    revision: &'a str,
    file: Option<&'a str>,
}

impl Target<'_> {
    fn spec(&self) -> String {
        let rev = if self.revision == "main" {
            String::new()
        } else {
            format!("@{}", self.revision)
        };
        format!("{} {}{rev}", self.kind.flag(), self.id)
    }
}

pub struct Client {
    settings: Settings,
    /// Listings and HEADs: silent for at most HF_HUB_ETAG_TIMEOUT.
    agent: ureq::Agent,
    /// File bytes: silent for at most HF_HUB_DOWNLOAD_TIMEOUT.
    bytes_agent: ureq::Agent,
    quiet: bool,
}

impl Client {
    /// A client for the hub the settings name; `quiet` hides the progress bars.
    pub fn new(settings: Settings, quiet: bool) -> Self {
        // Proxies come from the environment (HTTPS_PROXY, NO_PROXY...), except for a hub on this
        // machine, which a proxy could not reach.
        let host = origin(&settings.endpoint).split("://").nth(1).unwrap_or("");
        let local =
            host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
        // As requests' timeout in huggingface_hub: the connection and every read may each be
        // silent for the timeout, so a stalled server fails instead of hanging.
        let agent = |timeout: Duration| -> ureq::Agent {
            let mut config = ureq::Agent::config_builder();
            if local {
                config = config.proxy(None);
            }
            config
                .http_status_as_error(false)
                // Followed by hand: the token goes only to the hub's own host, never to storage.
                .max_redirects(0)
                .timeout_connect(Some(timeout))
                .timeout_recv_response(Some(timeout))
                .timeout_per_read(Some(timeout))
                .timeout_per_write(Some(timeout))
                .user_agent(format!("bertology/{}", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        Client {
            agent: agent(settings.etag_timeout),
            bytes_agent: agent(settings.download_timeout),
            settings,
            quiet,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The commit a revision (branch, tag or commit) points to, and the files it holds.
    pub fn repo_info(&self, kind: RepoType, id: &str, revision: &str) -> Result<RepoInfo> {
        let t = Target {
            kind,
            id,
            revision,
            file: None,
        };
        if let Some(e) = self.settings.env_error() {
            bail!("{}: {e}", t.spec());
        }
        let url = format!(
            "{}/api/{}/{}/revision/{}",
            self.settings.endpoint,
            kind.cache_prefix(),
            id,
            encode(revision, false)
        );
        let mut response = self.call(&t, &url, "GET", None)?;
        if !response.status().is_success() {
            return Err(self.status_error(&t, &response));
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| self.transport_error(&t, e))?;
        let info: ApiInfo = serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "{}: {url} did not answer with a repository listing ({e}); is HF_ENDPOINT a hub?",
                t.spec()
            )
        })?;
        let commit = info
            .sha
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("{}: the listing from {url} has no \"sha\"", t.spec()))?;
        // The commit names the snapshot folder and every file name a path under it: nothing the
        // server sends becomes a path before it is checked.
        if !is_commit_hash(&commit) {
            bail!(
                "{}: the listing from {url} gives the commit {:?}, not a commit hash (40 hexadecimal digits); is HF_ENDPOINT a hub?",
                t.spec(),
                shorten(&commit)
            );
        }
        let files: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
        for f in &files {
            checked_relative(f).map_err(|e| anyhow!("{}: {url}: {e}", t.spec()))?;
        }
        Ok(RepoInfo { commit, files })
    }

    /// The local path of `file` at `commit` (of the user's `revision`), downloaded into the
    /// cache unless it is there already.
    pub fn download(
        &self,
        kind: RepoType,
        id: &str,
        revision: &str,
        commit: &str,
        file: &str,
    ) -> Result<PathBuf> {
        let t = Target {
            kind,
            id,
            revision,
            file: Some(file),
        };
        let repo = RepoCache::new(&self.settings.cache_dir, kind, id);
        let pointer = repo.snapshot(commit).join(checked_relative(file)?);
        if pointer.is_file() {
            return Ok(pointer);
        }
        let url = format!(
            "{}/{}{id}/resolve/{}/{}",
            self.settings.endpoint,
            kind.url_prefix(),
            encode(commit, false),
            encode(file, true)
        );
        let meta = self.file_meta(&t, &url)?;
        if !repo.blob(&meta.etag).is_file() {
            self.fetch_blob(&t, &repo, &meta)?;
        }
        repo.link(commit, file, &meta.etag)
    }

    /// HEAD the file: its ETag and size, and where to GET it. Relative redirects (a renamed
    /// repository) are followed; an absolute one is the LFS storage holding the bytes.
    fn file_meta(&self, t: &Target, url: &str) -> Result<FileMeta> {
        let mut url = url.to_string();
        for _ in 0..MAX_REDIRECTS {
            let response = self.call(t, &url, "HEAD", None)?;
            let status = response.status();
            let h = response.headers();
            let mut download_url = url.clone();
            if status.is_redirection() {
                let location = header(h, "location")
                    .ok_or_else(|| anyhow!("{}: a redirect without Location", t.spec()))?;
                if location.starts_with('/') {
                    url = format!("{}{location}", origin(&url));
                    continue;
                }
                download_url = location.to_string();
            } else if !status.is_success() {
                return Err(self.status_error(t, &response));
            }
            let missing = |name: &str| {
                anyhow!(
                    "{}: the answer for {} lacks the {name} header; is HF_ENDPOINT ({}) a hub?",
                    t.spec(),
                    t.file.unwrap_or(""),
                    self.settings.endpoint
                )
            };
            if header(h, "x-repo-commit").is_none() {
                return Err(missing("X-Repo-Commit"));
            }
            let etag = header(h, "x-linked-etag")
                .or_else(|| header(h, "etag"))
                .map(normalize_etag)
                .ok_or_else(|| missing("ETag"))?;
            if !is_plain_etag(&etag) {
                bail!(
                    "{}: {}: the hub gave the ETag {:?}, which is not a plain name (letters, digits, - and _, at most 128)",
                    t.spec(),
                    t.file.unwrap_or(""),
                    shorten(&etag)
                );
            }
            let size = header(h, "x-linked-size")
                .or_else(|| header(h, "content-length"))
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| missing("Content-Length"))?;
            return Ok(FileMeta {
                etag,
                size,
                url: download_url,
            });
        }
        bail!("{}: more than {MAX_REDIRECTS} redirects", t.spec())
    }

    /// Downloads a blob into `blobs/<etag>.incomplete` (resuming what is there), checks its
    /// size and, for LFS files, its sha256, then renames it into place: `blobs/<etag>` only
    /// ever holds a complete, checked file.
    fn fetch_blob(&self, t: &Target, repo: &RepoCache, meta: &FileMeta) -> Result<()> {
        let file = t.file.unwrap_or("");
        let blob = repo.blob(&meta.etag);
        let part = repo.incomplete(&meta.etag);
        let lock_path = repo.lock(&meta.etag);
        for dir in [blob.parent(), lock_path.parent()].into_iter().flatten() {
            std::fs::create_dir_all(dir)
                .map_err(|e| write_error(e, dir, meta.size, file))
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // The same flock huggingface_hub's filelock takes: one downloader per blob.
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot create {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        if blob.is_file() {
            return Ok(()); // another process finished it while we waited
        }
        let mut start = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(|e| write_error(e, &part, meta.size, file))?;
        if start > meta.size {
            out.set_len(0)?;
            start = 0;
        }
        let checksum = is_sha256(&meta.etag);
        let mut hasher = Sha256::new();
        if checksum && start > 0 {
            let mut old = File::open(&part)?.take(start);
            std::io::copy(&mut old, &mut hasher)?;
        }
        if start < meta.size {
            self.receive(t, meta, start, &mut out, &part, &mut hasher)?;
        }
        out.sync_all()
            .map_err(|e| write_error(e, &part, meta.size, file))?;
        drop(out);
        let got = std::fs::metadata(&part)?.len();
        if got != meta.size {
            if got > meta.size {
                let _ = std::fs::remove_file(&part);
            }
            bail!(
                "{}: {file}: received {got} of {} bytes; run again to resume",
                t.spec(),
                meta.size
            );
        }
        if checksum {
            let digest = hex(&hasher.finalize());
            if digest != meta.etag {
                let _ = std::fs::remove_file(&part);
                bail!(
                    "{}: {file}: the received bytes have sha256 {digest}, the hub's ETag says {}; the download was deleted, run again",
                    t.spec(),
                    meta.etag
                );
            }
        }
        std::fs::rename(&part, &blob)
            .with_context(|| format!("cannot move {} into place", part.display()))?;
        drop(lock);
        Ok(())
    }

    /// GETs the bytes from `start` on and appends them to `out`, with a progress bar.
    fn receive(
        &self,
        t: &Target,
        meta: &FileMeta,
        mut start: u64,
        out: &mut File,
        part: &Path,
        hasher: &mut Sha256,
    ) -> Result<()> {
        let file = t.file.unwrap_or("");
        let mut url = meta.url.clone();
        let mut response = None;
        for _ in 0..MAX_REDIRECTS {
            let r = self.call(t, &url, "GET BYTES", Some(start).filter(|&s| s > 0))?;
            if r.status().is_redirection() {
                let location = header(r.headers(), "location")
                    .ok_or_else(|| anyhow!("{}: a redirect without Location", t.spec()))?;
                url = absolute(&url, location);
                continue;
            }
            response = Some(r);
            break;
        }
        let mut response =
            response.ok_or_else(|| anyhow!("{}: more than {MAX_REDIRECTS} redirects", t.spec()))?;
        match response.status().as_u16() {
            206 => {
                let range = header(response.headers(), "content-range").unwrap_or("");
                if !range.starts_with(&format!("bytes {start}-")) {
                    bail!(
                        "{}: {file}: asked for bytes {start}- and got the range {range:?}",
                        t.spec()
                    );
                }
            }
            200 if start > 0 => {
                // The server ignored the Range: start over.
                out.set_len(0)?;
                *hasher = Sha256::new();
                start = 0;
            }
            200 => {}
            _ => return Err(self.status_error(t, &response)),
        }
        let bar = self.bar(meta.size, file);
        bar.set_position(start);
        let mut reader = response.body_mut().as_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut received = start;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bar.abandon();
                    let why = if e.kind() == std::io::ErrorKind::TimedOut
                        || e.to_string().to_ascii_lowercase().contains("timeout")
                    {
                        format!(
                            "nothing received for {} s, HF_HUB_DOWNLOAD_TIMEOUT",
                            self.settings.download_timeout.as_secs_f64()
                        )
                    } else {
                        e.to_string().replace('\n', " ")
                    };
                    bail!(
                        "{}: {file}: the download broke off after {received} of {} bytes ({why}); run again to resume",
                        t.spec(),
                        meta.size
                    );
                }
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| write_error(e, part, meta.size, file))?;
            received += n as u64;
            bar.inc(n as u64);
        }
        bar.finish();
        Ok(())
    }

    /// Bytes and rate on stderr; hidden with --quiet or when stderr is not a terminal.
    fn bar(&self, size: u64, file: &str) -> ProgressBar {
        let bar = ProgressBar::new(size);
        if self.quiet || !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(file.to_string());
        bar
    }

    /// One request; the token goes only to the hub's own host.
    fn call(
        &self,
        t: &Target,
        url: &str,
        method: &str,
        range_from: Option<u64>,
    ) -> Result<Response<ureq::Body>> {
        let mut request = match method {
            "HEAD" => self.agent.head(url),
            "GET BYTES" => self.bytes_agent.get(url),
            _ => self.agent.get(url),
        }
        // Sizes and checksums are those of the file itself, never of a compressed stream.
        .header("Accept-Encoding", "identity");
        if let Some(token) = &self.settings.token {
            if origin(url) == origin(&self.settings.endpoint) {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
        }
        if let Some(from) = range_from {
            request = request.header("Range", format!("bytes={from}-"));
        }
        request.call().map_err(|e| self.transport_error(t, e))
    }

    fn transport_error(&self, t: &Target, e: ureq::Error) -> anyhow::Error {
        let why = match &e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused".to_string()
            }
            ureq::Error::HostNotFound => "host not found".to_string(),
            ureq::Error::ConnectionFailed => "connection failed".to_string(),
            ureq::Error::Timeout(_) => self.silence(),
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                self.silence()
            }
            other => other.to_string().replace('\n', " "),
        };
        anyhow!(
            "{}: cannot reach the hub at {} ({why}); to use only files already downloaded, set HF_HUB_OFFLINE=1 (cache: {})",
            t.spec(),
            self.settings.endpoint,
            self.settings.cache_dir.display()
        )
    }

    /// What a timeout says: the limits and the variables that set them.
    fn silence(&self) -> String {
        format!(
            "no answer within {} s; HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT set the limits",
            self.settings.etag_timeout.as_secs_f64()
        )
    }

    /// One line for a refusal, from the status and the hub's X-Error-Code.
    fn status_error(&self, t: &Target, response: &Response<ureq::Body>) -> anyhow::Error {
        let status = response.status().as_u16();
        let code = header(response.headers(), "x-error-code").unwrap_or("");
        let spec = t.spec();
        let page = format!("{}/{}{}", self.settings.endpoint, t.kind.url_prefix(), t.id);
        let token_hint = if self.settings.has_token() {
            "the token from HF_TOKEN (or the token file) was sent: check that it is valid and has access"
        } else {
            "set HF_TOKEN to a token with access (or log in with `huggingface-cli login`)"
        };
        match (status, code, t.file) {
            (_, "GatedRepo", _) | (403, _, _) => anyhow!(
                "{spec}: the repository is gated (HTTP {status}): accept its conditions at {page}, and {token_hint}"
            ),
            (_, "RevisionNotFound", _) => anyhow!(
                "{spec}: the repository has no revision {} (HTTP {status}); give a branch, tag or commit that exists",
                t.revision
            ),
            (401, _, _) => anyhow!(
                "{spec}: the hub refused access (HTTP 401): the repository is private, gated or does not exist; {token_hint}"
            ),
            (_, "EntryNotFound", Some(file)) | (404, "", Some(file)) => anyhow!(
                "{spec}: the repository has no file {file} at revision {} (HTTP 404)",
                t.revision
            ),
            (404, _, _) => anyhow!(
                "{spec}: no such repository on {} (HTTP 404); check the name (a private one also needs HF_TOKEN)",
                self.settings.endpoint
            ),
            _ => anyhow!(
                "{spec}: the hub at {} answered HTTP {status} for {}",
                self.settings.endpoint,
                t.file.unwrap_or("the file listing")
            ),
        }
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `"abc"` and `W/"abc"` → `abc`.
fn normalize_etag(etag: &str) -> String {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// An ETag fit to name a file in `blobs/`: a git blob id, a sha256, or a mirror's plain token;
/// never a path, a dot file or `<etag>.incomplete`.
fn is_plain_etag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A server's string, cut for an error message (a hostile one can be megabytes).
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `scheme://host:port` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// A redirect's Location made absolute against the URL that gave it.
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base))
    } else {
        let dir = &base[..base.rfind('/').map_or(base.len(), |i| i + 1)];
        format!("{dir}{location}")
    }
}

/// Percent-encodes a path segment (keeping `/` between segments when asked).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A failed write, in one line; a full disk says so, with the size needed.
fn write_error(e: std::io::Error, path: &Path, size: u64, file: &str) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        anyhow!(
            "no space left on the device of {} while downloading {file} ({size} bytes); free some space or set HF_HUB_CACHE to a folder on another disk",
            path.display()
        )
    } else {
        anyhow!("cannot write {}: {e}", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_etags() {
        assert_eq!(
            encode("refs/convert/parquet", false),
            "refs%2Fconvert%2Fparquet"
        );
        assert_eq!(encode("a b/c.json", true), "a%20b/c.json");
        assert_eq!(origin("http://127.0.0.1:8/x/y"), "http://127.0.0.1:8");
        assert_eq!(absolute("http://h:1/a/b", "/c"), "http://h:1/c");
        assert_eq!(absolute("http://h:1/a/b", "https://s/c"), "https://s/c");
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
    }

    #[test]
    fn a_full_disk_is_named() {
        let e = write_error(
            std::io::Error::from_raw_os_error(28),
            Path::new("/c/blobs/x.incomplete"),
            10,
            "model.safetensors",
        );
        let msg = e.to_string();
        assert!(
            msg.contains("no space left") && msg.contains("HF_HUB_CACHE"),
            "{msg}"
        );
    }
}
