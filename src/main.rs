use bertology::cli::{Cli, Command};
use bertology::commands;
use std::process::ExitCode;
use std::sync::Mutex;

/// Exit code of a panic that slipped through (EX_SOFTWARE): a bug, not bad input.
const INTERNAL_ERROR: u8 = 70;

/// The message and place of the last panic, kept by the hook for main to print.
static PANIC: Mutex<Option<String>> = Mutex::new(None);

fn main() -> ExitCode {
    // Panics print nothing themselves (no backtrace); main reports them in one line.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut p) = PANIC.lock() {
            p.get_or_insert(format!("{}{at}", one_line(&msg)));
        }
    }));
    match std::panic::catch_unwind(run) {
        Ok(code) => code,
        Err(_) => {
            let msg = PANIC
                .lock()
                .ok()
                .and_then(|p| p.clone())
                .unwrap_or_else(|| "unknown panic".into());
            // A reader that stopped reading (`bertology ... --json | head`) is no bug: stop
            // quietly, as other command-line tools do.
            if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
                return ExitCode::SUCCESS;
            }
            eprintln!("internal error: {msg}, please report");
            ExitCode::from(INTERNAL_ERROR)
        }
    }
}

/// The first line of a message (libtorch appends C++ backtraces), shortened.
fn one_line(msg: &str) -> String {
    let first = msg
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut s: String = first.chars().take(300).collect();
    if s.len() < first.len() {
        s.push('…');
    }
    s
}

/// On SIGINT, SIGTERM or SIGHUP: remove the staging folders of the runs in progress (their
/// outputs are incomplete) and exit 128 + the signal, as a shell reports it. The handler runs
/// on its own thread (signal-hook), so it may take locks and remove files.
#[cfg(unix)]
fn clean_up_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let name = match sig {
                SIGINT => "SIGINT",
                SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            let _held = bertology::output::remove_live_staging();
            eprintln!("error: interrupted ({name}); the run's outputs were not written");
            // _exit: no atexit handlers or libtorch destructors racing the threads still at work.
            signal_hook::low_level::exit(128 + sig);
        }
    });
}

#[cfg(not(unix))]
fn clean_up_on_signals() {}

/// The command line, with the flags that do not apply to it refused.
fn parse() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let mut matches = Cli::command().try_get_matches()?;
    bertology::cli::check_inapplicable(&matches)?;
    Cli::from_arg_matches_mut(&mut matches)
}

fn run() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    clean_up_on_signals();
    if std::env::var_os("BERTOLOGY_TEST_PANIC").is_some() {
        // A test hook: proves a panic ends in one line and exit code 70.
        panic!("panic requested by BERTOLOGY_TEST_PANIC");
    }
    if let Some(n) = cli.global.threads {
        tch::set_num_threads(n as i32);
    }
    let result = match &cli.command {
        Command::Eval(args) => commands::eval::run(args, &cli.global),
        Command::Ablate(args) => commands::ablate::run(args, &cli.global),
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
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Help and version print as clap prints them; a usage error becomes one line (the problem,
/// and the possible values when clap lists them), exit code 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(e.exit_code() as u8);
    }
    let text = e.render().to_string();
    let mut parts: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() {
            continue;
        }
        parts.push(line.to_string());
    }
    let mut msg = parts.join(" ");
    if !msg.starts_with("error:") {
        msg = format!("error: {msg}");
    }
    eprintln!("{msg}");
    ExitCode::from(2)
}
