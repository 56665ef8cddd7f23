//! What the data is, whatever file it came from: the class names in classifier order (or a
//! regression score), and the metrics that score predictions. GLUE tasks and custom files both
//! produce one; the pipeline (eval, importance, masking, finetune) sees only this.
use super::glue::Task;
use crate::metrics::{self, Metrics};
use crate::model::{Objective, TaskHead};
use anyhow::{bail, Result};

/// The metrics a custom classification can ask for with --metric.
pub const CLASS_METRICS: [&str; 3] = ["acc", "f1", "mcc"];
/// The metrics a custom regression can ask for with --metric.
pub const SCORE_METRICS: [&str; 2] = ["pearson", "spearmanr"];

#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    /// The GLUE task's name, or "custom".
    pub name: String,
    /// The GLUE task, whose metrics keep transformers' keys (e.g. mnli/acc, acc_and_f1).
    pub glue: Option<Task>,
    /// Class names in classifier order; empty for a regression.
    pub labels: Vec<String>,
    pub regression: bool,
    /// The metric reported as the score and watched by masking and fine-tuning.
    pub metric: String,
}

impl From<Task> for TaskSpec {
    fn from(task: Task) -> TaskSpec {
        TaskSpec {
            name: task.name().to_string(),
            glue: Some(task),
            labels: task.labels(),
            regression: task.is_regression(),
            metric: task.default_metric().to_string(),
        }
    }
}

/// The model's view of a task: its head's objective and labels.
impl From<&TaskSpec> for TaskHead {
    fn from(spec: &TaskSpec) -> TaskHead {
        let objective = match spec.glue {
            Some(Task::Lm) => Objective::CausalLm,
            Some(Task::Mlm) => Objective::MaskedLm,
            _ => Objective::Classification,
        };
        TaskHead {
            name: spec.name.clone(),
            objective,
            labels: spec.labels.clone(),
            regression: spec.regression,
        }
    }
}

impl From<TaskSpec> for TaskHead {
    fn from(spec: TaskSpec) -> TaskHead {
        TaskHead::from(&spec)
    }
}

impl From<Task> for TaskHead {
    fn from(task: Task) -> TaskHead {
        TaskHead::from(&TaskSpec::from(task))
    }
}

impl TaskSpec {
    /// A GLUE task, with its default metric or `metric` (checked against the task's).
    pub fn glue(task: Task, metric: Option<&str>) -> Result<TaskSpec> {
        let mut spec = TaskSpec::from(task);
        if let Some(m) = metric {
            task.check_metric(m)?;
            spec.metric = m.to_string();
        }
        Ok(spec)
    }

    /// Custom classes (names in classifier order); acc unless `metric` says otherwise.
    pub fn classes(labels: Vec<String>, metric: Option<&str>) -> Result<TaskSpec> {
        let metric = metric.unwrap_or("acc");
        if !CLASS_METRICS.contains(&metric) {
            bail!(
                "--metric {metric}: classification labels are scored by {}",
                CLASS_METRICS.join(", ")
            );
        }
        if metric == "f1" && labels.len() != 2 {
            bail!(
                "--metric f1: needs exactly two classes, the data has {} ({})",
                labels.len(),
                labels.join(", ")
            );
        }
        Ok(TaskSpec {
            name: "custom".into(),
            glue: None,
            labels,
            regression: false,
            metric: metric.to_string(),
        })
    }

    /// A custom regression (float labels); pearson unless `metric` says otherwise.
    pub fn regression(metric: Option<&str>) -> Result<TaskSpec> {
        let metric = metric.unwrap_or("pearson");
        if !SCORE_METRICS.contains(&metric) {
            bail!(
                "--metric {metric}: numeric (regression) labels are scored by {}",
                SCORE_METRICS.join(", ")
            );
        }
        Ok(TaskSpec {
            name: "custom".into(),
            glue: None,
            labels: Vec::new(),
            regression: true,
            metric: metric.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn labels(&self) -> Vec<String> {
        self.labels.clone()
    }

    pub fn is_regression(&self) -> bool {
        self.regression
    }

    /// A causal or masked language-model task (--task lm / mlm).
    pub fn is_language_model(&self) -> bool {
        self.glue.is_some_and(|t| t.is_language_model())
    }

    /// Outputs of the classifier: 1 for regression, else the number of classes.
    pub fn num_outputs(&self) -> usize {
        if self.regression {
            1
        } else {
            self.labels.len()
        }
    }

    pub fn default_metric(&self) -> &str {
        &self.metric
    }

    /// Every metric of the predictions. `preds` are class indices; `scores` regression outputs.
    pub fn compute(&self, preds: &[i64], scores: &[f64], labels: &[f64]) -> Metrics {
        if let Some(task) = self.glue {
            return glue_metrics(task, preds, scores, labels);
        }
        let mut m = Metrics::new();
        if self.regression {
            m.insert("pearson".into(), metrics::pearson(scores, labels));
            m.insert("spearmanr".into(), metrics::spearman(scores, labels));
        } else {
            let int_labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
            m.insert("acc".into(), metrics::accuracy(preds, &int_labels));
            m.insert("mcc".into(), metrics::matthews(preds, &int_labels));
            if self.labels.len() == 2 {
                m.insert("f1".into(), metrics::f1(preds, &int_labels));
            }
        }
        m
    }
}

/// What each GLUE task scores (transformers' metric keys), kept beside the task spec so that
/// `metrics` stays plain arithmetic.
impl Task {
    /// The metric the anchor reports for this task by default, and the one masking watches.
    pub fn default_metric(self) -> &'static str {
        match self {
            Task::Cola => "mcc",
            Task::Stsb => "corr",
            Task::Mnli => "mnli/acc",
            Task::MnliMm => "mnli-mm/acc",
            // 1 / mean token loss: higher is better, as every metric masking watches.
            Task::Lm | Task::Mlm => "inverse_loss",
            _ => "acc",
        }
    }

    pub fn metric_names(self) -> &'static [&'static str] {
        match self {
            Task::Cola => &["mcc"],
            Task::Mrpc | Task::Qqp => &["acc", "f1", "acc_and_f1"],
            Task::Stsb => &["pearson", "spearmanr", "corr"],
            Task::Mnli => &["mnli/acc"],
            Task::MnliMm => &["mnli-mm/acc"],
            Task::Lm | Task::Mlm => &["inverse_loss"],
            _ => &["acc"],
        }
    }

    /// Checks a metric name against the task's (every GLUE metric here is higher-is-better).
    pub fn check_metric(self, name: &str) -> Result<()> {
        if !self.metric_names().contains(&name) {
            bail!(
                "--metric {name}: task {} has the metrics {}",
                self.name(),
                self.metric_names().join(", ")
            );
        }
        Ok(())
    }
}

/// Every metric of the task. `preds` are class indices (or scores for STS-B, in `scores`).
pub fn glue_metrics(task: Task, preds: &[i64], scores: &[f64], labels: &[f64]) -> Metrics {
    let mut m = Metrics::new();
    let int_labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    match task {
        Task::Cola => {
            m.insert("mcc".into(), metrics::matthews(preds, &int_labels));
        }
        Task::Mrpc | Task::Qqp => {
            let acc = metrics::accuracy(preds, &int_labels);
            let f = metrics::f1(preds, &int_labels);
            m.insert("acc".into(), acc);
            m.insert("f1".into(), f);
            m.insert("acc_and_f1".into(), (acc + f) / 2.0);
        }
        Task::Stsb => {
            let p = metrics::pearson(scores, labels);
            let s = metrics::spearman(scores, labels);
            m.insert("pearson".into(), p);
            m.insert("spearmanr".into(), s);
            m.insert("corr".into(), (p + s) / 2.0);
        }
        Task::Mnli => {
            m.insert("mnli/acc".into(), metrics::accuracy(preds, &int_labels));
        }
        Task::MnliMm => {
            m.insert("mnli-mm/acc".into(), metrics::accuracy(preds, &int_labels));
        }
        _ => {
            m.insert("acc".into(), metrics::accuracy(preds, &int_labels));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glue_specs_keep_the_task_metrics() {
        let s = TaskSpec::glue(Task::Mrpc, None).unwrap();
        assert_eq!((s.num_outputs(), s.default_metric()), (2, "acc"));
        let m = s.compute(&[1, 0], &[], &[1.0, 1.0]);
        assert!(m.contains_key("acc_and_f1"));
        assert!(TaskSpec::glue(Task::Mrpc, Some("mcc")).is_err());
        assert_eq!(TaskSpec::from(Task::Stsb).num_outputs(), 1);
    }

    #[test]
    fn custom_metrics_by_label_kind() {
        let s = TaskSpec::classes(vec!["a".into(), "b".into(), "c".into()], None).unwrap();
        let m = s.compute(&[0, 1, 2, 2], &[], &[0.0, 1.0, 2.0, 1.0]);
        assert_eq!(m["acc"], 0.75);
        assert!(!m.contains_key("f1"), "f1 only for two classes");
        assert!(TaskSpec::classes(vec!["a".into(), "b".into(), "c".into()], Some("f1")).is_err());
        assert!(TaskSpec::classes(vec!["a".into(), "b".into()], Some("pearson")).is_err());
        let r = TaskSpec::regression(Some("spearmanr")).unwrap();
        assert_eq!(r.num_outputs(), 1);
        let m = r.compute(&[], &[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]);
        assert!((m["spearmanr"] - 1.0).abs() < 1e-12);
        assert!(TaskSpec::regression(Some("acc")).is_err());
    }

    #[test]
    fn task_metrics_and_names() {
        let m = glue_metrics(Task::Mrpc, &[1, 0], &[], &[1.0, 1.0]);
        assert_eq!(m["acc"], 0.5);
        assert!((m["f1"] - 2.0 / 3.0).abs() < 1e-12);
        assert!(Task::Cola.check_metric("mcc").is_ok());
        assert!(Task::Mrpc.check_metric("mcc").is_err());
        assert_eq!(Task::Stsb.default_metric(), "corr");
    }
}
