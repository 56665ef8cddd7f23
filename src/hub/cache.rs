//! One repository's folder in the hub cache, as huggingface_hub writes it:
//! `blobs/<etag>` holds each file's bytes once, `snapshots/<commit>/<path>` are relative
//! symlinks to them, `refs/<revision>` names the commit a branch or tag pointed to.
use super::{is_commit_hash, RepoType};
use anyhow::{bail, Context, Result};
use std::path::{Component, Path, PathBuf};

pub struct RepoCache {
    cache_dir: PathBuf,
    folder_name: String,
}

impl RepoCache {
    pub fn new(cache_dir: &Path, kind: RepoType, id: &str) -> Self {
        RepoCache {
            cache_dir: cache_dir.to_path_buf(),
            folder_name: format!("{}--{}", kind.cache_prefix(), id.replace('/', "--")),
        }
    }

    /// `<cache>/models--ORG--NAME`.
    pub fn path(&self) -> PathBuf {
        self.cache_dir.join(&self.folder_name)
    }

    /// The commit a revision stands for, as far as the cache knows: a commit hash stands for
    /// itself, a branch or tag for what its `refs/` file says.
    pub fn commit_for(&self, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            return Some(revision.to_string());
        }
        let commit = std::fs::read_to_string(self.path().join("refs").join(revision)).ok()?;
        // A refs file names a snapshot folder: one plain name, never a path.
        Some(commit.trim().to_string()).filter(|c| is_plain_name(c))
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.path().join("snapshots").join(commit)
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.path().join("blobs").join(etag)
    }

    /// Where a blob grows while it downloads; huggingface_hub resumes from the same file.
    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.path().join("blobs").join(format!("{etag}.incomplete"))
    }

    /// The lock huggingface_hub takes while it downloads a blob (`<cache>/.locks/...`).
    pub fn lock(&self, etag: &str) -> PathBuf {
        self.cache_dir
            .join(".locks")
            .join(&self.folder_name)
            .join(format!("{etag}.lock"))
    }

    /// Records that `revision` pointed to `commit` (nothing for a revision that is a commit).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        if !is_plain_name(commit) {
            bail!("refusing to record the commit {commit:?} for {revision}: not a plain name");
        }
        let path = self.path().join("refs").join(checked_relative(revision)?);
        if std::fs::read_to_string(&path).is_ok_and(|c| c.trim() == commit) {
            return Ok(());
        }
        let dir = path.parent().expect("refs/ is a parent");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Written aside and renamed: a reader never sees half a commit hash.
        let tmp = dir.join(format!(".{}.tmp{}", file_name(&path), std::process::id()));
        std::fs::write(&tmp, commit)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink, as
    /// huggingface_hub does; replaces whatever was there.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf> {
        if !is_plain_name(commit) || !is_plain_name(etag) {
            bail!(
                "refusing to link {file}: commit {commit:?} or ETag {etag:?} is not a plain name"
            );
        }
        let pointer = self.snapshot(commit).join(checked_relative(file)?);
        let dir = pointer.parent().expect("a snapshot file has a folder");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // From snapshots/<commit>/<file's folders>/ up to the repo folder, then into blobs/.
        let depth = file.split('/').count() + 1;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            file_name(&pointer),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        symlink(&target, &tmp)
            .and_then(|()| std::fs::rename(&tmp, &pointer))
            .with_context(|| format!("cannot link {}", pointer.display()))?;
        Ok(pointer)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One folder or file name: not empty, not `.` or `..`, no separator (`/` or `\\`), no NUL or
/// other control character.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 255
        && !s.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

/// A repository path as a relative path that stays inside the snapshot folder: `/`-separated
/// plain names (no `..`, no absolute path, no backslash, no empty segment).
pub fn checked_relative(file: &str) -> Result<PathBuf> {
    let ok = file.len() <= 4096
        && file.split('/').all(is_plain_name)
        && Path::new(file)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        let mut shown: String = file.chars().take(80).collect();
        if shown.len() < file.len() {
            shown.push('…');
        }
        bail!("the hub named a file {shown:?}, which is not a plain relative path (no .., no leading /, no backslash)");
    }
    Ok(PathBuf::from(file))
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

// huggingface_hub copies the blob where symlinks are not allowed; so do we.
#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    let blob = link.parent().unwrap_or(Path::new(".")).join(target);
    std::fs::copy(blob, link).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_and_refs_name_commits() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoCache::new(dir.path(), RepoType::Dataset, "org/name");
        assert_eq!(repo.path(), dir.path().join("datasets--org--name"));
        std::fs::create_dir_all(repo.path().join("blobs")).unwrap();
        std::fs::write(repo.blob("e1"), b"bytes").unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let p = repo.link(commit, "cfg/train/0000.parquet", "e1").unwrap();
        assert_eq!(
            std::fs::read_link(&p).unwrap(),
            Path::new("../../../../blobs/e1")
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"bytes");
        repo.write_ref("refs/convert/parquet", commit).unwrap();
        assert_eq!(
            repo.commit_for("refs/convert/parquet").as_deref(),
            Some(commit)
        );
        assert!(repo.path().join("refs/refs/convert/parquet").is_file());
        assert_eq!(repo.commit_for(commit).as_deref(), Some(commit));
        assert_eq!(repo.commit_for("main"), None);
        assert!(checked_relative("../x").is_err());
        assert!(checked_relative("/etc/x").is_err());
        for bad in ["a/../b", "a\\..\\b", "..", "a//b", "./a", "", "a/", "a\0b"] {
            assert!(checked_relative(bad).is_err(), "{bad:?}");
        }
        assert!(checked_relative("cfg/train/0000.parquet").is_ok());
        std::fs::create_dir_all(repo.path().join("refs")).unwrap();
        std::fs::write(repo.path().join("refs/evil"), "../../../victim").unwrap();
        assert_eq!(repo.commit_for("evil"), None);
    }
}
