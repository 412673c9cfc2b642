//! `bench-frames --out FILE --frames N [--first I] [--cameras C] [--width W] [--height H]
//! [--objects O] [--format png|rgb24] [--seed S]`: renders synthetic frames into
//! `POST /process` bodies for `cargo xtask bench pipeline`, one JSON body per line.
//!
//! The bodies are what frame-capture sends: scenes from `frame_capture::scene`, pixels
//! encoded as `--format` (PNG by default, as the cameras), a fresh `FrameId` per frame and
//! the frame's metadata with its ground truth, built by `frame_capture::delivery`'s
//! `request_body`. Frame `k` of the file is camera `k % C` (`cam01`, `cam02`, ...) at scene
//! index `I + k / C`, the scene of camera `c` seeded with `S + c`; ids are generated in file
//! order, so a later file's frames are newer than an earlier file's, per camera too (a
//! warm-up file rendered first, then the measured file with `--first` past it, gives the
//! processor's motion stage a previous frame for every measured frame).
//!
//! Prints one JSON line: `{"frames":..,"bytes":..,"seconds":..}`.

// Stdout is this binary's interface: the result line is what the benchmark harness reads.
#![allow(clippy::print_stdout)]

use std::io::{BufWriter, Cursor, Write as _};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use frame_capture::config::Encoding;
use frame_capture::delivery::{CapturedFrame, request_body};
use frame_capture::scene::{Scene, SceneConfig};
use frame_tracking::{FrameId, FrameMetadata};

const USAGE: &str = "usage: bench-frames --out FILE --frames N [--first I] [--cameras C] \
     [--width W] [--height H] [--objects O] [--format png|rgb24] [--seed S]";

/// The `source` part of the frame ids, and the metadata's `source`.
const SOURCE: &str = "bench";

/// The parsed command line.
#[derive(Debug)]
struct Args {
    out: PathBuf,
    frames: u64,
    first: u64,
    cameras: u64,
    width: u32,
    height: u32,
    objects: usize,
    encoding: Encoding,
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    let started = Instant::now();
    let scenes = (0..args.cameras)
        .map(|camera| {
            Scene::new(SceneConfig {
                width: args.width,
                height: args.height,
                objects: args.objects,
                seed: args.seed + camera,
            })
            .with_context(|| format!("invalid scene for camera {}", camera + 1))
        })
        .collect::<anyhow::Result<Vec<Scene>>>()?;
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = BufWriter::new(file);
    let mut bytes = 0;
    for k in 0..args.frames {
        let camera = k % args.cameras;
        let camera_id = format!("cam{:02}", camera + 1);
        let scene = &scenes[camera as usize];
        let body = request_body(&captured(
            scene,
            &camera_id,
            args.first + k / args.cameras,
            args.encoding,
        )?);
        out.write_all(body.as_bytes())?;
        out.write_all(b"\n")?;
        bytes += body.len() + 1;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "{{\"frames\":{},\"bytes\":{bytes},\"seconds\":{:.3}}}",
        args.frames,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Frame `index` of `scene` as camera `camera_id` would deliver it.
fn captured(
    scene: &Scene,
    camera_id: &str,
    index: u64,
    encoding: Encoding,
) -> anyhow::Result<CapturedFrame> {
    let rendered = scene.render(index);
    let encoded = match encoding {
        Encoding::Rgb24 => rendered.image.as_raw().clone(),
        Encoding::Png => {
            let mut png = Vec::new();
            rendered
                .image
                .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                .context("cannot encode a frame as PNG")?;
            png
        }
    };
    let mut metadata = FrameMetadata::new(FrameId::generate(camera_id, SOURCE)?);
    metadata.width = rendered.image.width();
    metadata.height = rendered.image.height();
    metadata.format = encoding.as_str().to_owned();
    metadata.size_bytes = encoded.len() as u64;
    metadata.sequence = index;
    metadata.source = SOURCE.to_owned();
    metadata.attributes.insert(
        "ground_truth".to_owned(),
        serde_json::to_string(&rendered.truth)?,
    );
    Ok(CapturedFrame {
        metadata,
        encoding,
        encoded,
        truth: rendered.truth,
    })
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut parsed = Args {
        out: PathBuf::new(),
        frames: 0,
        first: 0,
        cameras: 4,
        width: 640,
        height: 480,
        objects: 3,
        encoding: Encoding::Png,
        seed: 1,
    };
    let mut out = None;
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || -> anyhow::Result<u64> {
            value
                .parse()
                .with_context(|| format!("{flag} {value:?} is not a number"))
        };
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(&value)),
            "--frames" => parsed.frames = number()?,
            "--first" => parsed.first = number()?,
            "--cameras" => parsed.cameras = number()?,
            "--width" => parsed.width = u32::try_from(number()?)?,
            "--height" => parsed.height = u32::try_from(number()?)?,
            "--objects" => parsed.objects = usize::try_from(number()?)?,
            "--seed" => parsed.seed = number()?,
            "--format" => {
                parsed.encoding = match value.as_str() {
                    "png" => Encoding::Png,
                    "rgb24" => Encoding::Rgb24,
                    _ => bail!("--format {value:?}: expected png or rgb24"),
                }
            }
            _ => bail!("unknown argument {flag:?}\n{USAGE}"),
        }
    }
    parsed.out = out.with_context(|| format!("--out is required\n{USAGE}"))?;
    ensure!(parsed.frames > 0, "--frames must be at least 1\n{USAGE}");
    ensure!(
        (1..=99).contains(&parsed.cameras),
        "--cameras must be 1 to 99"
    );
    Ok(parsed)
}
