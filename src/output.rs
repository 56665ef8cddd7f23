//! Writing result files. A run writes everything into a staging folder next to its
//! `--output-dir` and moves the files into place only when all of them are written, so a run
//! that fails (or is interrupted) leaves the previous results as they were, never half of a
//! new run, and no stray temp files.
//!
//! Policy for an existing `--output-dir`: the files the run writes replace those of the same
//! name; the other files a run of the same family writes (`RUN_FILES` for importance and prune,
//! whose files `report` reads together) are removed, so the folder never mixes two runs; any
//! other file is left alone.
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files of an importance or prune run (report reads them together).
pub const RUN_FILES: &[&str] = &[
    "head_importance.npy",
    "attn_entropy.npy",
    "head_ranks.npy",
    "group_importance.npy",
    "head_mask.npy",
    "neuron_mask.npy",
    "ffn_importance.npy",
    "importance.csv",
    "importance.json",
    "masking_curve.csv",
    "masking_masks.npy",
    "masking_neuron_masks.npy",
    "prune.json",
    "pruned_model",
    "report.md",
    "importance.svg",
    "importance.png",
    "entropy.svg",
    "entropy.png",
    "pruning_curve.svg",
    "pruning_curve.png",
    "ffn_importance.svg",
    "ffn_importance.png",
];
/// What `report` rebuilds in a run folder.
pub const REPORT_FILES: &[&str] = &[
    "report.md",
    "importance.svg",
    "importance.png",
    "entropy.svg",
    "entropy.png",
    "pruning_curve.svg",
    "pruning_curve.png",
    "ffn_importance.svg",
    "ffn_importance.png",
];
/// What `report --compare` writes.
pub const COMPARE_FILES: &[&str] = &["pruning_curve.svg", "pruning_curve.png"];
/// What `eval` writes.
pub const EVAL_FILES: &[&str] = &["eval.json", "predictions.csv"];
/// What `ablate` writes.
pub const ABLATION_FILES: &[&str] = &[
    "ablation.npy",
    "single_head.npy",
    "ablation.csv",
    "ablation.json",
    "ablation.png",
    "ablation.svg",
];
/// What `attention` writes over a split (the pictures of src/report/attention.rs; a
/// statistic that was not measured has none, so an earlier run's must go).
pub const ATTENTION_FILES: &[&str] = &[
    "attention_heads.csv",
    "attention.json",
    "report.md",
    "head_distances.npy",
    "head_map.csv",
    "head_map.svg",
    "head_map.png",
    "attention_first.svg",
    "attention_first.png",
    "attention_separator.svg",
    "attention_separator.png",
    "attention_punctuation.svg",
    "attention_punctuation.png",
    "attention_self.svg",
    "attention_self.png",
    "attention_previous.svg",
    "attention_previous.png",
    "attention_next.svg",
    "attention_next.png",
    "attention_entropy.svg",
    "attention_entropy.png",
    "attention_distance.svg",
    "attention_distance.png",
];
/// What `attention --text` / `--example` writes.
pub const VIEWER_FILES: &[&str] = &["attention.html"];
/// What `hidden-states` writes (the tensors and their description go together).
pub const HIDDEN_STATES_FILES: &[&str] = &["hidden_states.safetensors", "hidden_states.json"];
/// What `finetune` writes: a checkpoint folder.
pub const MODEL_FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "finetune.json",
];

/// Checks before any work that `--output-dir` can be a folder (it may not exist yet).
pub fn check_output_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() {
        bail!("--output-dir: empty path");
    }
    if dir.exists() && !dir.is_dir() {
        bail!("--output-dir {}: exists and is not a folder", dir.display());
    }
    let mut ancestor = dir.parent();
    while let Some(a) = ancestor {
        if a.as_os_str().is_empty() {
            break;
        }
        if a.exists() {
            if !a.is_dir() {
                bail!(
                    "--output-dir {}: {} is not a folder",
                    dir.display(),
                    a.display()
                );
            }
            break;
        }
        ancestor = a.parent();
    }
    Ok(())
}

/// The canonical form of a path that may not exist yet: its nearest existing ancestor
/// canonicalised, with the rest appended.
pub fn canonical(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(p), Some(name)) => {
                rest.push(name.to_os_string());
                cur = p;
            }
            _ => return abs,
        }
    }
}

/// Refuses a run whose outputs would replace one of its inputs: `input` (named by `flag`) is
/// the output folder itself, or lies at a path the run replaces inside it (one of `owned`).
pub fn ensure_not_input(out_dir: &Path, owned: &[&str], flag: &str, input: &Path) -> Result<()> {
    let (out, inp) = (canonical(out_dir), canonical(input));
    if inp == out {
        bail!(
            "--output-dir {} is the folder {flag} reads ({}); the run would overwrite its own input: choose another --output-dir",
            out_dir.display(),
            input.display()
        );
    }
    if let Ok(rel) = inp.strip_prefix(&out) {
        let first = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .unwrap_or_default();
        if owned.contains(&first.as_str()) {
            bail!(
                "{flag} {} lies in --output-dir {} where this run replaces {first}: copy it elsewhere or choose another --output-dir",
                input.display(),
                out_dir.display()
            );
        }
    }
    Ok(())
}

/// The model folders this process has loaded: no run writes into one (`Staging::new` refuses
/// an output folder that is one of them or lies inside one), whatever the command.
static MODEL_INPUTS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Records that this process reads a model from `dir`.
pub fn note_model_input(dir: &Path) {
    let dir = canonical(dir);
    let mut inputs = MODEL_INPUTS.lock().unwrap_or_else(|p| p.into_inner());
    if !inputs.contains(&dir) {
        inputs.push(dir);
    }
}

/// Refuses an output folder that is, or lies inside, a model folder this run reads.
fn ensure_not_a_model_input(target: &Path, shown: &Path) -> Result<()> {
    let inputs = MODEL_INPUTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(model) = inputs.iter().find(|m| target.starts_with(m)) {
        let what = if target == model.as_path() {
            "is the model folder"
        } else {
            "lies inside the model folder"
        };
        bail!(
            "--output-dir {} {what} this run reads ({}); no command writes into its input model: choose another --output-dir",
            shown.display(),
            model.display()
        );
    }
    Ok(())
}

/// A staging folder for one run's outputs; removed on drop unless committed.
pub struct Staging {
    target: PathBuf,
    dir: PathBuf,
    owned: &'static [&'static str],
    done: bool,
}

fn staging_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "output".into());
    format!(".{name}.bertology-staging-")
}

fn sibling(target: &Path, name: String) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(name),
        _ => PathBuf::from(name),
    }
}

/// Whether a process with this id is running (Linux: /proc); elsewhere assume it is.
fn alive(pid: &str) -> bool {
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return true; // not a name we made: leave it
    }
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new("/proc").join(pid).exists()
}

/// The staging folders of runs in progress in this process. A signal handler removes them
/// (`remove_live_staging`); `commit` holds the lock while it moves files, so an interrupt
/// never removes a folder halfway through being moved into place.
static LIVE: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes every staging folder of this process (for an interrupt: the run is ending and its
/// outputs must not be left half-written). Returns with the lock held, so no run can commit
/// after it: the caller exits.
pub fn remove_live_staging() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    let mut dirs = live();
    for dir in dirs.drain(..) {
        // The run may still be writing into it: try again until it is gone.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&dir).is_ok() || !dir.exists() {
                break;
            }
        }
    }
    dirs
}

/// Removes the staging and set-aside folders that runs of dead processes left in `parent`
/// (killed too hard to clean up after themselves), whatever output folder they were for.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with('.') {
            continue;
        }
        let pid = ["bertology-staging-", "bertology-old-"]
            .iter()
            .find_map(|m| name.rsplit_once(m).map(|(_, pid)| pid));
        if let Some(pid) = pid {
            if !alive(pid) && e.path().is_dir() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Staging {
    /// Creates the staging folder next to `target` (creating `target`'s parents), after
    /// removing staging folders that interrupted runs left there.
    pub fn new(target: &Path, owned: &'static [&'static str]) -> Result<Staging> {
        check_output_dir(target)?;
        // `target` may be "." or end in ".."; work on its canonical form.
        let shown = target;
        let target = canonical(target);
        ensure_not_a_model_input(&target, shown)?;
        let parent = target
            .parent()
            .ok_or_else(|| anyhow!("--output-dir {}: cannot be the root", target.display()))?;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("--output-dir {}: cannot create", parent.display()))?;
        let prefix = staging_prefix(&target);
        sweep_stale(parent);
        let mut registry = live();
        let dir = sibling(&target, format!("{prefix}{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("{}: cannot remove", dir.display()))?;
        }
        std::fs::create_dir(&dir).with_context(|| {
            format!(
                "--output-dir {}: cannot create a folder next to it",
                target.display()
            )
        })?;
        registry.push(dir.clone());
        drop(registry);
        Ok(Staging {
            target,
            dir,
            owned,
            done: false,
        })
    }

    /// The staging folder: write every output here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves the staged files into the output folder: replaced and owned files of an earlier
    /// run are set aside first and restored if any move fails.
    pub fn commit(mut self) -> Result<()> {
        fail_if_injected("(commit)")?;
        // Checked again: a model may have been loaded after the staging folder was made.
        ensure_not_a_model_input(&self.target, &self.target)?;
        // Held until the files are in place (or restored): an interrupt waits for it.
        let mut registry = live();
        if !registry.contains(&self.dir) {
            bail!("interrupted: the outputs were not moved into place");
        }
        registry.retain(|d| d != &self.dir);
        if !self.target.exists() {
            std::fs::rename(&self.dir, &self.target).with_context(|| {
                format!(
                    "{}: cannot move the outputs into place",
                    self.target.display()
                )
            })?;
            self.done = true;
            return Ok(());
        }
        let produced: Vec<std::ffi::OsString> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("{}: cannot list", self.dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        let backup = sibling(
            &self.target,
            staging_prefix(&self.target).replace("-staging-", "-old-")
                + &std::process::id().to_string(),
        );
        std::fs::create_dir_all(&backup)
            .with_context(|| format!("{}: cannot create", backup.display()))?;
        let mut old: Vec<std::ffi::OsString> = self.owned.iter().map(Into::into).collect();
        old.extend(produced.iter().cloned());
        old.sort();
        old.dedup();
        let mut set_aside = Vec::new();
        let mut moved_in = Vec::new();
        let result = (|| -> Result<()> {
            for name in &old {
                let p = self.target.join(name);
                if p.symlink_metadata().is_ok() {
                    std::fs::rename(&p, backup.join(name))
                        .with_context(|| format!("{}: cannot move aside", p.display()))?;
                    set_aside.push(name.clone());
                }
            }
            for name in &produced {
                let to = self.target.join(name);
                std::fs::rename(self.dir.join(name), &to)
                    .with_context(|| format!("{}: cannot move into place", to.display()))?;
                moved_in.push(name.clone());
            }
            Ok(())
        })();
        if let Err(e) = result {
            for name in &moved_in {
                let _ = std::fs::rename(self.target.join(name), self.dir.join(name));
            }
            for name in &set_aside {
                let _ = std::fs::rename(backup.join(name), self.target.join(name));
            }
            let _ = std::fs::remove_dir_all(&backup);
            return Err(e);
        }
        self.done = true;
        let _ = std::fs::remove_dir_all(&backup);
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let mut registry = live();
            registry.retain(|d| d != &self.dir);
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Test hook: `BERTOLOGY_TEST_FAIL_WRITE=NAME` makes writing the file NAME fail as a full disk
/// would (`(commit)` fails the final move), so tests can check what a failed run leaves.
pub fn fail_if_injected(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    if let Some(name) = std::env::var_os("BERTOLOGY_TEST_FAIL_WRITE") {
        let matches = path.file_name().is_some_and(|f| f == name.as_os_str())
            || path.as_os_str() == name.as_os_str();
        if matches {
            bail!(
                "{}: cannot write: No space left on device (simulated by BERTOLOGY_TEST_FAIL_WRITE)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Test hook: `BERTOLOGY_TEST_HOLD_WRITE=NAME` leaves the file NAME as an empty `NAME.tmp`
/// and waits there for ever, as a run interrupted mid-write would be (for signal tests).
fn hold_if_asked(path: &Path) {
    if let Some(name) = std::env::var_os("BERTOLOGY_TEST_HOLD_WRITE") {
        if path.file_name().is_some_and(|f| f == name.as_os_str()) {
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".tmp");
            let _ = std::fs::write(tmp, b"");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    fail_if_injected(path)?;
    hold_if_asked(path);
    write_atomically(path, bytes)
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    write_bytes(path, text.as_bytes())
}

/// Writes rows (first the header) as CSV.
pub fn write_csv(
    path: &Path,
    header: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for row in rows {
        w.write_record(&row)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    write_bytes(path, &bytes)
}

/// Writes a tensor whose NaN entries mark heads that are absent (pruned), as
/// `head_distances.npy` documents; the caller has checked the present heads' values.
pub fn write_npy_with_absent_heads(path: &Path, tensor: &tch::Tensor) -> Result<()> {
    if tensor.isinf().any().int64_value(&[]) != 0 {
        bail!(
            "non-finite values for {} (infinity; nothing was written)",
            path.display()
        );
    }
    let bytes = crate::npy::to_bytes(tensor).with_context(|| path.display().to_string())?;
    write_bytes(path, &bytes)
}

/// Writes a tensor as a standard .npy file (numpy.load reads it).
pub fn write_npy(path: &Path, tensor: &tch::Tensor) -> Result<()> {
    // No output holds NaN or infinity: the run stops instead of writing it.
    crate::finite::ensure_finite(tensor, "values", || {
        format!("for {} (nothing was written)", path.display())
    })?;
    let bytes = crate::npy::to_bytes(tensor).with_context(|| path.display().to_string())?;
    write_bytes(path, &bytes)
}

/// Writes a file through a temp file and a rename, so readers never see half of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot rename into place", path.display()))
}

/// Size and FNV-1a hash of a file, recorded in a run's summary so `report` can tell the
/// run's own files from files of another run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub bytes: u64,
    /// 16 hex digits.
    pub fnv1a64: String,
}

/// A summary's "outputs": file name -> fingerprint.
pub type Fingerprints = BTreeMap<String, Fingerprint>;

/// Size and hash of each file in `names` that `dir` holds, for the run's summary.
pub fn fingerprints(dir: &Path, names: &[&str]) -> Result<Fingerprints> {
    let mut map = Fingerprints::new();
    for name in names {
        let p = dir.join(name);
        if p.is_file() {
            map.insert(name.to_string(), fingerprint(&p)?);
        }
    }
    Ok(map)
}

pub fn fingerprint(path: &Path) -> Result<Fingerprint> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(Fingerprint {
        bytes: bytes.len() as u64,
        fnv1a64: format!("{:016x}", fnv1a64(&bytes)),
    })
}

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// A layers-down, heads-across table of values, for stdout.
pub fn head_table(values: &tch::Tensor, decimals: usize) -> String {
    let rows: Vec<Vec<f64>> = Vec::try_from(values.to_kind(tch::Kind::Double)).unwrap_or_default();
    let heads = rows.first().map_or(0, Vec::len);
    let width = decimals + 4;
    let mut out = format!("{:>6}", "layer");
    for h in 0..heads {
        out += &format!(" {:>width$}", format!("h{h}"));
    }
    out.push('\n');
    for (l, row) in rows.iter().enumerate() {
        out += &format!("{l:>6}");
        for v in row {
            out += &format!(" {v:>width$.decimals$}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                (e.file_name().to_string_lossy().to_string(), text)
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn commit_replaces_owned_files_and_keeps_others() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        for (f, t) in [
            ("prune.json", "old"),
            ("report.md", "old"),
            ("notes.txt", "mine"),
        ] {
            std::fs::write(out.join(f), t).unwrap();
        }
        let s = Staging::new(&out, RUN_FILES).unwrap();
        std::fs::write(s.dir().join("importance.json"), "new").unwrap();
        std::fs::write(s.dir().join("report.md"), "new").unwrap();
        s.commit().unwrap();
        assert_eq!(
            listing(&out),
            vec![
                ("importance.json".into(), "new".into()),
                ("notes.txt".into(), "mine".into()),
                ("report.md".into(), "new".into()),
            ]
        );
        // Nothing but the output folder is left next to it.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
        // A staging folder that is dropped leaves nothing.
        let s = Staging::new(&tmp.path().join("new"), RUN_FILES).unwrap();
        std::fs::write(s.dir().join("prune.json"), "x").unwrap();
        drop(s);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn inputs_inside_the_output_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        std::fs::create_dir_all(out.join("pruned_model")).unwrap();
        assert!(ensure_not_input(&out, RUN_FILES, "--model", &out.join("pruned_model")).is_err());
        assert!(ensure_not_input(&out, MODEL_FILES, "--model", &out).is_err());
        assert!(ensure_not_input(&out, RUN_FILES, "--model", &tmp.path().join("m")).is_ok());
        assert!(ensure_not_input(&out, RUN_FILES, "--head-mask", &out.join("mine.npy")).is_ok());
    }
}
