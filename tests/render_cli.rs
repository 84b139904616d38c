//! `easel render` on what designers send: it renders what it can read and
//! otherwise says why in one line, never with a backtrace.

use std::process::Command;

fn fixture(relative: &str) -> String {
    format!("{}/fixtures/{relative}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `easel render FILE --out OUT` on one thread: success, stdout, stderr.
fn render_into(file: &str, out: &std::path::Path) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["render", &fixture(file), "--out"])
        .arg(out)
        .args(["--threads", "1"])
        .output()
        .expect("run easel");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// [`render_into`] a temporary folder.
fn render(file: &str) -> (bool, String, String) {
    let out = tempfile::tempdir().expect("temp dir");
    render_into(file, out.path())
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

#[test]
fn easel_render_into_a_used_folder_leaves_only_the_new_styles_and_the_users_files() {
    let out = tempfile::tempdir().expect("temp dir");
    let run = |file: &str| {
        let (ok, _, stderr) = render_into(file, out.path());
        assert!(ok, "{stderr}");
    };
    let names = || {
        let mut names: Vec<String> = std::fs::read_dir(out.path())
            .expect("read the folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    // A 12 MP photo has every style, square-3000 and a JPEG
    // stripped-original among them.
    run("photo/olympus_e-p3_4032x3024.jpg");
    assert!(names().contains(&"square-3000.jpg".to_string()));
    std::fs::write(out.path().join("notes.txt"), b"mine").expect("write");
    std::fs::write(out.path().join("square-3000.jpg.bak"), b"mine too").expect("write");

    // A small PNG has neither.
    run("png/palette_indexed.png");
    let manifest: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(out.path().join("assets.json")).expect("assets.json"),
    )
    .expect("JSON");
    let mut expected: Vec<String> = manifest
        .iter()
        .map(|f| {
            let style = f["style"].as_str().expect("style");
            let ext = match f["mimetype"].as_str().expect("mimetype") {
                "image/png" => "png",
                "image/jpeg" => "jpg",
                other => panic!("unexpected {other}"),
            };
            format!("{style}.{ext}")
        })
        .chain(["assets.json", "notes.txt", "square-3000.jpg.bak"].map(String::from))
        .collect();
    expected.sort();
    assert!(!expected.contains(&"square-3000.jpg".to_string()));
    assert!(expected.contains(&"stripped-original.png".to_string()));
    assert_eq!(names(), expected);
    for f in &manifest {
        let name = expected
            .iter()
            .find(|n| n.starts_with(&format!("{}.", f["style"].as_str().unwrap())))
            .unwrap();
        let len = std::fs::metadata(out.path().join(name)).unwrap().len();
        assert_eq!(Some(len), f["bytes"].as_u64(), "{name}");
    }
    assert_eq!(
        std::fs::read(out.path().join("notes.txt")).unwrap(),
        b"mine"
    );
}
