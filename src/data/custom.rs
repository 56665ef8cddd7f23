//! One's own labelled text (`--data-file`): the text, pair and label columns of a CSV, TSV,
//! JSON Lines or parquet file, and the rules that turn its labels into classes or scores.
//!
//! Labels: integers are class indices; strings are class names, mapped through the model's
//! `label2id` when it has names of its own, else sorted; floats (or any number, for a
//! regression model) are scores. The classes must fit the model's classifier when it has one.
use super::glue::{Example, Label};
use super::spec::TaskSpec;
use super::table::{self, article, Cell, Format, Table};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Which columns hold what.
#[derive(Clone, Debug, PartialEq)]
pub struct Columns {
    pub text: String,
    pub text_pair: Option<String>,
    /// None: the column `label` when the file has one, else no labels.
    pub label: Option<String>,
}

/// A row whose label is not yet known as a class or a score.
#[derive(Clone, Debug, PartialEq)]
pub struct RawExample {
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Option<Cell>,
    /// 1-based row in its file, for messages.
    pub row: usize,
}

/// The rows of one file.
#[derive(Clone, Debug)]
pub struct RawSplit {
    pub file: PathBuf,
    pub label_column: Option<String>,
    pub rows: Vec<RawExample>,
}

/// What the model's config says about its labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelLabels {
    /// Outputs of its classifier, when the checkpoint has one.
    pub outputs: Option<usize>,
    /// Its class names in index order, when they are its own (not LABEL_0.., not 0, 1, ..).
    pub names: Option<Vec<String>>,
    pub regression: bool,
    /// For messages: where the model is.
    pub source: String,
}

impl ModelLabels {
    /// Names from an id2label map, unless they are transformers' defaults.
    pub fn names_from(id2label: &[(i64, String)]) -> Option<Vec<String>> {
        let mut sorted = id2label.to_vec();
        sorted.sort();
        let default = sorted.iter().enumerate().all(|(i, (k, v))| {
            *k == i as i64 && (*v == format!("LABEL_{i}") || *v == i.to_string())
        });
        let contiguous = sorted.iter().enumerate().all(|(i, (k, _))| *k == i as i64);
        (!sorted.is_empty() && contiguous && !default)
            .then(|| sorted.into_iter().map(|(_, v)| v).collect())
    }
}

/// Reads a data file's rows with the given columns.
pub fn read(path: &Path, columns: &Columns) -> Result<RawSplit> {
    let mut t = table::read(path)?;
    let text = t.column(&columns.text, "--text-column")?;
    let pair = columns
        .text_pair
        .as_deref()
        .map(|c| t.column(c, "--text-pair-column"))
        .transpose()?;
    let label = match &columns.label {
        Some(c) => Some(t.column(c, "--label-column")?),
        None => t.columns.iter().position(|c| c == "label"),
    };
    if let Some(l) = label {
        if matches!(Format::of(path)?, Format::Csv | Format::Tsv) {
            type_delimited(&mut t, l);
        }
    }
    let mut rows = Vec::with_capacity(t.rows.len());
    for r in 0..t.rows.len() {
        rows.push(RawExample {
            text_a: t.text(r, text)?,
            text_b: pair.map(|p| t.text(r, p)).transpose()?,
            label: label.map(|l| t.rows[r][l].clone()),
            row: r + 1,
        });
    }
    Ok(RawSplit {
        file: path.to_path_buf(),
        label_column: label.map(|l| t.columns[l].clone()),
        rows,
    })
}

/// A delimited file's label column is all text: integers when every value is one, else
/// numbers when every value is one, else names; empty cells are missing labels.
fn type_delimited(t: &mut Table, col: usize) {
    let values: Vec<&str> = t
        .rows
        .iter()
        .filter_map(|r| match &r[col] {
            Cell::Str(s) if !s.trim().is_empty() => Some(s.trim()),
            _ => None,
        })
        .collect();
    let ints = values.iter().all(|v| v.parse::<i64>().is_ok());
    let floats = values.iter().all(|v| v.parse::<f64>().is_ok());
    for r in &mut t.rows {
        if let Cell::Str(s) = &r[col] {
            let v = s.trim();
            r[col] = if v.is_empty() {
                Cell::Null
            } else if ints {
                Cell::Int(v.parse().unwrap_or_default())
            } else if floats {
                Cell::Float(v.parse().unwrap_or_default())
            } else {
                Cell::Str(v.to_string())
            };
        }
    }
}

impl RawSplit {
    /// Every row labelled, none, or an error naming the first row without a label.
    fn labelled(&self) -> Result<bool> {
        let missing = self
            .rows
            .iter()
            .find(|r| matches!(r.label, None | Some(Cell::Null)));
        let any = self
            .rows
            .iter()
            .any(|r| !matches!(r.label, None | Some(Cell::Null)));
        match (any, missing) {
            (true, Some(r)) => bail!(
                "{}: row {}: no label in column {:?}",
                self.file.display(),
                r.row,
                self.label_column.as_deref().unwrap_or("label")
            ),
            (any, _) => Ok(any),
        }
    }
}

/// The label kind of all splits together, the task it makes, and each split's examples.
pub fn resolve(
    splits: &[&RawSplit],
    model: &ModelLabels,
    metric: Option<&str>,
) -> Result<(TaskSpec, Vec<Vec<Example>>)> {
    let mut labelled = Vec::new();
    for s in splits {
        labelled.push(s.labelled()?);
    }
    // Kinds seen, with the first row of each for messages.
    let (mut text, mut int, mut float) = (None, None, None);
    for s in splits {
        for r in &s.rows {
            let at = || (s.file.clone(), r.row);
            match &r.label {
                None | Some(Cell::Null) => {}
                Some(Cell::Str(_)) => {
                    text.get_or_insert_with(at);
                }
                Some(Cell::Int(_)) => {
                    int.get_or_insert_with(at);
                }
                Some(Cell::Float(_)) => {
                    float.get_or_insert_with(at);
                }
                Some(other) => bail!(
                    "{}: row {}: label column {:?} holds {} {}, expected integers, names or numbers",
                    s.file.display(),
                    r.row,
                    s.label_column.as_deref().unwrap_or("label"),
                    article(other.type_name()),
                    other.type_name()
                ),
            }
        }
    }
    if let (Some((tf, tr)), Some((nf, nr))) = (&text, int.as_ref().or(float.as_ref())) {
        bail!(
            "{}: row {nr}: a number, but {} row {tr} holds a name: the label column mixes names and numbers",
            nf.display(),
            tf.display()
        );
    }
    let regression = float.is_some() || (int.is_some() && model.regression);
    let first_file = splits
        .first()
        .map(|s| s.file.display().to_string())
        .unwrap_or_default();
    let spec = if regression {
        TaskSpec::regression(metric)?
    } else if text.is_some() {
        TaskSpec::classes(class_names(splits, model)?, metric)?
    } else if int.is_some() {
        let n = match (&model.names, model.outputs) {
            (Some(names), _) => names.len(),
            (None, Some(k)) => k,
            (None, None) => class_count(splits)?,
        };
        let names = model
            .names
            .clone()
            .unwrap_or_else(|| (0..n).map(|i| i.to_string()).collect());
        TaskSpec::classes(names, metric)?
    } else {
        // No labels anywhere: predictions only, in the model's classes.
        match (&model.names, model.outputs) {
            (_, Some(1)) if model.regression => TaskSpec::regression(metric)?,
            (Some(names), _) => TaskSpec::classes(names.clone(), metric)?,
            (None, Some(k)) => TaskSpec::classes((0..k).map(|i| i.to_string()).collect(), metric)?,
            (None, None) => bail!(
                "{first_file}: no labels, and the model has no classifier to say what the classes are"
            ),
        }
    };
    if !spec.regression && spec.labels.len() < 2 {
        bail!(
            "{first_file}: only one class ({}); classification needs at least two",
            class_list(&spec.labels)
        );
    }
    if let Some(k) = model.outputs {
        if k != spec.num_outputs() {
            bail!(
                "{first_file}: the data needs {} output{} ({}) but the model {} has {k}",
                spec.num_outputs(),
                if spec.num_outputs() == 1 { "" } else { "s" },
                if spec.regression {
                    "a regression".to_string()
                } else {
                    format!("classes {}", class_list(&spec.labels))
                },
                model.source
            );
        }
    }
    let mut out = Vec::new();
    for s in splits {
        let mut examples = Vec::with_capacity(s.rows.len());
        for r in &s.rows {
            let at = |msg: String| anyhow!("{}: row {}: {msg}", s.file.display(), r.row);
            let label = match &r.label {
                None | Some(Cell::Null) => None,
                Some(Cell::Float(v)) => {
                    // As the model reads it (float32): NaN, infinity or beyond float32's range
                    // would make every metric and the training loss NaN.
                    if !(*v as f32).is_finite() {
                        return Err(at(format!(
                            "label {v:?} in column {:?} is not a finite number (a score must be a real number within float32's range)",
                            s.label_column.as_deref().unwrap_or("label")
                        )));
                    }
                    Some(Label::Score(*v as f32))
                }
                Some(Cell::Int(v)) if regression => Some(Label::Score(*v as f32)),
                Some(Cell::Int(v)) => {
                    if *v < 0 || *v as usize >= spec.labels.len() {
                        return Err(at(format!(
                            "label {v} is outside the classes 0..{} ({})",
                            spec.labels.len() - 1,
                            class_list(&spec.labels)
                        )));
                    }
                    Some(Label::Class(*v))
                }
                Some(Cell::Str(name)) => {
                    let i = spec.labels.iter().position(|l| l == name).ok_or_else(|| {
                        at(format!(
                            "label {name:?} is not one of the model's classes ({})",
                            class_list(&spec.labels)
                        ))
                    })?;
                    Some(Label::Class(i as i64))
                }
                Some(other) => return Err(at(format!("label of type {}", other.type_name()))),
            };
            examples.push(Example {
                text_a: r.text_a.clone(),
                text_b: r.text_b.clone(),
                label,
            });
        }
        out.push(examples);
    }
    Ok((spec, out))
}

/// Class names for text labels: the model's own, else the data's, sorted.
fn class_names(splits: &[&RawSplit], model: &ModelLabels) -> Result<Vec<String>> {
    if model.regression {
        bail!(
            "{}: text labels, but the model {} is a regression (one output)",
            splits[0].file.display(),
            model.source
        );
    }
    if let Some(names) = &model.names {
        return Ok(names.clone());
    }
    let set: BTreeSet<&str> = splits
        .iter()
        .flat_map(|s| s.rows.iter())
        .filter_map(|r| match &r.label {
            Some(Cell::Str(s)) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    Ok(set.into_iter().map(str::to_string).collect())
}

/// The most classes integer labels may make: a classifier this wide is already far more than
/// any data file here trains.
pub const MAX_CLASSES: usize = 1 << 16;

/// The class count of integer labels on a model without a classifier: the largest label + 1,
/// refused (naming its row) before anything is sized by it when the data cannot support it —
/// more than `MAX_CLASSES`, or more than ten times the labelled examples (every class should
/// have examples; a label of 10^5 among ten rows is a typo or a score column).
fn class_count(splits: &[&RawSplit]) -> Result<usize> {
    let ints = || {
        splits.iter().flat_map(|s| {
            s.rows.iter().filter_map(move |r| match r.label {
                Some(Cell::Int(v)) => Some((s, r.row, v)),
                _ => None,
            })
        })
    };
    if let Some((s, row, v)) = ints().find(|(_, _, v)| *v < 0) {
        bail!(
            "{}: row {row}: label {v} is negative; integer labels are class indices 0..N-1",
            s.file.display()
        );
    }
    let examples = ints().count();
    let Some((s, row, max)) = ints().max_by_key(|(_, _, v)| *v) else {
        return Ok(1);
    };
    let bound = MAX_CLASSES.min(10 * examples.max(10));
    if max as u64 >= bound as u64 {
        bail!(
            "{}: row {row}: label {max} would make {} classes for {examples} labelled example{}; integer labels are class indices 0..N-1 (at most {bound} classes here: ten times the examples, and never more than {MAX_CLASSES})",
            s.file.display(),
            (max as u64).saturating_add(1),
            if examples == 1 { "" } else { "s" }
        );
    }
    Ok(max as usize + 1)
}

/// Splits one file's rows into train and dev: every k-th row goes to dev, so the split is the
/// same on every run and keeps the file's mix of labels.
pub fn hold_out(split: &RawSplit, fraction: f64) -> Result<(RawSplit, RawSplit)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        bail!("--dev-fraction {fraction}: expected a fraction in (0, 1)");
    }
    let n = split.rows.len();
    let dev_n = ((n as f64) * fraction).round() as usize;
    if dev_n == 0 || dev_n == n {
        bail!(
            "{}: {n} rows are too few to hold out --dev-fraction {fraction} for dev (pass --dev-file)",
            split.file.display()
        );
    }
    let step = n as f64 / dev_n as f64;
    let dev_rows: BTreeSet<usize> = (0..dev_n)
        .map(|i| ((i as f64 + 0.5) * step) as usize)
        .collect();
    let (mut train, mut dev) = (split.clone(), split.clone());
    train.rows.clear();
    dev.rows.clear();
    for (i, r) in split.rows.iter().enumerate() {
        if dev_rows.contains(&i) {
            dev.rows.push(r.clone());
        } else {
            train.rows.push(r.clone());
        }
    }
    Ok((train, dev))
}

/// Class names for an error line: a few, each cut short (a text column taken for labels has
/// as many classes as rows, and a name may hold a line break).
fn class_list(labels: &[String]) -> String {
    let short = |l: &String| {
        let one_line = l.replace(['\n', '\r'], " ");
        match one_line.char_indices().nth(40) {
            Some((i, _)) => format!("{}…", &one_line[..i]),
            None => one_line,
        }
    };
    let mut s = labels
        .iter()
        .take(6)
        .map(short)
        .collect::<Vec<_>>()
        .join(", ");
    if labels.len() > 6 {
        s += &format!(" and {} more", labels.len() - 6);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(labels: &[Cell]) -> RawSplit {
        RawSplit {
            file: "d.csv".into(),
            label_column: Some("label".into()),
            rows: labels
                .iter()
                .enumerate()
                .map(|(i, l)| RawExample {
                    text_a: format!("t{i}"),
                    text_b: None,
                    label: Some(l.clone()),
                    row: i + 1,
                })
                .collect(),
        }
    }

    fn s(v: &str) -> Cell {
        Cell::Str(v.into())
    }

    #[test]
    fn names_sorted_or_through_the_model() {
        let d = split(&[s("pos"), s("neg"), s("neutral")]);
        let (spec, ex) = resolve(&[&d], &ModelLabels::default(), None).unwrap();
        assert_eq!(spec.labels, ["neg", "neutral", "pos"]);
        assert_eq!(ex[0][0].label, Some(Label::Class(2)));
        let model = ModelLabels {
            outputs: Some(3),
            names: Some(vec!["pos".into(), "neg".into(), "neutral".into()]),
            ..Default::default()
        };
        let (spec, ex) = resolve(&[&d], &model, None).unwrap();
        assert_eq!(spec.labels[0], "pos");
        assert_eq!(ex[0][0].label, Some(Label::Class(0)));
        let two = ModelLabels {
            outputs: Some(2),
            ..Default::default()
        };
        let e = resolve(&[&d], &two, None).unwrap_err().to_string();
        assert!(e.contains("needs 3 outputs") && e.contains("has 2"), "{e}");
    }

    #[test]
    fn integers_floats_and_mixtures() {
        let d = split(&[Cell::Int(0), Cell::Int(2)]);
        let (spec, _) = resolve(&[&d], &ModelLabels::default(), None).unwrap();
        assert_eq!(spec.labels, ["0", "1", "2"]);
        let two = ModelLabels {
            outputs: Some(2),
            ..Default::default()
        };
        let e = resolve(&[&d], &two, None).unwrap_err().to_string();
        assert!(
            e.contains("row 2") && e.contains("outside the classes 0..1"),
            "{e}"
        );
        let f = split(&[Cell::Float(0.5), Cell::Int(3)]);
        let (spec, ex) = resolve(&[&f], &ModelLabels::default(), Some("spearmanr")).unwrap();
        assert!(spec.regression && spec.metric == "spearmanr");
        assert_eq!(ex[0][1].label, Some(Label::Score(3.0)));
        let m = split(&[s("a"), Cell::Int(1)]);
        assert!(resolve(&[&m], &ModelLabels::default(), None)
            .unwrap_err()
            .to_string()
            .contains("mixes names and numbers"));
    }

    #[test]
    fn default_label_maps_and_hold_out() {
        assert_eq!(
            ModelLabels::names_from(&[(0, "LABEL_0".into()), (1, "LABEL_1".into())]),
            None
        );
        assert_eq!(
            ModelLabels::names_from(&[(1, "pos".into()), (0, "neg".into())]),
            Some(vec!["neg".into(), "pos".into()])
        );
        let d = split(&(0..10).map(|i| Cell::Int(i % 2)).collect::<Vec<_>>());
        let (train, dev) = hold_out(&d, 0.2).unwrap();
        assert_eq!((train.rows.len(), dev.rows.len()), (8, 2));
        assert!(hold_out(&split(&[Cell::Int(0)]), 0.2).is_err());
    }
}
