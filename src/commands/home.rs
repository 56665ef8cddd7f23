//! Where the tool keeps its installed models, and the default model of each task.
use crate::data::glue::Task;
use std::path::PathBuf;

/// Where the tool keeps installed models: $BERTOLOGY_HOME, else the source tree it was built in.
pub fn home_dir() -> PathBuf {
    std::env::var_os("BERTOLOGY_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The installed base model (scripts/setup.sh puts it there).
pub fn base_model_dir() -> PathBuf {
    home_dir().join("models").join("all-MiniLM-L6-v2")
}

/// The installed base model's folder name.
pub const BASE_MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// The default model of a task: the base model fine-tuned on it.
pub fn task_model_dir(task: Task) -> PathBuf {
    fine_tuned_dir(BASE_MODEL_NAME, task)
}

/// Where `finetune` without --output-dir puts model `name` fine-tuned on `task`:
/// `models/<name>-<task>` (AX is scored by the MNLI model).
pub fn fine_tuned_dir(name: &str, task: Task) -> PathBuf {
    let task = task.model_task();
    home_dir()
        .join("models")
        .join(format!("{name}-{}", task.name()))
}
