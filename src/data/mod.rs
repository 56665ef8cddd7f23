//! GLUE tasks: reading their TSV files, and turning examples into padded batches.
pub mod batch;
pub mod glue;
