//! Any bytes in: `render` returns a rendition or a typed error, never panics,
//! and whatever it returns describes its own bytes.

#![no_main]

use easel_render::{render, Limits, Settings};
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
    match render(data, None, &settings) {
        Ok(rendition) => {
            for file in &rendition.files {
                assert_eq!(file.size, file.bytes.len() as u64);
                assert!(file.width > 0 && file.height > 0);
            }
        }
        Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
    }
});
