//! GLUE tasks: reading their TSV files, and turning examples into padded batches; language-model
//! text and token ids (`lm`).
pub mod batch;
pub mod glue;
pub mod lm;
