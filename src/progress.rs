//! Log lines that leave a progress bar on screen.
//!
//! indicatif redraws its bar on stderr; a log line written there between
//! two redraws pushes the bar up and leaves a copy behind, so a re-render
//! of a few dozen images scrolled the bar, its rate and its ETA away. While
//! a bar is shown, each log line is written through `ProgressBar::suspend`,
//! which clears the bar, writes the line, and draws the bar again below it.

use std::io::Write;
use std::sync::Mutex;

use indicatif::ProgressBar;

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Shows `bar` under the log until [`hide`] (or the bar is dropped there).
pub fn show(bar: &ProgressBar) {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
}

/// Log lines go straight to stderr again.
pub fn hide() {
    BAR.lock().unwrap_or_else(|e| e.into_inner()).take();
}

/// The tracing writer: stderr, above the bar while one is shown.
#[derive(Clone, Copy, Default)]
pub struct AboveTheBar;

impl Write for AboveTheBar {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // tracing-subscriber formats a whole event, then writes it once.
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| std::io::stderr().write_all(buf))?,
            _ => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for AboveTheBar {
    type Writer = AboveTheBar;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}
