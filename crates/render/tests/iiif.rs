//! IIIF Image API 3.0: parsing, resolving against an image, and real pixels.

mod common;

use common::{
    assert_colour_near, decode_rgb, encode_jpeg, encode_png_rgb, fixture, jpeg_with_orientation,
    mean_colour, quadrants,
};
use easel_render::iiif::{
    render_iiif, IiifError, IiifErrorKind, IiifFormat, IiifImage, IiifLimits, IiifPlan,
    IiifRequest, Quality, Region, Rotation, Size, SizeKind,
};
use easel_render::Settings;

const RED: [u8; 3] = [220, 30, 30];
const GREEN: [u8; 3] = [30, 200, 40];
const BLUE: [u8; 3] = [30, 40, 210];
const YELLOW: [u8; 3] = [240, 230, 20];

fn parse(path: &str) -> Result<IiifRequest, IiifError> {
    let parts: Vec<&str> = path.split('/').collect();
    assert_eq!(parts.len(), 4, "{path}");
    IiifRequest::parse(parts[0], parts[1], parts[2], parts[3])
}

fn plan(path: &str, width: u32, height: u32) -> Result<IiifPlan, IiifError> {
    parse(path)?.resolve(width, height, &IiifLimits::default())
}

fn plan_ok(path: &str, width: u32, height: u32) -> IiifPlan {
    plan(path, width, height).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The 1000x1000 image the IIIF validator checks: 10x10 squares of 100px,
/// each its own colour.
fn validator_image() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/iiif/67352ccc-d1b0-11e1-89ae-279075081939.png"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// 200x100, quadrants red, green / blue, yellow.
fn quads_png() -> Vec<u8> {
    encode_png_rgb(&quadrants(200, 100, [RED, GREEN, BLUE, YELLOW]))
}

fn render(original: &[u8], path: &str) -> IiifImage {
    let facts = easel_render::inspect(original, &Settings::default()).unwrap();
    let plan = plan_ok(path, facts.width, facts.height);
    render_iiif(original, &plan, &Settings::default())
        .unwrap_or_else(|e| panic!("{path}: render failed: {e}"))
}

// ---------------------------------------------------------------- parsing

#[test]
fn every_region_form_parses() {
    let cases = [
        ("full", Region::Full),
        ("square", Region::Square),
        (
            "10,20,30,40",
            Region::Pixels {
                x: 10,
                y: 20,
                width: 30,
                height: 40,
            },
        ),
        (
            "pct:10,20.5,30,.5",
            Region::Percent {
                x: 10.0,
                y: 20.5,
                width: 30.0,
                height: 0.5,
            },
        ),
    ];
    for (region, want) in cases {
        let r = IiifRequest::parse(region, "max", "0", "default.jpg").unwrap();
        assert_eq!(r.region, want, "{region}");
    }
}

#[test]
fn every_size_form_parses() {
    let cases = [
        ("max", false, SizeKind::Max),
        ("^max", true, SizeKind::Max),
        ("150,", false, SizeKind::Width(150)),
        ("^150,", true, SizeKind::Width(150)),
        (",150", false, SizeKind::Height(150)),
        ("^,150", true, SizeKind::Height(150)),
        ("pct:50", false, SizeKind::Percent(50.0)),
        ("^pct:150.5", true, SizeKind::Percent(150.5)),
        ("150,75", false, SizeKind::Exact(150, 75)),
        ("^150,75", true, SizeKind::Exact(150, 75)),
        ("!150,75", false, SizeKind::Fit(150, 75)),
        ("^!150,75", true, SizeKind::Fit(150, 75)),
    ];
    for (size, upscale, kind) in cases {
        let r = IiifRequest::parse("full", size, "0", "default.jpg").unwrap();
        assert_eq!(r.size, Size { upscale, kind }, "{size}");
    }
}

#[test]
fn rotations_qualities_and_formats_parse() {
    let cases = [
        ("0", false, Rotation::R0),
        ("90", false, Rotation::R90),
        ("180.0", false, Rotation::R180),
        ("270", false, Rotation::R270),
        ("360", false, Rotation::R0),
        ("!0", true, Rotation::R0),
        ("!90", true, Rotation::R90),
    ];
    for (rotation, mirror, want) in cases {
        let r = IiifRequest::parse("full", "max", rotation, "default.jpg").unwrap();
        assert_eq!((r.mirror, r.rotation), (mirror, want), "{rotation}");
    }
    let cases = [
        ("default.jpg", Quality::Default, IiifFormat::Jpg),
        ("color.png", Quality::Color, IiifFormat::Png),
        ("gray.webp", Quality::Gray, IiifFormat::Webp),
        ("bitonal.jpg", Quality::Bitonal, IiifFormat::Jpg),
    ];
    for (qf, quality, format) in cases {
        let r = IiifRequest::parse("full", "max", "0", qf).unwrap();
        assert_eq!((r.quality, r.format), (quality, format), "{qf}");
    }
}

#[test]
fn malformed_segments_are_400_with_the_segment_named() {
    let cases = [
        ("nonsense/max/0/default.jpg", "iiif-invalid-region"),
        ("1,2,3/max/0/default.jpg", "iiif-invalid-region"),
        ("1,2,3,4,5/max/0/default.jpg", "iiif-invalid-region"),
        ("-1,2,3,4/max/0/default.jpg", "iiif-invalid-region"),
        ("1.5,2,3,4/max/0/default.jpg", "iiif-invalid-region"),
        ("pct:1,2,3/max/0/default.jpg", "iiif-invalid-region"),
        ("pct:1e2,2,3,4/max/0/default.jpg", "iiif-invalid-region"),
        ("Full/max/0/default.jpg", "iiif-invalid-region"),
        ("full/full/0/default.jpg", "iiif-invalid-size"),
        ("full/,/0/default.jpg", "iiif-invalid-size"),
        ("full/abc,/0/default.jpg", "iiif-invalid-size"),
        ("full/!100/0/default.jpg", "iiif-invalid-size"),
        ("full/pct:/0/default.jpg", "iiif-invalid-size"),
        ("full/pct:-5/0/default.jpg", "iiif-invalid-size"),
        ("full/^^max/0/default.jpg", "iiif-invalid-size"),
        ("full/99999999999,/0/default.jpg", "iiif-invalid-size"),
        ("full/max/-90/default.jpg", "iiif-invalid-rotation"),
        ("full/max/361/default.jpg", "iiif-invalid-rotation"),
        ("full/max/abc/default.jpg", "iiif-invalid-rotation"),
        ("full/max/!!0/default.jpg", "iiif-invalid-rotation"),
        ("full/max/0/grey.jpg", "iiif-invalid-quality"),
        ("full/max/0/native.jpg", "iiif-invalid-quality"),
        ("full/max/0/default", "iiif-invalid-format"),
        ("full/max/0/default.jpeg", "iiif-invalid-format"),
        ("full/max/0/default.xyz", "iiif-invalid-format"),
    ];
    for (path, code) in cases {
        let err = parse(path).expect_err(path);
        assert_eq!(
            (err.kind(), err.code()),
            (IiifErrorKind::Invalid, code),
            "{path}: {err}"
        );
    }
}

#[test]
fn features_the_server_lacks_are_501() {
    let cases = [
        ("full/max/45/default.jpg", "iiif-unsupported-rotation"),
        ("full/max/!22.5/default.jpg", "iiif-unsupported-rotation"),
        ("full/max/0/default.tif", "iiif-unsupported-format"),
        ("full/max/0/default.gif", "iiif-unsupported-format"),
        ("full/max/0/default.jp2", "iiif-unsupported-format"),
        ("full/max/0/default.pdf", "iiif-unsupported-format"),
    ];
    for (path, code) in cases {
        let err = parse(path).expect_err(path);
        assert_eq!(
            (err.kind(), err.code()),
            (IiifErrorKind::Unsupported, code),
            "{path}: {err}"
        );
    }
}

#[test]
fn error_messages_do_not_echo_long_input() {
    let long = "x".repeat(10_000);
    let err = IiifRequest::parse(&long, "max", "0", "default.jpg").unwrap_err();
    assert!(err.to_string().len() < 200, "{err}");
}

// ---------------------------------------------------------------- geometry

fn geometry(p: &IiifPlan) -> (u32, u32, u32, u32, u32, u32) {
    (
        p.region.x,
        p.region.y,
        p.region.width,
        p.region.height,
        p.width,
        p.height,
    )
}

#[test]
fn regions_resolve_in_oriented_pixels_and_clip_to_the_image() {
    let cases = [
        ("full", (0, 0, 400, 300)),
        ("square", (50, 0, 300, 300)),
        ("10,20,30,40", (10, 20, 30, 40)),
        // Partly outside: cropped to the image.
        ("350,250,100,100", (350, 250, 50, 50)),
        ("pct:10,10,50,50", (40, 30, 200, 150)),
        ("pct:50,50,100,100", (200, 150, 200, 150)),
    ];
    for (region, (x, y, w, h)) in cases {
        let p = plan_ok(&format!("{region}/max/0/default.jpg"), 400, 300);
        assert_eq!(geometry(&p), (x, y, w, h, w, h), "{region}");
    }
    let square = plan_ok("square/max/0/default.jpg", 300, 400);
    assert_eq!(geometry(&square), (0, 50, 300, 300, 300, 300));
}

#[test]
fn regions_outside_the_image_or_empty_are_400() {
    let cases = [
        ("400,0,10,10", "iiif-region-outside-image"),
        ("0,300,10,10", "iiif-region-outside-image"),
        ("pct:100,0,10,10", "iiif-region-outside-image"),
        ("0,0,0,10", "iiif-empty-region"),
        ("0,0,10,0", "iiif-empty-region"),
        ("pct:0,0,0,10", "iiif-empty-region"),
        ("pct:0,0,10,0", "iiif-empty-region"),
    ];
    for (region, code) in cases {
        let err = plan(&format!("{region}/max/0/default.jpg"), 400, 300).unwrap_err();
        assert_eq!(
            (err.kind(), err.code()),
            (IiifErrorKind::Invalid, code),
            "{region}: {err}"
        );
    }
}

#[test]
fn percent_regions_cover_every_pixel_they_touch() {
    let cases = [
        // Starts inside the last column: rounding to nearest put it at 1000.
        ("pct:99.99,0,1,1", 1000, 1000, (999, 0, 1, 10)),
        // Smaller than a pixel, but not zero: one pixel, not a 400.
        ("pct:0,0,0.04,0.04", 1000, 1000, (0, 0, 1, 1)),
        ("pct:0,0,0.01,10", 400, 300, (0, 0, 1, 30)),
        // Start rounds down, far edge up: 33.3 -> 133.2 .. 266.4 of 400.
        ("pct:33.3,33.3,33.3,33.3", 400, 300, (133, 99, 134, 101)),
        // Exact edges stay exact, even where the sum is not exact in binary.
        ("pct:10,10,50,50", 400, 300, (40, 30, 200, 150)),
        ("pct:0.1,0.2,0.2,0.1", 1000, 1000, (1, 2, 2, 1)),
        ("pct:31,41,9,9", 1000, 1000, (310, 410, 90, 90)),
    ];
    for (region, w, h, (x, y, rw, rh)) in cases {
        let p = plan_ok(&format!("{region}/max/0/default.jpg"), w, h);
        assert_eq!(
            (p.region.x, p.region.y, p.region.width, p.region.height),
            (x, y, rw, rh),
            "{region} of {w}x{h}"
        );
    }
}

#[test]
fn sizes_resolve_as_the_spec_says() {
    // A 400x300 region throughout.
    let cases = [
        ("max", (400, 300)),
        ("200,", (200, 150)),
        (",150", (200, 150)),
        (",100", (133, 100)),
        ("pct:50", (200, 150)),
        ("pct:12.5", (50, 38)),
        ("100,100", (100, 100)),
        ("400,300", (400, 300)),
        ("!100,100", (100, 75)),
        ("!400,100", (133, 100)),
        ("!400,300", (400, 300)),
        ("^800,", (800, 600)),
        ("^,600", (800, 600)),
        ("^pct:200", (800, 600)),
        ("^800,100", (800, 100)),
        ("^!1000,600", (800, 600)),
        // ^ allows upscaling without requiring it.
        ("^!2000,150", (200, 150)),
        ("^200,", (200, 150)),
    ];
    for (size, want) in cases {
        let p = plan_ok(&format!("full/{size}/0/default.jpg"), 400, 300);
        assert_eq!((p.width, p.height), want, "{size}");
    }
}

#[test]
fn upscaling_without_a_caret_is_400() {
    // The validator's size_noup test, on its 1000x1000 image.
    for size in [
        "1500,1500",
        ",1500",
        "1500,",
        "pct:200",
        "!2000,3000",
        "1001,10",
    ] {
        let err = plan(&format!("full/{size}/0/default.jpg"), 1000, 1000).unwrap_err();
        assert_eq!(
            (err.kind(), err.code()),
            (IiifErrorKind::Invalid, "iiif-upscale-without-caret"),
            "{size}: {err}"
        );
    }
    // The validator's size_up expectations, at level 3.
    for (size, want) in [
        ("^1500,1500", (1500, 1500)),
        ("^pct:200", (2000, 2000)),
        ("^!2000,500", (500, 500)),
        ("^!2000,3000", (2000, 2000)),
    ] {
        let p = plan_ok(&format!("full/{size}/0/default.jpg"), 1000, 1000);
        assert_eq!((p.width, p.height), want, "{size}");
    }
}

#[test]
fn zero_sizes_are_400() {
    for size in ["0,", ",0", "0,10", "pct:0", "!0,10", "pct:0.01"] {
        let err = plan(&format!("full/{size}/0/default.jpg"), 400, 300).unwrap_err();
        assert_eq!(
            (err.kind(), err.code()),
            (IiifErrorKind::Invalid, "iiif-zero-size"),
            "{size}"
        );
    }
    // A very wide region asked for a small width rounds its height to zero.
    let err = plan("full/10,/0/default.jpg", 10_000, 100).unwrap_err();
    assert_eq!(err.code(), "iiif-zero-size");
}

#[test]
fn limits_cap_max_and_refuse_larger_requests() {
    let limits = IiifLimits {
        max_width: 1000,
        max_height: 800,
        max_area: 500_000,
    };
    let resolve = |path: &str, w, h| parse(path).unwrap().resolve(w, h, &limits);
    // max keeps the aspect ratio inside every limit.
    let p = resolve("full/max/0/default.jpg", 4000, 2000).unwrap();
    assert_eq!((p.width, p.height), (1000, 500));
    let p = resolve("full/max/0/default.jpg", 2000, 4000).unwrap();
    assert_eq!((p.width, p.height), (400, 800));
    let p = resolve("full/max/0/default.jpg", 3000, 3000).unwrap();
    assert!(
        p.width * p.height <= 500_000 && p.width == p.height,
        "{p:?}"
    );
    assert!(p.width >= 700, "{p:?}");
    // Under the limits, max is the region itself and is never upscaled.
    let p = resolve("full/max/0/default.jpg", 300, 200).unwrap();
    assert_eq!((p.width, p.height), (300, 200));
    // ^max goes up to the limits.
    let p = resolve("full/^max/0/default.jpg", 300, 200).unwrap();
    assert_eq!((p.width, p.height), (866, 577));
    assert!(p.width as u64 * p.height as u64 <= limits.max_area);
    // Explicit sizes over a limit are refused.
    for path in [
        "full/1001,/0/default.jpg",
        "full/,801/0/default.jpg",
        "full/800,700/0/default.jpg",
        "full/^1001,/0/default.jpg",
        "full/pct:50/0/default.jpg",
    ] {
        let err = resolve(path, 4000, 4000).unwrap_err();
        assert_eq!(
            (err.kind(), err.code()),
            (IiifErrorKind::Invalid, "iiif-beyond-limits"),
            "{path}"
        );
    }
}

#[test]
fn best_fit_sizes_shrink_to_the_limits_instead_of_failing() {
    let limits = IiifLimits {
        max_width: 1000,
        max_height: 800,
        max_area: 500_000,
    };
    let resolve = |path: &str, w, h| {
        parse(path)
            .unwrap()
            .resolve(w, h, &limits)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    // Width-bound: 4000x2000 into a 2000x2000 box would be 2000x1000.
    let p = resolve("full/!2000,2000/0/default.jpg", 4000, 2000);
    assert_eq!((p.width, p.height), (1000, 500));
    // Height-bound by maxHeight.
    let p = resolve("full/!3000,3000/0/default.jpg", 2000, 4000);
    assert_eq!((p.width, p.height), (400, 800));
    // Area-bound: the largest square inside 500 000 px.
    let p = resolve("full/!3000,3000/0/default.jpg", 3000, 3000);
    assert_eq!(p.width, p.height);
    assert!(p.width as u64 * p.height as u64 <= limits.max_area, "{p:?}");
    assert!(p.width >= 700, "{p:?}");
    // ^!w,h upscales, but only as far as the limits.
    let p = resolve("full/^!5000,5000/0/default.jpg", 300, 200);
    assert_eq!((p.width, p.height), (866, 577));
    // Inside the limits nothing changes.
    let p = resolve("full/!500,500/0/default.jpg", 4000, 2000);
    assert_eq!((p.width, p.height), (500, 250));
    // Without ^ a box larger than the region is still a 400.
    let err = parse("full/!2000,3000/0/default.jpg")
        .unwrap()
        .resolve(1000, 1000, &limits)
        .unwrap_err();
    assert_eq!(err.code(), "iiif-upscale-without-caret");
}

#[test]
fn rotation_by_90_swaps_the_output_sides() {
    let p = plan_ok("full/200,/90/default.jpg", 400, 300);
    assert_eq!((p.width, p.height), (200, 150));
    assert_eq!(p.output_size(), (150, 200));
    let p = plan_ok("full/200,/!180/default.jpg", 400, 300);
    assert_eq!(p.output_size(), (200, 150));
    assert!(p.mirror);
}

#[test]
fn normalised_requests_identify_equal_outputs() {
    let a = plan_ok("full/max/0/default.jpg", 400, 300);
    let b = plan_ok("0,0,400,300/400,/360/color.jpg", 400, 300);
    let c = plan_ok("pct:0,0,100,100/pct:100/0/default.jpg", 400, 300);
    assert_eq!(a.normalised(400, 300), "full/400,300/0/default.jpg");
    assert_eq!(a.normalised(400, 300), b.normalised(400, 300));
    assert_eq!(a.normalised(400, 300), c.normalised(400, 300));
    let d = plan_ok("square/!100,100/!90/gray.png", 400, 300);
    assert_eq!(d.normalised(400, 300), "50,0,300,300/100,100/!90/gray.png");
    // color and default share a cache entry but not a canonical URL.
    assert_eq!(b.canonical(400, 300), "full/400,300/0/color.jpg");
    assert_eq!(a.canonical(400, 300), "full/400,300/0/default.jpg");
}

#[test]
fn canonical_urls_keep_the_caret_when_they_upscale() {
    // Each canonical form must itself be a valid request for the same image.
    let cases = [
        ("full/^1500,/0/default.jpg", "full/^1500,1500/0/default.jpg"),
        ("full/^max/0/default.jpg", "full/^4000,4000/0/default.jpg"),
        ("full/^pct:150/0/gray.png", "full/^1500,1500/0/gray.png"),
        (
            "0,0,100,50/^200,50/0/default.jpg",
            "0,0,100,50/^200,50/0/default.jpg",
        ),
        ("full/^500,/0/default.jpg", "full/500,500/0/default.jpg"),
        ("full/max/!90/color.webp", "full/1000,1000/!90/color.webp"),
        ("full/max/0/bitonal.jpg", "full/1000,1000/0/bitonal.jpg"),
    ];
    for (request, want) in cases {
        let p = plan_ok(request, 1000, 1000);
        let canonical = p.canonical(1000, 1000);
        assert_eq!(canonical, want, "{request}");
        let again = plan(&canonical, 1000, 1000)
            .unwrap_or_else(|e| panic!("canonical {canonical} of {request}: {e}"));
        assert_eq!(again, p, "{canonical} is the same request as {request}");
    }
}

#[test]
fn square_requests_name_the_stored_style_they_match() {
    let p = plan_ok("square/400,400/0/default.jpg", 1000, 800);
    assert_eq!(p.square_style_side(1000, 800), Some(400));
    let p = plan_ok("square/400,/0/color.jpg", 1000, 800);
    assert_eq!(p.square_style_side(1000, 800), Some(400));
    for path in [
        "full/400,400/0/default.jpg",
        "square/400,400/90/default.jpg",
        "square/400,400/0/gray.jpg",
        "square/400,400/0/default.png",
    ] {
        assert_eq!(
            plan_ok(path, 1000, 800).square_style_side(1000, 800),
            None,
            "{path}"
        );
    }
}

// ---------------------------------------------------------------- pixels

#[test]
fn full_max_returns_the_whole_image_as_jpeg() {
    let out = render(&quads_png(), "full/max/0/default.jpg");
    assert_eq!(out.mimetype, "image/jpeg");
    assert_eq!(&out.bytes[..3], &[0xFF, 0xD8, 0xFF]);
    let img = decode_rgb(&out.bytes);
    assert_eq!(img.dimensions(), (200, 100));
    assert_eq!((out.width, out.height), (200, 100));
    assert_colour_near(mean_colour(&img, 20, 20, 5), RED, 8, "top-left");
    assert_colour_near(mean_colour(&img, 180, 80, 5), YELLOW, 8, "bottom-right");
}

#[test]
fn a_region_cuts_the_right_pixels() {
    // The bottom-right quadrant only, upscaled 2x with ^.
    let out = render(&quads_png(), "100,50,100,50/^200,/0/default.png");
    let img = decode_rgb(&out.bytes);
    assert_eq!(img.dimensions(), (200, 100));
    assert_colour_near(mean_colour(&img, 100, 50, 20), YELLOW, 0, "centre");
    // pct: the top-left quadrant.
    let out = render(&quads_png(), "pct:0,0,50,50/max/0/default.png");
    let img = decode_rgb(&out.bytes);
    assert_eq!(img.dimensions(), (100, 50));
    assert_colour_near(mean_colour(&img, 50, 25, 10), RED, 0, "pct region");
}

#[test]
fn mirroring_moves_the_top_left_corner_to_the_top_right() {
    let out = render(&quads_png(), "full/max/!0/default.png");
    let img = decode_rgb(&out.bytes);
    assert_eq!(img.dimensions(), (200, 100));
    assert_colour_near(mean_colour(&img, 20, 20, 5), GREEN, 0, "top-left");
    assert_colour_near(mean_colour(&img, 180, 20, 5), RED, 0, "top-right");
    assert_colour_near(mean_colour(&img, 20, 80, 5), YELLOW, 0, "bottom-left");
}

#[test]
fn rotation_swaps_width_and_height_and_turns_clockwise() {
    let quads = quads_png();
    // 90 clockwise: the bottom-left corner comes to the top-left.
    let out = render(&quads, "full/max/90/default.png");
    let img = decode_rgb(&out.bytes);
    assert_eq!(img.dimensions(), (100, 200));
    assert_eq!((out.width, out.height), (100, 200));
    assert_colour_near(mean_colour(&img, 20, 20, 5), BLUE, 0, "90 top-left");
    assert_colour_near(mean_colour(&img, 80, 20, 5), RED, 0, "90 top-right");
    assert_colour_near(mean_colour(&img, 80, 180, 5), GREEN, 0, "90 bottom-right");
    let img = decode_rgb(&render(&quads, "full/max/180/default.png").bytes);
    assert_eq!(img.dimensions(), (200, 100));
    assert_colour_near(mean_colour(&img, 20, 20, 5), YELLOW, 0, "180 top-left");
    let img = decode_rgb(&render(&quads, "full/max/270/default.png").bytes);
    assert_eq!(img.dimensions(), (100, 200));
    assert_colour_near(mean_colour(&img, 20, 20, 5), GREEN, 0, "270 top-left");
    // Mirror first, then rotate: !90 brings the bottom-right to the top-left.
    let img = decode_rgb(&render(&quads, "full/max/!90/default.png").bytes);
    assert_colour_near(mean_colour(&img, 20, 20, 5), YELLOW, 0, "!90 top-left");
    // !180 is a vertical flip.
    let img = decode_rgb(&render(&quads, "full/max/!180/default.png").bytes);
    assert_colour_near(mean_colour(&img, 20, 20, 5), BLUE, 0, "!180 top-left");
}

#[test]
fn gray_has_equal_channels_and_bitonal_only_black_and_white() {
    let quads = quads_png();
    for format in ["png", "webp", "jpg"] {
        let out = render(&quads, &format!("full/max/0/gray.{format}"));
        let img = decode_rgb(&out.bytes);
        assert_eq!(img.dimensions(), (200, 100), "{format}");
        assert!(
            img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]),
            "gray {format}"
        );
        let out = render(&quads, &format!("full/max/0/bitonal.{format}"));
        let img = decode_rgb(&out.bytes);
        let exact = img
            .pixels()
            .all(|p| p[0] == p[1] && (p[0] == 0 || p[0] == 255));
        if format == "jpg" {
            // JPEG rings at the edges; nearly all pixels are still pure.
            let near = img.pixels().filter(|p| p[0] < 8 || p[0] > 247).count();
            assert!(
                near * 100 >= img.pixels().count() * 98,
                "bitonal jpg {near}"
            );
        } else {
            assert!(exact, "bitonal {format}");
        }
    }
    // Bright yellow is white, dark blue is black.
    let img = decode_rgb(&render(&quads, "full/max/0/bitonal.png").bytes);
    assert_eq!(img.get_pixel(180, 80).0, [255, 255, 255]);
    assert_eq!(img.get_pixel(20, 80).0, [0, 0, 0]);
}

#[test]
fn formats_have_their_magic_bytes_and_mimetypes() {
    let quads = quads_png();
    let png = render(&quads, "full/50,/0/default.png");
    assert_eq!(
        (png.mimetype, &png.bytes[..4]),
        ("image/png", &b"\x89PNG"[..])
    );
    let webp = render(&quads, "full/50,/0/default.webp");
    assert_eq!(webp.mimetype, "image/webp");
    assert_eq!(
        (&webp.bytes[..4], &webp.bytes[8..12]),
        (&b"RIFF"[..], &b"WEBP"[..])
    );
    assert_eq!(decode_rgb(&webp.bytes).dimensions(), (50, 25));
}

#[test]
fn the_iiif_image_is_the_oriented_original() {
    // A landscape JPEG stored sideways: EXIF 6 means "rotate 90 clockwise".
    let upright = quadrants(120, 80, [RED, GREEN, BLUE, YELLOW]);
    let stored = image::imageops::rotate270(&upright);
    let jpeg = jpeg_with_orientation(&encode_jpeg(&stored, 95), 6);
    let facts = easel_render::inspect(&jpeg, &Settings::default()).unwrap();
    assert_eq!((facts.width, facts.height), (120, 80));
    let out = render(&jpeg, "full/max/0/default.png");
    let img = decode_rgb(&out.bytes);
    assert_eq!(img.dimensions(), (120, 80));
    assert_colour_near(mean_colour(&img, 15, 15, 5), RED, 12, "top-left");
    assert_colour_near(mean_colour(&img, 105, 65, 5), YELLOW, 12, "bottom-right");
    // And real camera-style files: every orientation gives the same picture.
    let reference = decode_rgb(
        &render(
            &fixture("orientation/Landscape_1.jpg"),
            "full/300,/0/default.png",
        )
        .bytes,
    );
    for n in 2..=8 {
        let name = format!("orientation/Landscape_{n}.jpg");
        let img = decode_rgb(&render(&fixture(&name), "full/300,/0/default.png").bytes);
        assert_eq!(img.dimensions(), reference.dimensions(), "{name}");
        let diff = common::block_mean_abs_diff(&img, &reference, 10);
        assert!(diff < 6.0, "{name} differs from Landscape_1 by {diff}");
    }
}

#[test]
fn the_validator_image_keeps_its_squares_where_the_validator_looks() {
    let original = validator_image();
    let full = decode_rgb(&render(&original, "full/max/0/default.png").bytes);
    assert_eq!(full.dimensions(), (1000, 1000));
    let square = |img: &image::RgbImage, x: u32, y: u32, side: u32| {
        mean_colour(img, x * side + side / 2, y * side + side / 2, side / 5)
    };
    // rot_full_basic: at 90 the top-left square is the original (0, 9).
    let r90 = decode_rgb(&render(&original, "full/max/90/default.jpg").bytes);
    assert_colour_near(square(&r90, 0, 0, 100), square(&full, 0, 9, 100), 6, "90");
    // rot_mirror: !0 puts (9, 0) at the top-left.
    let m = decode_rgb(&render(&original, "full/max/!0/default.jpg").bytes);
    assert_colour_near(square(&m, 0, 0, 100), square(&full, 9, 0, 100), 6, "!0");
    // region_percent / size_region: pct:31,41,9,9 is inside square (3, 4).
    let pct = decode_rgb(&render(&original, "pct:31,41,9,9/max/0/default.jpg").bytes);
    assert_eq!(pct.dimensions(), (90, 90));
    assert_colour_near(
        mean_colour(&pct, 45, 45, 10),
        square(&full, 3, 4, 100),
        6,
        "pct",
    );
    // size_wc at 600: squares of 60.
    let small = decode_rgb(&render(&original, "full/600,/0/default.jpg").bytes);
    assert_eq!(small.dimensions(), (600, 600));
    assert_colour_near(
        square(&small, 7, 2, 60),
        square(&full, 7, 2, 100),
        6,
        "600,",
    );
}

#[test]
fn a_plan_for_another_image_size_is_refused_not_a_panic() {
    let p = plan_ok("300,0,100,100/max/0/default.jpg", 400, 400);
    let err = render_iiif(&quads_png(), &p, &Settings::default()).unwrap_err();
    assert_eq!(err.code(), "crop-out-of-bounds");
}
