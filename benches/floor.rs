//! The floor under `easel render` of one JPEG on one thread: the least
//! work its styles take with the same libraries and no engine around them.
//!
//! - libjpeg-turbo decodes only the pixels the styles need: the centred
//!   square's columns (from the iMCU boundary at or left of it) and rows
//!   (`tj3SetCroppingRegion`);
//! - libjpeg-turbo encodes every style's pixels (`regular`, the crop
//!   itself, and each square), baseline 4:2:0 as the engine writes them;
//! - fast_image_resize (Lanczos3) makes the cascade: the largest square
//!   from the crop, each smaller one from the one above it, with one
//!   resizer whose buffers are reused.
//!
//! `stripped-original` is the original's bytes without metadata (no
//! pixels), so it is not part of the floor. The photo must have no EXIF
//! rotation (then the whole image is needed for `stripped-original`).
//!
//! Run: `cargo bench --bench floor -- [IMAGE] [RUNS] [QUALITY]` prints
//! the floor as JSON (per part and in total, min and median of RUNS after
//! a warm-up); `-- --once IMAGE [QUALITY]` does it once, file read
//! included, for timing whole processes (`benches/compare.sh`).

use std::ffi::c_int;
use std::time::{Duration, Instant};

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use serde_json::json;

// The allocator `easel` itself uses, so neither pays the other's page
// faults and frees.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The square styles' sides, largest first; 3000 only for crops that big.
const SQUARES: [u32; 6] = [3000, 1400, 888, 640, 400, 100];

#[derive(Default, Clone, Copy)]
struct Parts {
    decode: Duration,
    resize: Duration,
    encode: Duration,
}

impl Parts {
    fn total(&self) -> Duration {
        self.decode + self.resize + self.encode
    }
}

/// Decodes the stored image's centred square: its rows, and its columns
/// from the iMCU boundary at or left of it. Returns the pixels (RGB), their
/// width, and where the square starts in them.
fn decode_square(jpeg: &[u8]) -> (Vec<u8>, u32, u32, u32) {
    let mcu = turbojpeg::read_header(jpeg)
        .expect("a JPEG")
        .subsamp
        .mcu_width() as u32;
    unsafe {
        let handle = turbojpeg_sys::tj3Init(turbojpeg_sys::TJINIT_TJINIT_DECOMPRESS as c_int);
        assert!(!handle.is_null());
        let len = jpeg.len() as turbojpeg_sys::size_t;
        assert_eq!(
            turbojpeg_sys::tj3DecompressHeader(handle, jpeg.as_ptr(), len),
            0
        );
        let get = |p: turbojpeg_sys::TJPARAM| turbojpeg_sys::tj3Get(handle, p as c_int);
        let width = get(turbojpeg_sys::TJPARAM_TJPARAM_JPEGWIDTH) as u32;
        let height = get(turbojpeg_sys::TJPARAM_TJPARAM_JPEGHEIGHT) as u32;
        let side = width.min(height);
        let (x, y) = ((width - side) / 2, (height - side) / 2);
        let left = x / mcu * mcu;
        let columns = side + (x - left);
        let region = turbojpeg_sys::tjregion {
            x: left as c_int,
            y: y as c_int,
            w: columns as c_int,
            h: side as c_int,
        };
        assert_eq!(turbojpeg_sys::tj3SetCroppingRegion(handle, region), 0);
        let mut pixels = vec![0u8; columns as usize * side as usize * 3];
        let status = turbojpeg_sys::tj3Decompress8(
            handle,
            jpeg.as_ptr(),
            len,
            pixels.as_mut_ptr(),
            (columns * 3) as c_int,
            turbojpeg_sys::TJPF_TJPF_RGB,
        );
        assert_eq!(status, 0, "the bench photo decodes without warnings");
        turbojpeg_sys::tj3Destroy(handle);
        (pixels, columns, x - left, side)
    }
}

fn encode(
    compressor: &mut turbojpeg::Compressor,
    pixels: &[u8],
    width: u32,
    pitch: u32,
    height: u32,
) -> Vec<u8> {
    compressor
        .compress_to_vec(turbojpeg::Image {
            pixels,
            width: width as usize,
            pitch: pitch as usize * 3,
            height: height as usize,
            format: turbojpeg::PixelFormat::RGB,
        })
        .expect("encodes")
}

/// One render's worth of work; returns its parts' times and the output size.
fn floor_once(jpeg: &[u8], quality: i32, resizer: &mut Resizer) -> (Parts, usize) {
    let mut parts = Parts::default();
    let t = Instant::now();
    let (pixels, columns, offset, side) = decode_square(jpeg);
    parts.decode = t.elapsed();

    let mut compressor = turbojpeg::Compressor::new().expect("a compressor");
    compressor.set_quality(quality).expect("a quality");
    compressor
        .set_subsamp(turbojpeg::Subsamp::Sub2x2)
        .expect("4:2:0");
    let t = Instant::now();
    let start = offset as usize * 3;
    let mut bytes = encode(&mut compressor, &pixels[start..], side, columns, side).len();
    parts.encode += t.elapsed();

    let source = ImageRef::new(columns, side, &pixels, PixelType::U8x3).expect("pixels");
    let lanczos = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    let mut previous: Option<Image> = None;
    for to in SQUARES.into_iter().filter(|s| *s != 3000 || side >= 3000) {
        let t = Instant::now();
        let mut square = Image::new(to, to, PixelType::U8x3);
        match &previous {
            None => {
                let options = lanczos
                    .clone()
                    .crop(offset as f64, 0.0, side as f64, side as f64);
                resizer.resize(&source, &mut square, &options)
            }
            Some(larger) => resizer.resize(larger, &mut square, &lanczos),
        }
        .expect("resizes");
        parts.resize += t.elapsed();
        let t = Instant::now();
        bytes += encode(&mut compressor, square.buffer(), to, to, to).len();
        parts.encode += t.elapsed();
        previous = Some(square);
    }
    (parts, bytes)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let once = args.first().is_some_and(|a| a == "--once");
    let args = &args[once as usize..];
    let image = args.first().cloned().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/photo/olympus_e-p3_4032x3024.jpg"
        )
        .to_string()
    });
    let number =
        |i: usize, default: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    let mut resizer = Resizer::new();
    if once {
        let quality = number(1, 88) as i32;
        let jpeg = std::fs::read(&image).unwrap_or_else(|e| panic!("{image}: {e}"));
        std::hint::black_box(floor_once(&jpeg, quality, &mut resizer));
        return;
    }
    let (runs, quality) = (number(1, 5).max(1), number(2, 88) as i32);
    let jpeg = std::fs::read(&image).unwrap_or_else(|e| panic!("{image}: {e}"));
    let (first, bytes) = floor_once(&jpeg, quality, &mut resizer);
    let mut all: Vec<Parts> = (0..runs)
        .map(|_| floor_once(&jpeg, quality, &mut resizer).0)
        .collect();
    let stat = |all: &mut Vec<Parts>, f: fn(&Parts) -> Duration| {
        all.sort_by_key(f);
        json!({ "min": ms(f(&all[0])), "median": ms(f(&all[all.len() / 2])) })
    };
    let report = json!({
        "image": image,
        "runs": runs,
        "quality": quality,
        "output_bytes": bytes,
        "first_run_ms": ms(first.total()),
        "decode_ms": stat(&mut all, |p| p.decode),
        "resize_ms": stat(&mut all, |p| p.resize),
        "encode_ms": stat(&mut all, |p| p.encode),
        "floor_ms": stat(&mut all, |p| p.total()),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("JSON of plain values")
    );
}
