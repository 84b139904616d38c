//! Any bytes in: `render` returns a rendition or a typed error, never panics,
//! and whatever it returns describes its own bytes. Every decoder is behind
//! it: libjpeg-turbo, libtiff (strips, tiles, planes, YCbCr, old JPEG, fax,
//! LZW, Deflate...), the `image` crate's PNG, GIF and WebP, EXIF readers.

#![no_main]

use easel_render::{inspect, probe, render, Limits, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits: a mutated size field must not make every run allocate
    // hundreds of megabytes and stall the fuzzer.
    let settings = Settings {
        limits: Limits {
            max_bytes: 1 << 20,
            max_pixels: 1 << 20,
        },
        ..Settings::default()
    };
    // The engine turns its own panics into `internal` errors so a service
    // survives them; for the fuzzer they are the bugs it is looking for.
    let sound = |e: &easel_render::RenderError| {
        assert_ne!(e.code(), "internal", "{e}");
        assert!(!e.to_string().is_empty());
    };
    if let Ok(probed) = probe(data, &settings.limits) {
        assert!(probed.width > 0 && probed.height > 0);
        assert!(probed.bits_per_sample > 0 && probed.channels > 0);
    }
    if let Err(e) = inspect(data, &settings) {
        sound(&e);
    }
    match render(data.to_vec(), None, &settings) {
        Ok(rendition) => {
            for file in &rendition.files {
                assert_eq!(file.size, file.bytes.len() as u64);
                assert!(file.width > 0 && file.height > 0);
            }
        }
        Err(e) => sound(&e),
    }
});
