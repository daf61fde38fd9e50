//! Progress display: bars on a terminal, plain lines otherwise (CI logs, pipes).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    multi: MultiProgress,
    interactive: bool,
}

impl Progress {
    pub fn new() -> Self {
        let interactive = std::io::stderr().is_terminal();
        let target = if interactive {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            interactive,
        }
    }

    /// A bar with a label, a count and a free-text message.
    pub fn bar(&self, label: &str, total: usize) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{bar:30}] {pos}/{len} {msg} ({elapsed_precise}, about {eta} left)",
        )
        .expect("valid template")
        .progress_chars("=> ");
        let bar = self
            .multi
            .add(ProgressBar::new(total as u64).with_style(style));
        bar.set_prefix(label.to_string());
        bar
    }

    /// A line that stays, above any bars (or on stderr when there are none).
    pub fn line(&self, text: impl AsRef<str>) {
        if self.interactive {
            let _ = self.multi.println(text.as_ref());
        } else {
            eprintln!("{}", text.as_ref());
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}
