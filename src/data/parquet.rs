//! Parquet files (as the Hugging Face hub stores datasets) into a `Table`, row by row through
//! the parquet crate's record reader: datasets here are small enough that columnar batches
//! would buy nothing but a much larger build.
use super::table::{Cell, Table};
use anyhow::{anyhow, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use std::path::Path;

pub fn read(path: &Path) -> Result<Table> {
    let corrupt = |e: parquet::errors::ParquetError| {
        anyhow!("{}: not a readable parquet file ({e})", path.display())
    };
    let file =
        std::fs::File::open(path).map_err(|e| anyhow!("{}: cannot open: {e}", path.display()))?;
    let reader = SerializedFileReader::new(file).map_err(corrupt)?;
    let meta = reader.metadata().file_metadata();
    let hf_metadata = match meta
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "huggingface"))
        .and_then(|k| k.value.as_deref())
    {
        Some(v) => Some(serde_json::from_str(v).map_err(|e| {
            anyhow!(
                "{}: the `huggingface` metadata is not JSON: {e}",
                path.display()
            )
        })?),
        None => None,
    };
    let columns: Vec<String> = meta
        .schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let mut rows = Vec::with_capacity(meta.num_rows().max(0) as usize);
    for row in reader.get_row_iter(None).map_err(corrupt)? {
        let row = row.map_err(corrupt)?;
        let cells: Vec<Cell> = row.get_column_iter().map(|(_, f)| cell(f)).collect();
        rows.push(cells);
    }
    Ok(Table {
        files: vec![path.to_path_buf()],
        columns,
        rows,
        hf_metadata,
    })
}

fn cell(f: &Field) -> Cell {
    match f {
        Field::Null => Cell::Null,
        Field::Bool(b) => Cell::Bool(*b),
        Field::Byte(v) => Cell::Int(*v as i64),
        Field::Short(v) => Cell::Int(*v as i64),
        Field::Int(v) => Cell::Int(*v as i64),
        Field::Long(v) => Cell::Int(*v),
        Field::UByte(v) => Cell::Int(*v as i64),
        Field::UShort(v) => Cell::Int(*v as i64),
        Field::UInt(v) => Cell::Int(*v as i64),
        Field::ULong(v) => i64::try_from(*v).map_or(Cell::Other("u64"), Cell::Int),
        Field::Float16(v) => Cell::Float(f64::from(f32::from(*v))),
        Field::Float(v) => Cell::Float(*v as f64),
        Field::Double(v) => Cell::Float(*v),
        Field::Str(s) => Cell::Str(s.clone()),
        Field::Bytes(_) => Cell::Other("binary"),
        Field::Decimal(_) => Cell::Other("decimal"),
        Field::Date(_) => Cell::Other("date"),
        Field::TimeMillis(_) | Field::TimeMicros(_) => Cell::Other("time"),
        Field::TimestampMillis(_) | Field::TimestampMicros(_) => Cell::Other("timestamp"),
        Field::Group(_) => Cell::Other("struct"),
        Field::ListInternal(_) => Cell::Other("list"),
        Field::MapInternal(_) => Cell::Other("map"),
    }
}
