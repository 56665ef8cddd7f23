//! Progress bars on stderr: hidden with --quiet, and when stderr is not a terminal.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub fn bar(len: u64, message: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if quiet || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(message.to_string());
    pb
}

/// A bar that, when stderr is not a terminal (and not --quiet), logs one line per step instead.
pub struct Steps {
    pub bar: ProgressBar,
    log: bool,
    label: String,
}

impl Steps {
    pub fn new(len: u64, label: &str, quiet: bool) -> Self {
        Steps {
            bar: bar(len, label, quiet),
            log: !quiet && !std::io::stderr().is_terminal(),
            label: label.to_string(),
        }
    }

    pub fn step(&self, message: String) {
        if self.log {
            eprintln!("{}: {message}", self.label);
        }
        self.bar.set_message(message);
        self.bar.inc(1);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
