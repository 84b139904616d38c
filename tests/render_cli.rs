//! `easel render` on what designers send: it renders what it can read and
//! otherwise says why in one line, never with a backtrace.

use std::process::Command;

fn fixture(relative: &str) -> String {
    format!("{}/fixtures/{relative}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `easel render FILE` into a temporary folder: success, stdout, stderr.
fn render(file: &str) -> (bool, String, String) {
    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["render", &fixture(file), "--out"])
        .arg(out.path())
        .args(["--threads", "1"])
        .output()
        .expect("run easel");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn easel_render_reads_a_tiled_planar_tiff_that_used_to_panic_it() {
    let (ok, stdout, stderr) = render("corpus/pillow-tiff_tiled_planar_lzw.tiff");
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("image/tiff 278x374"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn easel_render_refuses_in_one_line_naming_the_true_reason() {
    for (file, reason) in [
        ("corpus/pillow-lab-red.tif", "uses CIELab colour"),
        ("corpus/pillow-12bit.cropped.tif", "12-bit samples"),
        ("corpus/pillow-hopper_bad_exif.jpg", "truncated or corrupt"),
        ("corrupt/truncated_jpeg.jpg", "Premature end"),
    ] {
        let (ok, _, stderr) = render(file);
        assert!(!ok, "{file} rendered");
        assert_eq!(stderr.lines().count(), 1, "{file}: {stderr}");
        assert!(stderr.contains(reason), "{file}: {stderr}");
    }
}
