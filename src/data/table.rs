//! Labelled text as people keep it: CSV, TSV, JSON Lines or parquet files, read into one shape
//! (named columns of typed cells) so that column selection and label rules exist only once.
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// One value of a table. Delimited files give only `Str`; JSON and parquet keep their types.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Anything else (lists, maps, dates, bytes): its type name, for the error message.
    Other(&'static str),
}

impl Cell {
    pub fn type_name(&self) -> &'static str {
        match self {
            Cell::Null => "null",
            Cell::Bool(_) => "boolean",
            Cell::Int(_) => "integer",
            Cell::Float(_) => "float",
            Cell::Str(_) => "string",
            Cell::Other(t) => t,
        }
    }
}

/// The file formats, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Tsv,
    Jsonl,
    Parquet,
}

impl Format {
    pub fn of(path: &Path) -> Result<Format> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        Ok(match ext.as_str() {
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "jsonl" | "ndjson" => Format::Jsonl,
            "parquet" => Format::Parquet,
            _ => bail!(
                "{}: unknown data file type {ext:?} (expected .csv, .tsv, .jsonl or .parquet)",
                path.display()
            ),
        })
    }
}

/// Rows of named columns, as read from one file (or a split's shards, concatenated).
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub files: Vec<PathBuf>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// The `huggingface` key of a parquet file's metadata (the `datasets` features), if any.
    pub hf_metadata: Option<serde_json::Value>,
}

impl Table {
    /// The column's index, or an error that names the file and the columns it has.
    pub fn column(&self, name: &str, flag: &str) -> Result<usize> {
        self.columns.iter().position(|c| c == name).ok_or_else(|| {
            anyhow!(
                "{}: no column {name:?}{} (columns: {})",
                self.describe(),
                if flag.is_empty() {
                    String::new()
                } else {
                    format!(" for {flag}")
                },
                self.columns.join(", ")
            )
        })
    }

    /// The file, or the first and last shard.
    pub fn describe(&self) -> String {
        match self.files.as_slice() {
            [] => "(no file)".into(),
            [one] => one.display().to_string(),
            [first, .., last] => format!("{} .. {}", first.display(), last.display()),
        }
    }

    /// Appends another shard with the same columns.
    pub fn append(&mut self, other: Table) -> Result<()> {
        if self.files.is_empty() {
            *self = other;
            return Ok(());
        }
        if other.columns != self.columns {
            bail!(
                "{}: columns {} differ from the first shard's ({})",
                other.describe(),
                other.columns.join(", "),
                self.columns.join(", ")
            );
        }
        self.files.extend(other.files);
        self.rows.extend(other.rows);
        Ok(())
    }

    /// A text cell; anything but a string is an error naming the row and column.
    pub fn text(&self, row: usize, col: usize) -> Result<String> {
        match &self.rows[row][col] {
            Cell::Str(s) => Ok(s.clone()),
            other => bail!(
                "{}: row {}: column {:?} holds {} {}, expected text",
                self.describe(),
                row + 1,
                self.columns[col],
                article(other.type_name()),
                other.type_name()
            ),
        }
    }
}

pub fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Reads a CSV, TSV, JSON Lines or parquet file by its extension.
pub fn read(path: &Path) -> Result<Table> {
    if !path.is_file() {
        bail!("{}: no such file", path.display());
    }
    let table = match Format::of(path)? {
        Format::Csv => read_delimited(path, b',', true)?,
        Format::Tsv => read_delimited(path, b'\t', false)?,
        Format::Jsonl => read_jsonl(path)?,
        Format::Parquet => super::parquet::read(path)?,
    };
    if table.rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(table)
}

/// CSV with standard quoting; TSV with quoting off (text in TSV files carries bare `"`, as
/// GLUE's does). The first line names the columns.
fn read_delimited(path: &Path, delimiter: u8, quoting: bool) -> Result<Table> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(quoting)
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let bad = |e: csv::Error| {
        let at = e
            .position()
            .map(|p| format!("line {}: ", p.line()))
            .unwrap_or_default();
        let why = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields, expected {expected_len} as in the header"),
            csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".into(),
            _ => e.to_string(),
        };
        anyhow!("{}: {at}{why}", path.display())
    };
    let columns: Vec<String> = reader
        .headers()
        .map_err(bad)?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = if i == 0 {
                h.trim_start_matches('\u{feff}')
            } else {
                h
            };
            h.trim().to_string()
        })
        .collect();
    if columns.iter().all(String::is_empty) {
        bail!("{}: empty file (expected a header line)", path.display());
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(bad)?;
        rows.push(record.iter().map(|f| Cell::Str(f.to_string())).collect());
    }
    Ok(Table {
        files: vec![path.to_path_buf()],
        columns,
        rows,
        hf_metadata: None,
    })
}

/// One JSON object per line; the columns are the keys in order of first appearance, and a key
/// a row lacks is null there.
fn read_jsonl(path: &Path) -> Result<Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read as UTF-8 text", path.display()))?;
    let mut columns: Vec<String> = Vec::new();
    let mut objects = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start_matches('\u{feff}');
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow!("{}: line {}: not JSON: {e}", path.display(), i + 1))?;
        let serde_json::Value::Object(map) = value else {
            bail!(
                "{}: line {}: expected a JSON object per line",
                path.display(),
                i + 1
            );
        };
        for k in map.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
        objects.push(map);
    }
    let rows = objects
        .iter()
        .map(|m| {
            columns
                .iter()
                .map(|c| m.get(c).map_or(Cell::Null, json_cell))
                .collect()
        })
        .collect();
    Ok(Table {
        files: vec![path.to_path_buf()],
        columns,
        rows,
        hf_metadata: None,
    })
}

fn json_cell(v: &serde_json::Value) -> Cell {
    use serde_json::Value;
    match v {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cell::Str(s.clone()),
        Value::Array(_) => Cell::Other("list"),
        Value::Object(_) => Cell::Other("object"),
    }
}
