//! `bertology inspect`: load a model and describe it.
use super::args::{GlobalArgs, InspectArgs};
use super::session::{Fallback, ModelSession};
use anyhow::Result;
use serde_json::json;

pub fn run(args: &InspectArgs, global: &GlobalArgs) -> Result<()> {
    let ModelSession {
        dir, device, model, ..
    } = ModelSession::locate(args.model.as_deref(), Fallback::Base, global)?
        .load_as_saved(args.seed)?;
    let c = &model.config;
    let net = &model.net;
    let heads = net.heads_per_layer();
    let summary = json!({
        "model": dir.display().to_string(),
        "model_type": c.model_type(),
        "architecture": net.hf_class(),
        "layers": net.num_layers(),
        "heads": net.num_heads(),
        "vocab_size": net.vocab_size(),
        "max_positions": net.max_positions(),
        "num_labels": c.num_labels(),
        "heads_per_layer": heads,
        "heads_total": heads.iter().sum::<i64>(),
        "parameters": model.num_parameters(),
        "initialised_not_loaded": model.report.initialised,
        "unexpected_keys": model.report.unexpected,
        "device": format!("{device:?}"),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    if global.quiet {
        return Ok(());
    }
    if let Some(w) = model.init_warning() {
        eprintln!("{w}");
    }
    println!("model       {}", dir.display());
    println!(
        "shape       {} ({}): {} layers x {} heads, vocabulary {}, up to {} tokens",
        net.hf_class(),
        c.model_type(),
        net.num_layers(),
        net.num_heads(),
        net.vocab_size(),
        net.max_positions()
    );
    println!(
        "heads       {} of {} kept; per layer {:?}",
        heads.iter().sum::<i64>(),
        net.num_layers() * net.num_heads(),
        heads
    );
    println!("labels      {}", c.num_labels());
    println!("parameters  {}", model.num_parameters());
    if !model.report.unexpected.is_empty() {
        println!(
            "unused keys {} (e.g. {})",
            model.report.unexpected.len(),
            model.report.unexpected[0]
        );
    }
    Ok(())
}
