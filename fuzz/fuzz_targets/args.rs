//! The command line: arbitrary argument lists (one per NUL- or
//! newline-separated field) through clap, the settings they give, their
//! bounds, the memory plan and the `--resume` merge with a checkpoint's
//! settings. A typed error or settings that validate, never a panic; no
//! command is run.
#![no_main]

use std::path::Path;

use infomax::bounds;
use infomax::cli::{self, Command, Parsed};
use infomax::dim::DimConfig;
use infomax::train::{DataConfig, DatasetKind, TrainConfig, memory};
use libfuzzer_sys::fuzz_target;

/// What a checkpoint might hold: edge, batch 16, 2 epochs.
fn saved() -> TrainConfig {
    TrainConfig {
        model: DimConfig::new("edge").mi_units(16),
        data: DataConfig::new(DatasetKind::FashionMnist, "data"),
        batch_size: 16,
        epochs: Some(2),
        minutes: None,
        steps: None,
        optimizer: Default::default(),
        seed: 0,
        freeze: vec![],
        log_grad_norm: false,
        probe_every: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let args = std::iter::once("infomax").chain(text.split(['\0', '\n']));
    let Ok(Parsed { cli, explicit }) = cli::parse(args) else { return };
    if let Some(t) = cli.threads {
        let _ = bounds::THREADS.check_usize(t);
    }
    match cli.command {
        Command::Train(a) => {
            if a.probe.check(None).is_err() {
                return;
            }
            let Ok(cfg) = a.config() else { return };
            cfg.validate().expect("config() returns validated settings");
            let _ = memory::train_plan(&cfg.model, cfg.batch_size);
            if cfg.probe_every.is_some() {
                let _ = infomax::train::probe::memory_plan(&cfg.model);
            }
            if a.resume {
                let saved = saved();
                saved.validate().expect("the saved settings are valid");
                if let Ok(merged) = cli::merge_resumed(&cfg, &explicit, saved, Path::new("fuzz.safetensors")) {
                    merged.validate().expect("a merged resume validates");
                }
            }
        }
        Command::Eval(a) => {
            let _ = a.probe.check(a.batch_size);
        }
        Command::Embed(a) => {
            if let Some(b) = a.batch_size {
                let _ = bounds::ENCODE_BATCH.check_usize(b);
            }
        }
        Command::Export(_) | Command::Report(_) | Command::Import(_) => {}
    }
});
