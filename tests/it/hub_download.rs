//! Downloads from the hub, against a hub served on 127.0.0.1 by the test itself: repository
//! listings, HEAD/GET on `resolve/`, LFS files redirected to storage with their sha256 as ETag,
//! Range requests, gated and private repositories. The server counts every request.
use crate::common::{bertology_command, fixture, one_line_error};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COMMIT: &str = "c0ffee00000000000000000000000000000000aa";
const TAG_COMMIT: &str = "7a9000000000000000000000000000000000000b";
const CONVERTED: &str = "9a7e7000000000000000000000000000000000cc";
const TOKEN: &str = "hf_testsecret_91f3c";

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// LFS files, as the hub stores them: weights and parquet.
fn is_lfs(file: &str) -> bool {
    file.ends_with(".safetensors") || file.ends_with(".parquet") || file.ends_with(".bin")
}

/// A revision's files by repository path.
type Files = Arc<BTreeMap<String, Vec<u8>>>;

#[derive(Clone, Copy, PartialEq)]
enum Access {
    Public,
    /// 401 without the token.
    Private,
    /// 401 without a token, 403 with a token that has not accepted the conditions.
    Gated,
}

struct Repo {
    access: Access,
    /// Revision name (branch, tag or commit) → (commit, files).
    revisions: HashMap<String, (String, Files)>,
    /// Listed, but `resolve/` answers 404 (a file deleted after the listing was made).
    ghost: Vec<String>,
}

#[derive(Clone, Debug)]
struct Logged {
    method: String,
    path: String,
    range: Option<String>,
    auth: Option<String>,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, Repo>,
    log: Mutex<Vec<Logged>>,
    /// LFS GETs send this many bytes of the file, then hang until released.
    stall_at: Mutex<Option<u64>>,
    /// LFS GETs send one byte wrong.
    corrupt: AtomicBool,
    stop: AtomicBool,
    served_bytes: AtomicUsize,
}

/// A hub on 127.0.0.1; stopped when dropped.
struct Hub {
    state: Arc<State>,
    url: String,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hub {
    fn start(repos: HashMap<String, Repo>) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            repos,
            ..State::default()
        });
        let s = state.clone();
        let base = url.clone();
        let thread = std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (s, base) = (s.clone(), base.clone());
                        std::thread::spawn(move || {
                            let _ = serve(&s, &base, stream);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Hub {
            state,
            url,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Error",
    }
}

fn respond(stream: &mut TcpStream, code: u16, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {code} {}\r\n", status_text(code));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn error(stream: &mut TcpStream, code: u16, error_code: &str) {
    let mut headers = vec![("Content-Length", "0".to_string())];
    if !error_code.is_empty() {
        headers.push(("X-Error-Code", error_code.to_string()));
    }
    respond(stream, code, &headers, b"");
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// `bytes=N-` → N.
fn range_start(range: &Option<String>) -> u64 {
    range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn serve(state: &State, base: &str, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let entry = Logged {
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        auth: headers.get("authorization").cloned(),
    };
    state.log.lock().unwrap().push(entry.clone());
    let head = method == "HEAD";

    if let Some(sha) = path.strip_prefix("/lfs/") {
        // The storage behind LFS redirects: needs no token, serves ranges.
        let content = state
            .repos
            .values()
            .flat_map(|r| r.revisions.values())
            .flat_map(|(_, files)| files.values())
            .find(|c| sha256(c) == sha)
            .cloned();
        let Some(mut content) = content else {
            error(&mut stream, 404, "");
            return Ok(());
        };
        if state.corrupt.load(Ordering::SeqCst) {
            let mid = content.len() / 2;
            content[mid] ^= 0xff;
        }
        let start = range_start(&entry.range);
        let total = content.len() as u64;
        if start >= total {
            error(&mut stream, 416, "");
            return Ok(());
        }
        let (code, mut h) = if entry.range.is_some() {
            (
                206,
                vec![(
                    "Content-Range",
                    format!("bytes {start}-{}/{total}", total - 1),
                )],
            )
        } else {
            (200, vec![])
        };
        h.push(("Content-Length", (total - start).to_string()));
        if head {
            respond(&mut stream, code, &h, b"");
            return Ok(());
        }
        let body = &content[start as usize..];
        let stall = *state.stall_at.lock().unwrap();
        match stall {
            Some(at) if at > start => {
                let sent = (at - start) as usize;
                respond(&mut stream, code, &h, &body[..sent]);
                stream.flush()?;
                state.served_bytes.fetch_add(sent, Ordering::SeqCst);
                // Hang, as a dead connection does, until the test is over.
                while !state.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            _ => {
                respond(&mut stream, code, &h, body);
                state.served_bytes.fetch_add(body.len(), Ordering::SeqCst);
            }
        }
        return Ok(());
    }

    // /api/{models,datasets}/ORG/NAME/revision/REV and /[datasets/]ORG/NAME/resolve/REV/FILE
    let (kind, rest, api) = if let Some(r) = path.strip_prefix("/api/models/") {
        ("models", r, true)
    } else if let Some(r) = path.strip_prefix("/api/datasets/") {
        ("datasets", r, true)
    } else if let Some(r) = path.strip_prefix("/datasets/") {
        ("datasets", r, false)
    } else {
        ("models", &path[1..], false)
    };
    let segments: Vec<&str> = rest.splitn(5, '/').collect();
    if segments.len() < 4 || segments[2] != if api { "revision" } else { "resolve" } {
        error(&mut stream, 404, "");
        return Ok(());
    }
    let id = format!("{}/{}", segments[0], segments[1]);
    let revision = decode(segments[3]);
    let Some(repo) = state.repos.get(&format!("{kind}/{id}")) else {
        error(&mut stream, 404, "RepoNotFound");
        return Ok(());
    };
    let authorized = entry.auth.as_deref() == Some(&format!("Bearer {TOKEN}"));
    match (repo.access, authorized, entry.auth.is_some()) {
        (Access::Public, _, _) | (_, true, _) => {}
        (Access::Private, false, _) => {
            error(&mut stream, 401, "");
            return Ok(());
        }
        (Access::Gated, false, false) => {
            error(&mut stream, 401, "GatedRepo");
            return Ok(());
        }
        (Access::Gated, false, true) => {
            error(&mut stream, 403, "GatedRepo");
            return Ok(());
        }
    }
    let Some((commit, files)) = repo.revisions.get(&revision) else {
        error(&mut stream, 404, "RevisionNotFound");
        return Ok(());
    };
    if api {
        let siblings: Vec<serde_json::Value> = files
            .keys()
            .chain(repo.ghost.iter())
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let body = serde_json::json!({ "id": id, "sha": commit, "siblings": siblings }).to_string();
        let h = [
            ("Content-Type", "application/json".to_string()),
            ("Content-Length", body.len().to_string()),
        ];
        respond(
            &mut stream,
            200,
            &h,
            if head { b"" } else { body.as_bytes() },
        );
        return Ok(());
    }
    let file = decode(segments.get(4).copied().unwrap_or(""));
    let Some(content) = files.get(&file) else {
        error(&mut stream, 404, "EntryNotFound");
        return Ok(());
    };
    let sha = sha256(content);
    let mut h = vec![("X-Repo-Commit", commit.clone())];
    if is_lfs(&file) {
        h.push(("ETag", format!("\"{}\"", &sha256(sha.as_bytes())[..40])));
        h.push(("X-Linked-Etag", format!("\"{sha}\"")));
        h.push(("X-Linked-Size", content.len().to_string()));
        h.push(("Location", format!("{base}/lfs/{sha}")));
        h.push(("Content-Length", "0".to_string()));
        respond(&mut stream, 302, &h, b"");
    } else {
        // A git blob id stands for the ETag of small files.
        h.push(("ETag", format!("\"{}\"", &sha[..40])));
        let start = range_start(&entry.range).min(content.len() as u64) as usize;
        h.push(("Content-Length", (content.len() - start).to_string()));
        let code = if entry.range.is_some() {
            h.push((
                "Content-Range",
                format!("bytes {start}-{}/{}", content.len() - 1, content.len()),
            ));
            206
        } else {
            200
        };
        respond(
            &mut stream,
            code,
            &h,
            if head { b"" } else { &content[start..] },
        );
    }
    Ok(())
}

/// The tiny BERT with its 3-way classifier cut to MRPC's 2 labels, as a repository serves it.
fn tiny_bert_files() -> BTreeMap<String, Vec<u8>> {
    static FILES: std::sync::OnceLock<BTreeMap<String, Vec<u8>>> = std::sync::OnceLock::new();
    FILES
        .get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tiny_bert_for_mrpc(tmp.path());
            [
                "config.json",
                "model.safetensors",
                "vocab.txt",
                "tokenizer_config.json",
            ]
            .into_iter()
            .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
            .collect()
        })
        .clone()
}

fn tiny_bert_for_mrpc(into: &Path) -> std::path::PathBuf {
    let dir = into.join("tiny-bert-mrpc");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["vocab.txt", "tokenizer_config.json"] {
        std::fs::copy(fixture("tiny-bert").join(f), dir.join(f)).unwrap();
    }
    let tensors: Vec<_> = tch::Tensor::read_safetensors(fixture("tiny-bert/model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(k, t)| {
            let t = if k.starts_with("classifier.") {
                t.narrow(0, 0, 2)
            } else {
                t
            };
            (k, t)
        })
        .collect();
    tch::Tensor::write_safetensors(&tensors, dir.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("tiny-bert/config.json")).unwrap()).unwrap();
    config["id2label"] = serde_json::json!({"0": "LABEL_0", "1": "LABEL_1"});
    config["label2id"] = serde_json::json!({"LABEL_0": 0, "LABEL_1": 1});
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    dir
}

fn repo(access: Access, files: BTreeMap<String, Vec<u8>>) -> Repo {
    let files = Arc::new(files);
    Repo {
        access,
        revisions: [
            ("main".to_string(), (COMMIT.to_string(), files.clone())),
            (COMMIT.to_string(), (COMMIT.to_string(), files)),
        ]
        .into(),
        ghost: vec![],
    }
}

/// The tiny BERT as `org/tiny-bert` (also at tag v1.0, another commit), and friends.
fn model_hub() -> Hub {
    let mut tiny = repo(Access::Public, tiny_bert_files());
    let tagged = Arc::new(tiny_bert_files());
    tiny.revisions
        .insert("v1.0".into(), (TAG_COMMIT.into(), tagged.clone()));
    tiny.revisions
        .insert(TAG_COMMIT.into(), (TAG_COMMIT.into(), tagged));
    let mut ghost = repo(Access::Public, tiny_bert_files());
    ghost.ghost.push("tokenizer.json".into());
    let mut pickles = tiny_bert_files();
    let weights = pickles.remove("model.safetensors").unwrap();
    pickles.insert("pytorch_model.bin".into(), weights);
    Hub::start(
        [
            ("models/org/tiny-bert".to_string(), tiny),
            (
                "models/org/private".to_string(),
                repo(Access::Private, tiny_bert_files()),
            ),
            (
                "models/org/gated".to_string(),
                repo(Access::Gated, tiny_bert_files()),
            ),
            ("models/org/ghost".to_string(), ghost),
            (
                "models/org/pickles".to_string(),
                repo(Access::Public, pickles),
            ),
        ]
        .into(),
    )
}

/// The binary with only the hub variables the test gives.
fn run(hub_url: &str, cache: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
    let mut c = bertology_command(args);
    for v in [
        "HF_ENDPOINT",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HOME",
        "HF_HUB_OFFLINE",
        "HF_HUB_CACHE",
    ] {
        c.env_remove(v);
    }
    c.env("HF_ENDPOINT", hub_url).env("HF_HUB_CACHE", cache);
    // A token file that must not be read unless a test asks for it.
    c.env("HF_HOME", cache.join("no-hf-home"));
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Waits for a child at most `limit`, killing it past that.
fn finish(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("bertology ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn output(mut c: std::process::Command) -> std::process::Output {
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    finish(child, Duration::from_secs(300))
}

fn inspect(hub: &Hub, cache: &Path, model: &str, env: &[(&str, &str)]) -> std::process::Output {
    output(run(
        &hub.url,
        cache,
        &["inspect", "--json", "--device", "cpu", "--model", model],
        env,
    ))
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_ok(out: &std::process::Output) {
    assert!(out.status.success(), "{}", text(out));
}

/// Every file of the snapshot is a relative link into blobs/ holding the served bytes, and
/// nothing half-downloaded is left.
fn assert_snapshot(repo_dir: &Path, commit: &str, files: &BTreeMap<String, Vec<u8>>) {
    for (name, bytes) in files {
        let pointer = repo_dir.join("snapshots").join(commit).join(name);
        let target =
            std::fs::read_link(&pointer).unwrap_or_else(|e| panic!("{}: {e}", pointer.display()));
        let etag = target.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(target, Path::new("../../blobs").join(&etag), "{name}");
        assert_eq!(&std::fs::read(&pointer).unwrap(), bytes, "{name}");
        if is_lfs(name) {
            assert_eq!(etag, sha256(bytes), "{name}: LFS blobs are named by sha256");
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(repo_dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Copies the cache to `$BERTOLOGY_KEEP_HUB_CACHE/<name>` (links kept as links) when that
/// variable is set, for scripts/reference/check_hub_cache.py.
fn keep_cache(cache: &Path, name: &str) {
    let Some(dest) = std::env::var_os("BERTOLOGY_KEEP_HUB_CACHE") else {
        return;
    };
    let dest = Path::new(&dest).join(name);
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::create_dir_all(&dest).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", cache.display()))
        .arg(&dest)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn eval_downloads_the_model_then_a_second_run_asks_nothing() {
    let hub = model_hub();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let eval = |model: &str, out: &str| {
        let out_dir = tmp.path().join(out);
        let o = output(run(
            &hub.url,
            &cache,
            &[
                "eval",
                "--task",
                "mrpc",
                "--device",
                "cpu",
                "--data-subset",
                "16",
                "--max-seq-length",
                "32",
                "--model",
                model,
                "--output-dir",
                out_dir.to_str().unwrap(),
            ],
            &[],
        ));
        assert_ok(&o);
        serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(out_dir.join("eval.json")).unwrap(),
        )
        .unwrap()
    };
    let first = eval("org/tiny-bert", "first");
    let asked = hub.requests();
    // One listing, a HEAD per file, a GET per file (the weights from LFS storage).
    assert_eq!(asked.len(), 9, "{asked:#?}");
    assert!(asked
        .iter()
        .any(|r| r.method == "GET" && r.path.starts_with("/lfs/")));
    assert!(asked.iter().all(|r| r.auth.is_none()), "no token was set");
    let repo_dir = cache.join("models--org--tiny-bert");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    assert_snapshot(&repo_dir, COMMIT, &tiny_bert_files());

    let second = eval("org/tiny-bert", "second");
    assert_eq!(
        hub.requests().len(),
        asked.len(),
        "the second run asked the hub"
    );
    assert_eq!(first["metrics"], second["metrics"]);
    assert_eq!(first["examples"], 16);
    // The same model as the local folder gives the same answers.
    let local_dir = tiny_bert_for_mrpc(tmp.path());
    let local = eval(local_dir.to_str().unwrap(), "local");
    assert_eq!(first["metrics"], local["metrics"]);
    keep_cache(&cache, "eval");
}

#[test]
fn tags_and_commits_as_revisions() {
    let hub = model_hub();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let out = inspect(&hub, &cache, "org/tiny-bert@v1.0", &[]);
    assert_ok(&out);
    let repo_dir = cache.join("models--org--tiny-bert");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/v1.0")).unwrap(),
        TAG_COMMIT
    );
    assert_snapshot(&repo_dir, TAG_COMMIT, &tiny_bert_files());
    let asked = hub.requests().len();
    // A commit: no refs/ file, and the blobs of the tag are reused (same bytes, same ETags).
    let out = inspect(&hub, &cache, &format!("org/tiny-bert@{COMMIT}"), &[]);
    assert_ok(&out);
    assert!(!repo_dir.join("refs").join(COMMIT).exists());
    assert_snapshot(&repo_dir, COMMIT, &tiny_bert_files());
    let gets = hub.requests()[asked..]
        .iter()
        .filter(|r| r.method == "GET" && !r.path.starts_with("/api/"))
        .count();
    assert_eq!(gets, 0, "blobs already cached were fetched again");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["model"],
        repo_dir
            .join("snapshots")
            .join(COMMIT)
            .display()
            .to_string()
    );
    keep_cache(&cache, "revisions");
}

/// The tiny BERT split into two shards and an index, with a PyTorch copy beside them.
fn sharded_files() -> BTreeMap<String, Vec<u8>> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_bert_for_mrpc(tmp.path());
    let tensors = tch::Tensor::read_safetensors(dir.join("model.safetensors")).unwrap();
    let mut files: BTreeMap<String, Vec<u8>> = tiny_bert_files();
    files.remove("model.safetensors");
    let mut weight_map = serde_json::Map::new();
    let half = tensors.len() / 2;
    for (i, part) in [&tensors[..half], &tensors[half..]].into_iter().enumerate() {
        let name = format!("model-{:05}-of-00002.safetensors", i + 1);
        let path = tmp.path().join(&name);
        tch::Tensor::write_safetensors(part, &path).unwrap();
        for (k, _) in part {
            weight_map.insert(k.clone(), name.clone().into());
        }
        files.insert(name, std::fs::read(&path).unwrap());
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    files.insert(
        "model.safetensors.index.json".into(),
        index.to_string().into_bytes(),
    );
    files.insert("pytorch_model.bin".into(), b"not to be downloaded".to_vec());
    files
}

#[test]
fn sharded_weights_come_with_every_shard_and_nothing_else() {
    let files = sharded_files();
    let hub = Hub::start(
        [(
            "models/org/sharded".to_string(),
            repo(Access::Public, files.clone()),
        )]
        .into(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let out = inspect(&hub, &cache, "org/sharded", &[]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["heads_total"], 12);
    let mut fetched = files.clone();
    fetched.remove("pytorch_model.bin");
    assert_snapshot(&cache.join("models--org--sharded"), COMMIT, &fetched);
    assert!(
        hub.requests()
            .iter()
            .all(|r| !r.path.contains("pytorch_model.bin")),
        "the PyTorch copy was fetched"
    );
    let asked = hub.requests().len();
    assert_ok(&inspect(&hub, &cache, "org/sharded", &[]));
    assert_eq!(
        hub.requests().len(),
        asked,
        "a complete sharded snapshot asked the hub"
    );
}

#[test]
fn a_killed_download_leaves_no_truncated_file_and_resumes() {
    let hub = model_hub();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let weights = tiny_bert_files()["model.safetensors"].clone();
    let sha = sha256(&weights);
    let half = weights.len() as u64 / 2;
    *hub.state.stall_at.lock().unwrap() = Some(half);
    let repo_dir = cache.join("models--org--tiny-bert");
    let incomplete = repo_dir.join("blobs").join(format!("{sha}.incomplete"));
    let mut child = run(
        &hub.url,
        &cache,
        &[
            "inspect",
            "--json",
            "--device",
            "cpu",
            "--model",
            "org/tiny-bert",
        ],
        &[],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let t0 = Instant::now();
    while std::fs::metadata(&incomplete).map_or(0, |m| m.len()) < half {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the download never reached half"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "bertology ended before the stall"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let pointer = repo_dir
        .join("snapshots")
        .join(COMMIT)
        .join("model.safetensors");
    assert!(!pointer.exists() && pointer.symlink_metadata().is_err());
    assert!(!repo_dir.join("blobs").join(&sha).exists());
    assert_eq!(std::fs::metadata(&incomplete).unwrap().len(), half);

    *hub.state.stall_at.lock().unwrap() = None;
    let before = hub.requests().len();
    let out = inspect(&hub, &cache, "org/tiny-bert", &[]);
    assert_ok(&out);
    let resumed: Vec<_> = hub.requests()[before..]
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/lfs/"))
        .cloned()
        .collect();
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(
        resumed[0].range.as_deref(),
        Some(format!("bytes={half}-").as_str())
    );
    assert_snapshot(&repo_dir, COMMIT, &tiny_bert_files());
    assert_eq!(sha256(&std::fs::read(&pointer).unwrap()), sha);
    keep_cache(&cache, "resumed");
}

#[test]
fn bytes_that_do_not_match_the_sha256_are_refused() {
    let hub = model_hub();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    hub.state.corrupt.store(true, Ordering::SeqCst);
    let e = one_line_error(&inspect(&hub, &cache, "org/tiny-bert", &[]));
    assert!(
        e.contains("sha256") && e.contains("model.safetensors"),
        "{e}"
    );
    let repo_dir = cache.join("models--org--tiny-bert");
    let blobs: Vec<_> = std::fs::read_dir(repo_dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let weights = sha256(&tiny_bert_files()["model.safetensors"]);
    assert!(
        blobs.iter().all(|b| !b.starts_with(&weights)),
        "a corrupt blob was kept: {blobs:?}"
    );
    assert!(!repo_dir
        .join("snapshots")
        .join(COMMIT)
        .join("model.safetensors")
        .exists());
    hub.state.corrupt.store(false, Ordering::SeqCst);
    assert_ok(&inspect(&hub, &cache, "org/tiny-bert", &[]));
}

#[test]
fn the_token_is_sent_as_a_bearer_header_and_never_printed() {
    let hub = model_hub();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let out = inspect(&hub, &cache, "org/private", &[("HF_TOKEN", TOKEN)]);
    assert_ok(&out);
    assert!(!text(&out).contains(TOKEN));
    let to_hub: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| !r.path.starts_with("/lfs/"))
        .collect();
    assert!(!to_hub.is_empty());
    for r in &to_hub {
        assert_eq!(
            r.auth.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{r:?}"
        );
    }
    // The token file `huggingface-cli login` writes, under $HF_HOME.
    let home = tmp.path().join("hf-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("token"), format!("{TOKEN}\n")).unwrap();
    let out = inspect(
        &hub,
        &tmp.path().join("hub2"),
        "org/gated",
        &[("HF_HOME", home.to_str().unwrap())],
    );
    assert_ok(&out);
    assert!(!text(&out).contains(TOKEN));
}

#[test]
fn refusals_and_failures_are_one_line_each() {
    let hub = model_hub();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let error = |model: &str, env: &[(&str, &str)]| {
        let out = inspect(&hub, &cache, model, env);
        let e = one_line_error(&out);
        assert!(!e.contains(TOKEN), "{e}");
        e
    };
    let e = error("org/private", &[]);
    assert!(
        e.contains("401") && e.contains("HF_TOKEN") && e.contains("org/private"),
        "{e}"
    );
    let e = error("org/gated", &[("HF_TOKEN", "hf_not_the_right_one")]);
    assert!(
        e.contains("403") && e.contains("gated") && e.contains("HF_TOKEN"),
        "{e}"
    );
    let e = error("org/gated", &[]);
    assert!(e.contains("gated") && e.contains("HF_TOKEN"), "{e}");
    let e = error("org/absent", &[]);
    assert!(
        e.contains("404") && e.contains("no such repository") && e.contains("org/absent"),
        "{e}"
    );
    let e = error("org/tiny-bert@no-such-branch", &[]);
    assert!(e.contains("no revision no-such-branch"), "{e}");
    let e = error("org/ghost", &[]);
    assert!(
        e.contains("404") && e.contains("no file tokenizer.json"),
        "{e}"
    );
    let before = hub.requests().len();
    let e = error("org/pickles", &[]);
    assert!(
        e.contains("pytorch_model.bin")
            && e.contains("save_pretrained")
            && e.contains("safe_serialization=True"),
        "{e}"
    );
    assert_eq!(
        hub.requests().len(),
        before + 1,
        "only the listing before refusing"
    );
    let e = error("org/tiny-bert", &[("HF_HUB_OFFLINE", "1")]);
    assert!(
        e.contains("HF_HUB_OFFLINE") && e.contains("models--org--tiny-bert"),
        "{e}"
    );
    assert_eq!(hub.requests().len(), before + 1, "offline asked the hub");

    // Nobody listening.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = output(run(
        &dead,
        &cache,
        &["inspect", "--device", "cpu", "--model", "org/tiny-bert"],
        &[("HF_TOKEN", TOKEN)],
    ));
    let e = one_line_error(&out);
    assert!(
        e.contains("cannot reach")
            && e.contains("connection refused")
            && e.contains("HF_HUB_OFFLINE=1")
            && e.contains(cache.to_str().unwrap())
            && !e.contains(TOKEN),
        "{e}"
    );
}

#[test]
fn dataset_parquet_files_for_a_config_else_from_the_converted_branch() {
    use bertology::hub::{dataset, Client, Settings};
    let files = |names: &[(&str, &[u8])]| -> Files {
        Arc::new(
            names
                .iter()
                .map(|(n, b)| (n.to_string(), b.to_vec()))
                .collect(),
        )
    };
    let main = files(&[
        ("README.md", b"# tiny"),
        (
            "plain/train-00000-of-00001.parquet",
            b"PAR1 train rows PAR1",
        ),
        ("plain/test-00000-of-00001.parquet", b"PAR1 test rows PAR1"),
        ("other.csv", b"a,b"),
    ]);
    let converted = files(&[
        ("plain/train/0000.parquet", b"PAR1 converted plain PAR1"),
        ("csv/train/0000.parquet", b"PAR1 converted csv PAR1"),
    ]);
    let repo = Repo {
        access: Access::Public,
        revisions: [
            ("main".to_string(), (COMMIT.to_string(), main.clone())),
            (COMMIT.to_string(), (COMMIT.to_string(), main.clone())),
            (
                "refs/convert/parquet".to_string(),
                (CONVERTED.to_string(), converted.clone()),
            ),
            (
                CONVERTED.to_string(),
                (CONVERTED.to_string(), converted.clone()),
            ),
        ]
        .into(),
        ghost: vec![],
    };
    let hub = Hub::start([("datasets/org/tiny-data".to_string(), repo)].into());
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let client = Client::new(Settings::new(&hub.url, cache.clone()), true);
    let repo_dir = cache.join("datasets--org--tiny-data");

    let got = dataset::parquet_files(&client, "org/tiny-data", "main", "plain").unwrap();
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    assert_eq!(
        got,
        vec![
            snapshot.join("plain/test-00000-of-00001.parquet"),
            snapshot.join("plain/train-00000-of-00001.parquet"),
        ]
    );
    for p in &got {
        let name = p.strip_prefix(&snapshot).unwrap().to_str().unwrap();
        assert_eq!(std::fs::read(p).unwrap(), main[name]);
        let link = std::fs::read_link(p).unwrap();
        assert!(link.starts_with("../../../blobs"), "{}", link.display());
    }
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    assert!(hub
        .requests()
        .iter()
        .all(|r| !r.path.contains("other.csv") && !r.path.contains("README")));

    // A config only the converted branch has.
    let got = dataset::parquet_files(&client, "org/tiny-data", "main", "csv").unwrap();
    let snapshot = repo_dir.join("snapshots").join(CONVERTED);
    assert_eq!(got, vec![snapshot.join("csv/train/0000.parquet")]);
    assert_eq!(
        std::fs::read(&got[0]).unwrap(),
        converted["csv/train/0000.parquet"]
    );
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/refs/convert/parquet")).unwrap(),
        CONVERTED
    );
    assert!(hub
        .requests()
        .iter()
        .any(|r| r.path == "/api/datasets/org/tiny-data/revision/refs%2Fconvert%2Fparquet"));

    // Offline: the same files from the cache, and no request.
    let asked = hub.requests().len();
    let offline = Client::new(
        Settings::new(&hub.url, cache.clone()).with_cache(cache.clone(), true),
        true,
    );
    let again = dataset::parquet_files(&offline, "org/tiny-data", "main", "csv").unwrap();
    assert_eq!(again, got);
    assert_eq!(hub.requests().len(), asked);

    let e = dataset::parquet_files(&client, "org/tiny-data", "main", "absent")
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent") && e.contains("csv, plain"), "{e}");
    let e = dataset::parquet_files(&client, "org/nothing", "main", "plain")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("404") && e.contains("--dataset org/nothing"),
        "{e}"
    );
    keep_cache(&cache, "dataset");
}

/// Needs a small filesystem, e.g. `mount -t tmpfs -o size=64k tmpfs /tmp/tinyfs`, named by
/// BERTOLOGY_SMALL_FS; the weights (103 KiB) do not fit.
#[test]
#[ignore = "needs BERTOLOGY_SMALL_FS=DIR, a filesystem smaller than 100 KiB"]
fn a_full_disk_is_one_line_and_leaves_no_blob() {
    let small = std::env::var_os("BERTOLOGY_SMALL_FS").expect("BERTOLOGY_SMALL_FS");
    let cache = Path::new(&small).join(format!("hub-{}", std::process::id()));
    let hub = model_hub();
    let e = one_line_error(&inspect(&hub, &cache, "org/tiny-bert", &[]));
    let repo_dir = cache.join("models--org--tiny-bert");
    let weights = sha256(&tiny_bert_files()["model.safetensors"]);
    let blob_written = repo_dir.join("blobs").join(&weights).exists();
    let linked = repo_dir
        .join("snapshots")
        .join(COMMIT)
        .join("model.safetensors")
        .exists();
    std::fs::remove_dir_all(&cache).unwrap();
    assert!(
        e.contains("no space left") && e.contains("HF_HUB_CACHE"),
        "{e}"
    );
    assert!(!blob_written && !linked);
}

// ---- A hostile hub (issue 28, items 1 and 3) ----

/// What the hostile hub answers to one request.
enum Reply {
    /// A whole answer, then the connection closes.
    Full(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// The status, headers and these bytes of the body, then nothing until the test ends.
    Stall(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Bytes that are not HTTP, then the connection closes.
    Raw(Vec<u8>),
    /// Nothing at all until the test ends (a server that accepted and hangs).
    Silent,
}

type Script = Arc<dyn Fn(&str, &str) -> Reply + Send + Sync>;

/// A script from a closure of (method, path).
fn script(f: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Script {
    Arc::new(f)
}

/// A hub on 127.0.0.1 answering every request by a script; at most 64 connections, stopped
/// (and every stalled answer released) when dropped.
struct Hostile {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hostile {
    fn start(script: Script) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let base = url.clone();
        let thread = std::thread::spawn(move || {
            let mut connections = 0;
            while !s.load(Ordering::SeqCst) && connections < 64 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        connections += 1;
                        let (s, script, base) = (s.clone(), script.clone(), base.clone());
                        std::thread::spawn(move || {
                            let _ = answer(stream, &script, &s, &base);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Hostile {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request; `{BASE}` in a header value becomes the server's own URL.
fn answer(
    mut stream: TcpStream,
    script: &Script,
    stop: &AtomicBool,
    base: &str,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head = |code: u16, headers: &[(&str, String)], body_len: Option<usize>| {
        let mut s = format!("HTTP/1.1 {code} {}\r\n", status_text(code));
        for (k, v) in headers {
            s.push_str(&format!("{k}: {}\r\n", v.replace("{BASE}", base)));
        }
        if let Some(n) = body_len {
            s.push_str(&format!("Content-Length: {n}\r\n"));
        }
        s + "Connection: close\r\n\r\n"
    };
    let has_length = |h: &[(&str, String)]| {
        h.iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    };
    match script(method, path) {
        Reply::Full(code, h, body) => {
            let n = (!has_length(&h)).then_some(body.len());
            stream.write_all(head(code, &h, n).as_bytes())?;
            if method != "HEAD" {
                stream.write_all(&body)?;
            }
        }
        Reply::Stall(code, h, body) => {
            stream.write_all(head(code, &h, None).as_bytes())?;
            stream.write_all(&body)?;
            stream.flush()?;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Reply::Raw(bytes) => stream.write_all(&bytes)?,
        Reply::Silent => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    Ok(())
}

fn json_reply(v: serde_json::Value) -> Reply {
    Reply::Full(
        200,
        vec![("Content-Type", "application/json".into())],
        v.to_string().into_bytes(),
    )
}

fn listing(sha: &str, files: &[&str]) -> Reply {
    let siblings: Vec<_> = files
        .iter()
        .map(|f| serde_json::json!({ "rfilename": f }))
        .collect();
    json_reply(serde_json::json!({ "sha": sha, "siblings": siblings }))
}

/// HEAD of a small file as the hub answers it.
fn file_head(etag: &str, size: usize) -> Reply {
    Reply::Full(
        200,
        vec![
            ("X-Repo-Commit", COMMIT.to_string()),
            ("ETag", format!("\"{etag}\"")),
            ("Content-Length", size.to_string()),
        ],
        Vec::new(),
    )
}

const FILES: &[&str] = &["config.json", "model.safetensors", "vocab.txt"];
const ETAG: &str = "0123456789abcdef0123456789abcdef01234567";

/// The hostile cases: (name, script, what the one-line error must say).
fn hostile_cases() -> Vec<(&'static str, Script, &'static [&'static str])> {
    let listing_only = |sha: &'static str, files: &'static [&'static str]| -> Script {
        script(move |_, path| {
            if path.starts_with("/api/") {
                listing(sha, files)
            } else {
                file_head(ETAG, 10)
            }
        })
    };
    let config = br#"{"model_type": "bert"}"#.to_vec();
    let n = config.len();
    vec![
        (
            "a commit that climbs out of the cache",
            listing_only("../../../../victim", FILES),
            &["commit", "../../../../victim", "40 hexadecimal"],
        ),
        (
            "an absolute commit",
            listing_only("/tmp/victim", FILES),
            &["commit", "not a commit hash"],
        ),
        (
            "a commit with a backslash",
            listing_only("..\\..\\victim", FILES),
            &["commit"],
        ),
        (
            "a file name that climbs out",
            listing_only(
                COMMIT,
                &[
                    "config.json",
                    "../../../../victim.json",
                    "model.safetensors",
                ],
            ),
            &["../../../../victim.json", "not a plain relative path"],
        ),
        (
            "an absolute file name",
            listing_only(COMMIT, &["/tmp/victim", "config.json", "model.safetensors"]),
            &["/tmp/victim", "not a plain relative path"],
        ),
        (
            "a file name with a backslash",
            listing_only(COMMIT, &["config.json", "..\\victim", "model.safetensors"]),
            &["not a plain relative path"],
        ),
        (
            "an ETag that is a path",
            script(|_, path: &str| {
                if path.starts_with("/api/") {
                    listing(COMMIT, FILES)
                } else {
                    file_head("../../../../victim", 10)
                }
            }),
            &["ETag", "not a plain name"],
        ),
        (
            "an ETag ending in .incomplete",
            script(|_, path: &str| {
                if path.starts_with("/api/") {
                    listing(COMMIT, FILES)
                } else {
                    file_head("abc.incomplete", 10)
                }
            }),
            &["ETag", "not a plain name"],
        ),
        (
            "a shard name that climbs out",
            script(|_, path: &str| {
                if path.starts_with("/api/") {
                    listing(
                        COMMIT,
                        &[
                            "config.json",
                            "model.safetensors.index.json",
                            "../victim.safetensors",
                        ],
                    )
                } else {
                    file_head(ETAG, 10)
                }
            }),
            &["../victim.safetensors", "not a plain relative path"],
        ),
        (
            "a listing that stalls after its headers",
            script(|_, path: &str| {
                if path.starts_with("/api/") {
                    Reply::Stall(
                        200,
                        vec![("Content-Length", "5000".into())],
                        b"{\"sha\"".to_vec(),
                    )
                } else {
                    file_head(ETAG, 10)
                }
            }),
            &["cannot reach the hub", "HF_HUB_ETAG_TIMEOUT"],
        ),
        (
            "a HEAD that never answers",
            script(|_, path: &str| {
                if path.starts_with("/api/") {
                    listing(COMMIT, FILES)
                } else {
                    Reply::Silent
                }
            }),
            &["HF_HUB_ETAG_TIMEOUT"],
        ),
        (
            "a download that stalls after 100 bytes",
            script(move |method, path: &str| {
                if path.starts_with("/api/") {
                    listing(COMMIT, FILES)
                } else if method == "HEAD" {
                    file_head(ETAG, 1000)
                } else {
                    Reply::Stall(
                        200,
                        vec![("Content-Length", "1000".into())],
                        vec![b' '; 100],
                    )
                }
            }),
            &[
                "config.json",
                "broke off after 100 of 1000 bytes",
                "HF_HUB_DOWNLOAD_TIMEOUT",
                "resume",
            ],
        ),
        (
            "a download cut short",
            script(move |method, path: &str| {
                if path.starts_with("/api/") {
                    listing(COMMIT, FILES)
                } else if method == "HEAD" {
                    file_head(ETAG, 1000)
                } else {
                    Reply::Raw(format!("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{}", " ".repeat(100)).into_bytes())
                }
            }),
            &["config.json", "100 of 1000 bytes", "resume"],
        ),
        (
            "a body longer than the HEAD said",
            script(move |method, path: &str| {
                if path.starts_with("/api/") {
                    listing(COMMIT, FILES)
                } else if method == "HEAD" {
                    file_head(ETAG, n - 5)
                } else {
                    Reply::Full(200, vec![], config.clone())
                }
            }),
            &["config.json", "bytes"],
        ),
        (
            "a redirect loop on HEAD",
            script(|_, path: &str| {
                if path.starts_with("/api/") {
                    listing(COMMIT, FILES)
                } else {
                    Reply::Full(302, vec![("Location", path.to_string())], Vec::new())
                }
            }),
            &["more than 10 redirects"],
        ),
        (
            "a redirect loop on the download",
            script(|method, path: &str| {
                if path.starts_with("/api/") {
                    listing(COMMIT, FILES)
                } else if method == "HEAD" && !path.starts_with("/loop") {
                    Reply::Full(
                        302,
                        vec![
                            ("X-Repo-Commit", COMMIT.into()),
                            ("X-Linked-Etag", format!("\"{}\"", "ab".repeat(32))),
                            ("X-Linked-Size", "10".into()),
                            ("Location", "{BASE}/loop".into()),
                        ],
                        Vec::new(),
                    )
                } else {
                    Reply::Full(302, vec![("Location", "/loop".into())], Vec::new())
                }
            }),
            &["more than 10 redirects"],
        ),
        (
            "a listing that is not JSON",
            script(|_, _: &str| Reply::Full(200, vec![], b"<html>hello</html>".to_vec())),
            &["did not answer with a repository listing"],
        ),
        (
            "an answer that is not HTTP",
            script(|_, _: &str| Reply::Raw(b"\x00\x01\x02garbage\r\n\r\n".to_vec())),
            &["cannot reach the hub"],
        ),
        (
            "a HEAD without an ETag",
            script(|_, path: &str| {
                if path.starts_with("/api/") {
                    listing(COMMIT, FILES)
                } else {
                    Reply::Full(
                        200,
                        vec![
                            ("X-Repo-Commit", COMMIT.into()),
                            ("Content-Length", "10".into()),
                        ],
                        Vec::new(),
                    )
                }
            }),
            &["lacks the ETag header"],
        ),
        (
            "a HEAD with a size that is not a number",
            script(|_, path: &str| {
                if path.starts_with("/api/") {
                    listing(COMMIT, FILES)
                } else {
                    Reply::Full(
                        200,
                        vec![
                            ("X-Repo-Commit", COMMIT.into()),
                            ("ETag", format!("\"{ETAG}\"")),
                            ("X-Linked-Size", "lots".into()),
                            ("Content-Length", "0".into()),
                        ],
                        Vec::new(),
                    )
                }
            }),
            &["Content-Length"],
        ),
    ]
}

/// Every hostile answer ends in one line within the timeouts, and nothing is written outside
/// the cache: the folders around it are as they were, and no file named victim exists.
#[test]
fn a_hostile_hub_writes_nothing_outside_the_cache_and_every_case_is_one_line() {
    let cases = hostile_cases();
    for (name, script, needles) in cases {
        let tmp = tempfile::tempdir().unwrap();
        // Deep enough that "../../../../victim" from a snapshot folder stays inside tmp.
        let cache = tmp.path().join("a/b/c/hub");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(tmp.path().join("a/b/keep.txt"), "mine").unwrap();
        let hub = Hostile::start(script);
        let outside = |p: &Path| -> BTreeMap<String, u64> {
            let mut out = BTreeMap::new();
            let mut stack = vec![p.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap().flatten() {
                    let path = e.path();
                    if path.starts_with(&cache) {
                        continue;
                    }
                    let meta = path.symlink_metadata().unwrap();
                    if meta.is_dir() {
                        stack.push(path.clone());
                    }
                    out.insert(
                        path.display().to_string(),
                        meta.len() * u64::from(!meta.is_dir()),
                    );
                }
            }
            out
        };
        let before = outside(tmp.path());
        let child = run(
            &hub.url,
            &cache,
            &["inspect", "--device", "cpu", "--model", "org/evil"],
            &[
                ("HF_HUB_ETAG_TIMEOUT", "1"),
                ("HF_HUB_DOWNLOAD_TIMEOUT", "1"),
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        // A bound on a hang, not a timing: each case needs a second or two.
        let out = finish(child, Duration::from_secs(120));
        let e = one_line_error(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {e}");
        assert!(e.contains("--model org/evil"), "{name}: {e}");
        for n in needles {
            assert!(e.contains(n), "{name}: lacks {n:?}: {e}");
        }
        assert_eq!(
            before,
            outside(tmp.path()),
            "{name}: wrote outside the cache"
        );
        let victims: Vec<_> = walk(tmp.path())
            .into_iter()
            .filter(|p| p.contains("victim"))
            .collect();
        assert!(victims.is_empty(), "{name}: {victims:?}");
        drop(hub);
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(e.path().display().to_string());
        if e.path().symlink_metadata().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// A stalled download fails after HF_HUB_DOWNLOAD_TIMEOUT and leaves what it received in
/// `blobs/<etag>.incomplete`, which the next run resumes with a Range request.
#[test]
fn a_stalled_download_fails_in_one_line_and_resumes() {
    let hub = model_hub();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let weights = tiny_bert_files()["model.safetensors"].clone();
    let sha = sha256(&weights);
    *hub.state.stall_at.lock().unwrap() = Some(100);
    let child = run(
        &hub.url,
        &cache,
        &["inspect", "--device", "cpu", "--model", "org/tiny-bert"],
        &[("HF_HUB_DOWNLOAD_TIMEOUT", "1")],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let out = finish(child, Duration::from_secs(120));
    let e = one_line_error(&out);
    assert!(
        e.contains("model.safetensors")
            && e.contains(&format!("after 100 of {} bytes", weights.len()))
            && e.contains("HF_HUB_DOWNLOAD_TIMEOUT")
            && e.contains("resume"),
        "{e}"
    );
    let incomplete = cache
        .join("models--org--tiny-bert/blobs")
        .join(format!("{sha}.incomplete"));
    assert_eq!(std::fs::metadata(&incomplete).unwrap().len(), 100);
    *hub.state.stall_at.lock().unwrap() = None;
    let before = hub.requests().len();
    assert_ok(&inspect(&hub, &cache, "org/tiny-bert", &[]));
    let ranges: Vec<_> = hub.requests()[before..]
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/lfs/"))
        .map(|r| r.range.clone())
        .collect();
    assert_eq!(ranges, vec![Some("bytes=100-".to_string())]);
    // A timeout that is not a number is one line too.
    let e = one_line_error(&inspect(
        &hub,
        &tmp.path().join("hub2"),
        "org/tiny-bert",
        &[("HF_HUB_ETAG_TIMEOUT", "soon")],
    ));
    assert!(
        e.contains("HF_HUB_ETAG_TIMEOUT") && e.contains("soon"),
        "{e}"
    );
}

/// `--dataset` takes the same checks: a listing whose commit climbs out is refused before
/// anything is written.
#[test]
fn a_dataset_listing_with_a_path_for_a_commit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("a/b/c/hub");
    let hub = Hostile::start(script(|_, path: &str| {
        if path.starts_with("/api/") {
            listing(
                "../../../../victim",
                &["mrpc/validation-00000-of-00001.parquet"],
            )
        } else {
            file_head(&"ab".repeat(32), 10)
        }
    }));
    let client =
        bertology::hub::Client::new(bertology::hub::Settings::new(&hub.url, cache.clone()), true);
    let e = bertology::hub::dataset::parquet_files(&client, "org/evil", "main", "mrpc")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--dataset org/evil") && e.contains("commit"),
        "{e}"
    );
    assert!(walk(tmp.path()).iter().all(|p| !p.contains("victim")));
}
