use bertology::cli::{Cli, Command};
use bertology::commands;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.global.threads {
        tch::set_num_threads(n as i32);
    }
    let result = match &cli.command {
        Command::Eval(args) => commands::eval::run(args, &cli.global),
        Command::Finetune(args) => commands::finetune::run(args, &cli.global),
        Command::Importance(args) => commands::importance::run(args, &cli.global),
        Command::Prune(args) => commands::prune::run(args, &cli.global),
        Command::Report(args) => commands::report::run(args, &cli.global),
        Command::Inspect(args) => commands::inspect::run(args, &cli.global),
        Command::Attention(args) => commands::attention::run(args, &cli.global),
        Command::HiddenStates(args) => commands::hidden_states::run(args, &cli.global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the whole context chain, outermost first.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
