//! The GLUE tasks in their original TSV layouts, as transformers' GLUE processors read them, and
//! their names and columns in the Hugging Face hub's parquet layout (`nyu-mll/glue`).
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Task {
    Cola,
    #[value(name = "sst-2", alias = "sst2")]
    Sst2,
    Mrpc,
    #[value(name = "sts-b", alias = "stsb")]
    Stsb,
    Qqp,
    Mnli,
    #[value(name = "mnli-mm")]
    MnliMm,
    Qnli,
    Rte,
    Wnli,
    /// The diagnostic set (test only; scored with an MNLI model).
    Ax,
    /// Causal language modelling on --text or --token-ids (GPT, GPT-2).
    Lm,
    /// Masked language modelling on --text or --token-ids (encoders with an MLM head).
    Mlm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    Train,
    Dev,
    Test,
}

impl Split {
    /// The name as typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

/// A label as the file gives it: a class index into the task's label list, or a score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Label {
    Class(i64),
    Score(f32),
}

impl Label {
    pub fn as_f64(self) -> f64 {
        match self {
            Label::Class(c) => c as f64,
            Label::Score(s) => s as f64,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Option<Label>,
}

/// Column layout of one split's file.
struct Layout {
    header: bool,
    /// Fields every row has (None: as many as the header).
    fields: Option<usize>,
    text_a: usize,
    text_b: Option<usize>,
    /// Label column; `usize::MAX` means the last field.
    label: Option<usize>,
}

const LAST: usize = usize::MAX;

impl Task {
    pub const ALL: [Task; 11] = [
        Task::Cola,
        Task::Sst2,
        Task::Mrpc,
        Task::Stsb,
        Task::Qqp,
        Task::Mnli,
        Task::MnliMm,
        Task::Qnli,
        Task::Rte,
        Task::Wnli,
        Task::Ax,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Task::Cola => "cola",
            Task::Sst2 => "sst-2",
            Task::Mrpc => "mrpc",
            Task::Stsb => "sts-b",
            Task::Qqp => "qqp",
            Task::Mnli => "mnli",
            Task::MnliMm => "mnli-mm",
            Task::Qnli => "qnli",
            Task::Rte => "rte",
            Task::Wnli => "wnli",
            Task::Lm => "lm",
            Task::Mlm => "mlm",
            Task::Ax => "ax",
        }
    }

    /// The folder name GLUE's download script uses.
    pub fn folder(self) -> &'static str {
        match self {
            Task::Cola => "CoLA",
            Task::Sst2 => "SST-2",
            Task::Mrpc => "MRPC",
            Task::Stsb => "STS-B",
            Task::Qqp => "QQP",
            Task::Mnli | Task::MnliMm => "MNLI",
            Task::Qnli => "QNLI",
            Task::Rte => "RTE",
            Task::Wnli => "WNLI",
            Task::Lm | Task::Mlm => "",
            Task::Ax => "diagnostic",
        }
    }

    /// Label names in transformers' order; empty for the regression task STS-B.
    pub fn labels(self) -> Vec<String> {
        let names: &[&str] = match self {
            Task::Stsb | Task::Lm | Task::Mlm => &[],
            Task::Mnli | Task::MnliMm | Task::Ax => &["contradiction", "entailment", "neutral"],
            Task::Qnli | Task::Rte => &["entailment", "not_entailment"],
            _ => &["0", "1"],
        };
        names.iter().map(|s| s.to_string()).collect()
    }

    pub fn is_regression(self) -> bool {
        self == Task::Stsb
    }

    /// The task whose fine-tuned model scores this one: AX has no training data and is scored
    /// by MNLI's model; every other task by its own.
    pub fn model_task(self) -> Task {
        if self == Task::Ax {
            Task::Mnli
        } else {
            self
        }
    }

    /// A language-modelling task: raw text instead of a GLUE folder, a loss instead of labels.
    pub fn is_language_model(self) -> bool {
        matches!(self, Task::Lm | Task::Mlm)
    }

    /// Outputs of the classifier: 1 for regression, else the number of labels.
    pub fn num_outputs(self) -> usize {
        if self.is_regression() {
            1
        } else {
            self.labels().len()
        }
    }

    pub fn file_name(self, split: Split) -> &'static str {
        match (self, split) {
            (Task::Ax, _) => "diagnostic.tsv",
            (_, Split::Train) => "train.tsv",
            (Task::Mnli, Split::Dev) => "dev_matched.tsv",
            (Task::Mnli, Split::Test) => "test_matched.tsv",
            (Task::MnliMm, Split::Dev) => "dev_mismatched.tsv",
            (Task::MnliMm, Split::Test) => "test_mismatched.tsv",
            (_, Split::Dev) => "dev.tsv",
            (_, Split::Test) => "test.tsv",
        }
    }

    fn layout(self, split: Split) -> Layout {
        let test = split == Split::Test;
        let pair = |a, b, label| Layout {
            header: true,
            fields: None,
            text_a: a,
            text_b: Some(b),
            label,
        };
        match self {
            Task::Cola if test => Layout {
                header: true,
                fields: Some(2),
                text_a: 1,
                text_b: None,
                label: None,
            },
            Task::Cola => Layout {
                header: false,
                fields: Some(4),
                text_a: 3,
                text_b: None,
                label: Some(1),
            },
            Task::Sst2 if test => Layout {
                header: true,
                fields: None,
                text_a: 1,
                text_b: None,
                label: None,
            },
            Task::Sst2 => Layout {
                header: true,
                fields: None,
                text_a: 0,
                text_b: None,
                label: Some(1),
            },
            Task::Mrpc => pair(3, 4, (!test).then_some(0)),
            Task::Stsb => pair(7, 8, (!test).then_some(LAST)),
            Task::Qqp if test => pair(1, 2, None),
            Task::Qqp => pair(3, 4, Some(5)),
            Task::Mnli | Task::MnliMm => pair(8, 9, (!test).then_some(LAST)),
            Task::Qnli | Task::Rte | Task::Wnli => pair(1, 2, (!test).then_some(LAST)),
            // Never read through a layout (`read` refuses language-model tasks first).
            Task::Lm | Task::Mlm => pair(0, 0, None),
            Task::Ax => pair(1, 2, None),
        }
    }

    /// Reads one split from `dir`; `subset` keeps the first N examples.
    pub fn read(self, dir: &Path, split: Split, subset: Option<usize>) -> Result<Vec<Example>> {
        if self.is_language_model() {
            bail!(
                "--task {} reads --text or --token-ids, not a GLUE folder",
                self.name()
            );
        }
        self.check_split(split)?;
        let path = dir.join(self.file_name(split));
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "{}: cannot read the {} {} file",
                path.display(),
                self.name(),
                split.name()
            )
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let bad = e.utf8_error().valid_up_to();
            let before = &e.as_bytes()[..bad];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = bad - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
            anyhow!(
                "{}: line {line}, column {column}: not UTF-8 text (byte 0x{:02x}); GLUE files are UTF-8",
                path.display(),
                e.as_bytes()[bad]
            )
        })?;
        let examples = self
            .parse(&text, split)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(match subset {
            Some(n) => examples.into_iter().take(n).collect(),
            None => examples,
        })
    }

    /// Parses a file's text. Quoting is off: GLUE sentences contain bare `"` characters.
    pub fn parse(self, text: &str, split: Split) -> Result<Vec<Example>> {
        let layout = self.layout(split);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let labels = self.labels();
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let mut expected = layout.fields;
        // The columns this layout reads: a file of another task has too few of them.
        let needed = [Some(layout.text_a), layout.text_b, layout.label]
            .into_iter()
            .flatten()
            .filter(|&c| c != LAST)
            .max()
            .map_or(1, |c| c + 1);
        if layout.header {
            let (_, header) = lines
                .next()
                .ok_or_else(|| anyhow!("empty file (expected a header line)"))?;
            let columns = header.split('\t').count();
            if columns < needed {
                bail!(
                    "line 1: the header has {columns} tab-separated columns but a {} {} file has at least {needed} (is this the {} file?)",
                    self.name(),
                    split.name(),
                    self.folder()
                );
            }
            expected.get_or_insert(columns);
        }
        let mut out = Vec::new();
        for (i, line) in lines {
            let n = i + 1;
            let fields: Vec<&str> = line.split('\t').collect();
            if let Some(want) = expected {
                if fields.len() != want {
                    bail!(
                        "line {n}: {} tab-separated fields, expected {want}",
                        fields.len()
                    );
                }
            }
            let field = |col: usize| -> Result<&str> {
                let idx = if col == LAST { fields.len() - 1 } else { col };
                fields
                    .get(idx)
                    .copied()
                    .ok_or_else(|| anyhow!("line {n}: no field {}", idx + 1))
            };
            let label = match layout.label {
                None => None,
                Some(col) => {
                    let raw = field(col)?.trim();
                    Some(if self.is_regression() {
                        let score = raw.parse::<f32>().map_err(|_| {
                            anyhow!(
                                "line {n}: label {raw:?} is not a number (STS-B scores are 0 to 5)"
                            )
                        })?;
                        if !score.is_finite() {
                            bail!(
                                "line {n}: label {raw:?} is not a finite number (STS-B scores are 0 to 5)"
                            );
                        }
                        Label::Score(score)
                    } else {
                        let idx = labels.iter().position(|l| l == raw).ok_or_else(|| {
                            anyhow!(
                                "line {n}: unknown label {raw:?} (expected one of {})",
                                labels.join(", ")
                            )
                        })?;
                        Label::Class(idx as i64)
                    })
                }
            };
            out.push(Example {
                text_a: field(layout.text_a)?.to_string(),
                text_b: layout
                    .text_b
                    .map(|c| field(c).map(str::to_string))
                    .transpose()?,
                label,
            });
        }
        if out.is_empty() {
            bail!("no examples (empty file)");
        }
        Ok(out)
    }
}

impl Task {
    /// AX is only a test set.
    pub fn check_split(self, split: Split) -> Result<()> {
        if self == Task::Ax && split != Split::Test {
            bail!("--task ax has only a test split (pass --split test)");
        }
        Ok(())
    }

    /// The config name in the hub's `nyu-mll/glue`.
    pub fn hub_config(self) -> &'static str {
        match self {
            Task::Sst2 => "sst2",
            Task::Stsb => "stsb",
            Task::MnliMm => "mnli",
            t => t.name(),
        }
    }

    /// The split name in the hub's layout (`--split dev` is `validation`).
    pub fn hub_split(self, split: Split) -> &'static str {
        match (self, split) {
            (_, Split::Train) => "train",
            (Task::Mnli, Split::Dev) => "validation_matched",
            (Task::MnliMm, Split::Dev) => "validation_mismatched",
            (Task::Mnli, Split::Test) => "test_matched",
            (Task::MnliMm, Split::Test) => "test_mismatched",
            (_, Split::Dev) => "validation",
            (_, Split::Test) => "test",
        }
    }

    /// The hub's text columns: the sentence, and the second of a pair.
    pub fn hub_text_columns(self) -> (&'static str, Option<&'static str>) {
        match self {
            Task::Cola | Task::Sst2 => ("sentence", None),
            Task::Mrpc | Task::Stsb | Task::Rte | Task::Wnli => ("sentence1", Some("sentence2")),
            Task::Qqp => ("question1", Some("question2")),
            Task::Mnli | Task::MnliMm | Task::Ax => ("premise", Some("hypothesis")),
            Task::Qnli => ("question", Some("sentence")),
            // Never read from the hub (setup reads --text or --token-ids for them).
            Task::Lm | Task::Mlm => ("text", None),
        }
    }

    /// The hub's ClassLabel names, in the order of its integer labels (which for MNLI and AX
    /// differs from transformers' order: the hub's 0 is entailment, transformers' 0 is
    /// contradiction).
    pub fn hub_label_names(self) -> &'static [&'static str] {
        match self {
            Task::Cola => &["unacceptable", "acceptable"],
            Task::Sst2 => &["negative", "positive"],
            Task::Mrpc => &["not_equivalent", "equivalent"],
            Task::Qqp => &["not_duplicate", "duplicate"],
            Task::Stsb => &[],
            Task::Mnli | Task::MnliMm | Task::Ax => &["entailment", "neutral", "contradiction"],
            Task::Qnli | Task::Rte => &["entailment", "not_entailment"],
            Task::Wnli => &["not_entailment", "entailment"],
            Task::Lm | Task::Mlm => &[],
        }
    }

    /// Our class index for the hub's integer label: by name where the names are ours, else
    /// the same index (binary tasks whose TSV labels are 0 and 1).
    pub fn class_from_hub(self, hub: i64) -> Option<i64> {
        let names = self.hub_label_names();
        let name = names.get(usize::try_from(hub).ok()?)?;
        let ours = self.labels();
        Some(match ours.iter().position(|l| l == name) {
            Some(i) => i as i64,
            None => hub,
        })
    }
}

/// Finds the task's folder: `--data-dir`, else `$GLUE_DIR/<folder>`, else `data/glue/<folder>`
/// in the current directory, then in the tool's home. The error lists every place tried.
pub fn resolve_data_dir(task: Task, explicit: Option<&Path>, home: &Path) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        if dir.is_dir() {
            return Ok(dir.to_path_buf());
        }
        if dir.exists() {
            bail!(
                "--data-dir {}: is a file; expected the {} folder holding {}",
                dir.display(),
                task.name(),
                task.file_name(Split::Dev)
            );
        }
        bail!("--data-dir {}: no such folder", dir.display());
    }
    let mut tried = Vec::new();
    if let Some(glue) = std::env::var_os("GLUE_DIR") {
        tried.push(PathBuf::from(glue).join(task.folder()));
    }
    tried.push(PathBuf::from("data/glue").join(task.folder()));
    tried.push(home.join("data/glue").join(task.folder()));
    if let Some(found) = tried.iter().find(|d| d.is_dir()) {
        return Ok(found.clone());
    }
    bail!(
        "no data folder for {}: tried {} (pass --data-dir or set GLUE_DIR)",
        task.name(),
        tried
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
