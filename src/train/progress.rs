//! Progress bars for a terminal (feature `cli`): an [`Observer`] that
//! draws one bar per epoch and prints each epoch's summary line.

use indicatif::{ProgressBar, ProgressStyle};

use super::trainer::epoch_line;
use super::{EpochLog, Observer, StepReport};

/// One `indicatif` bar per epoch, then the epoch's line.
#[derive(Debug, Default)]
pub struct Bars {
    bar: Option<ProgressBar>,
}

impl Observer for Bars {
    fn epoch_start(&mut self, epoch: u64, steps: usize) {
        let bar = ProgressBar::new(steps as u64);
        if let Ok(style) = ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("{epoch}"));
        self.bar = Some(bar);
    }

    fn step(&mut self, r: &StepReport) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss {:.4} mi {:.3} {:.0} img/s", r.loss, r.mi, r.images_per_s));
            bar.inc(1);
        }
    }

    fn probe(&mut self, log: &super::probe::WindowLog) {
        let line = super::trainer::probe_line(log);
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn data_note(&mut self, note: &str) {
        eprintln!("{note}");
    }

    fn initialised(&mut self, rows: &[super::InitRow]) {
        eprintln!("initialised from the checkpoint:\n{}", super::init_table(rows));
    }

    fn epoch_end(&mut self, log: &EpochLog) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!("{}", epoch_line(log));
    }
}
