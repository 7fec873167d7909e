//! Writes a dataset folder (IDX, CIFAR, STL-10: anything `--data` reads) as
//! an image folder, `OUT/train/<class>/…` and `OUT/test/<class>/…`, so that
//! the image-folder path can be tried on known data:
//!
//! ```sh
//! cargo run --release --example image_folder -- data/fashion-mnist-subset /tmp/fmnist-png
//! cargo run --release --example image_folder -- data/fashion-mnist-subset /tmp/fmnist-jpg --jpeg 95
//! infomax train --data /tmp/fmnist-png
//! ```

use std::path::PathBuf;

use infomax::data::Split;
use infomax::data::folder::{Encoding, write_image_folder};
use infomax::train::{DataConfig, DatasetKind};

/// Fashion-MNIST's classes, numbered so that folder order is label order.
const FASHION: [&str; 10] =
    ["0-tshirt", "1-trouser", "2-pullover", "3-dress", "4-coat", "5-sandal", "6-shirt", "7-sneaker", "8-bag", "9-boot"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(src), Some(out)) = (args.first(), args.get(1)) else {
        return Err("usage: image_folder SRC OUT [--jpeg QUALITY]".into());
    };
    let encoding = match args.get(2).map(String::as_str) {
        Some("--jpeg") => Encoding::Jpeg(args.get(3).ok_or("--jpeg needs a quality")?.parse()?),
        Some(a) => return Err(format!("unknown argument {a}").into()),
        None => Encoding::Png,
    };
    let out = PathBuf::from(out);
    if out.exists() {
        return Err(format!("{} exists: choose a new folder", out.display()).into());
    }
    let cfg = DataConfig::new(DatasetKind::Auto, src);
    for (split, name) in [(Split::Train, "train"), (Split::Test, "test")] {
        let ds = cfg.load_native(split)?;
        let names: Vec<String> = FASHION.iter().map(|s| s.to_string()).collect();
        let classes = (ds.classes == 10 && ds.channels == 1).then_some(&names[..]);
        let files = write_image_folder(&ds, &out.join(name), classes, encoding)?;
        println!("{name}: {} images in {}", files.len(), out.join(name).display());
    }
    Ok(())
}
