//! `bertology hidden-states`: every layer's hidden states (optionally attentions) of a split
//! or of texts, as safetensors (numpy and torch read them), with the token strings and example
//! indices in a JSON file beside them.
use super::args::GlobalArgs;
use super::input::{load, InputArgs};
use crate::hidden_states::{collect, resolve_layers, Pool, Settings};
use crate::output::{write_json, Staging, HIDDEN_STATES_FILES};
use crate::progress;
use crate::run_files::hidden_states::{HiddenStatesInput, HiddenStatesSummary};
use anyhow::{anyhow, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct HiddenStatesArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Which hidden states: 0 is the embeddings' output, i the output of layer i (1-based, as
    /// transformers' output_hidden_states); default all.
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<usize>,
    /// Keep every token (none), the first token (cls) or the mean over non-padding tokens.
    #[arg(long, value_enum, default_value_t = Pool::None)]
    pub pool: Pool,
    /// Also write every layer's attention probabilities [inputs, heads, seq, seq].
    #[arg(long)]
    pub attentions: bool,
    /// Folder for hidden_states.safetensors and hidden_states.json.
    #[arg(long, default_value = "runs/hidden-states")]
    pub output_dir: PathBuf,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &HiddenStatesArgs, global: &GlobalArgs) -> Result<()> {
    let input = load(&args.input, global)?;
    let net = input.model.net.as_ref();
    let settings = Settings {
        layers: resolve_layers(&args.layers, net.num_layers())?,
        pool: args.pool,
        attentions: args.attentions,
    };
    // The tensors and their description are written together or not at all.
    let staging = Staging::new(&args.output_dir, HIDDEN_STATES_FILES)?;
    let out_dir = args.output_dir.as_path();
    let start = Instant::now();
    let batches = input.batches(args.input.batch_size as usize);
    let bar = progress::bar(input.len() as u64, "hidden states", global.quiet);
    let tensors = collect(net, &batches, input.len(), &settings, Some(&bar))?;
    bar.finish_and_clear();
    let path = out_dir.join("hidden_states.safetensors");
    let staged = staging.dir().join("hidden_states.safetensors");
    crate::output::fail_if_injected(&staged)?;
    for (name, t) in &tensors {
        crate::finite::ensure_finite(t, name, || format!("for {}", path.display()))?;
    }
    tch::Tensor::write_safetensors(&tensors, &staged)
        .map_err(|e| anyhow!("{}: cannot write: {e}", path.display()))?;
    let examples = input
        .encoded
        .iter()
        .enumerate()
        .map(|(row, e)| HiddenStatesInput {
            row,
            index: input.indices[row],
            text_a: input.texts[row].0.clone(),
            text_b: input.texts[row].1.clone(),
            tokens: input.tokenizer.token_strings(&e.ids),
        })
        .collect();
    let mut summary = HiddenStatesSummary {
        model: input.model.dir.display().to_string(),
        source: input.source.clone(),
        inputs: input.len(),
        layers: settings.layers.clone(),
        pool: settings.pool,
        attentions: settings.attentions,
        heads_per_layer: net.heads_per_layer(),
        kept_heads: net.kept_heads(),
        file: path.display().to_string(),
        tensors: tensors.iter().map(|(n, t)| (n.clone(), t.size())).collect(),
        seconds: start.elapsed().as_secs_f64(),
        command: super::args::command_line(),
        examples: Some(examples),
    };
    write_json(&staging.dir().join("hidden_states.json"), &summary)?;
    staging.commit()?;
    if args.json {
        // The tokens of every input stay in the file.
        summary.examples = None;
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        println!(
            "wrote {} ({} inputs, hidden states {:?}, pool {:?}) and hidden_states.json",
            path.display(),
            input.len(),
            settings.layers,
            settings.pool
        );
    }
    Ok(())
}
