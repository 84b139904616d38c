//! End to end: the real service over real HTTP, a real SQLite file and a
//! real filesystem store, fed real-world images.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    asset, dimensions, easel, easel_key, easel_serve, fixture, header, id_of, metric_in, png_bomb,
    problem, TestApp, TestOptions,
};
use easel_catalog::now_ms;
use easel_worker::Outcome;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// Fixtures and their oriented size, as a person sees them.
const REAL_IMAGES: [(&str, (u64, u64)); 10] = [
    ("photo/olympus_e-p3_4032x3024.jpg", (4032, 3024)),
    ("photo/iphone6_3264x2448.jpg", (3264, 2448)),
    ("jpeg/cmyk_pil_sample.jpg", (0, 0)),
    ("jpeg/exif_iptc_nokia.jpg", (0, 0)),
    ("jpeg/icc_profile_big_progressive.jpg", (0, 0)),
    ("jpeg/progressive_app13_iptc.jpg", (0, 0)),
    ("png/rgba_transparent.png", (0, 0)),
    ("png/rgba16_mode_16bit.png", (0, 0)),
    ("png/gray16_trns.png", (0, 0)),
    ("png/palette_indexed.png", (0, 0)),
];

const SQUARES: [(&str, u64); 6] = [
    ("thumb", 100),
    ("square-400", 400),
    ("square-640", 640),
    ("square-888", 888),
    ("itunes", 1400),
    ("square-3000", 3000),
];

fn assets_by_style(assets: &Value) -> std::collections::BTreeMap<String, Value> {
    assets["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|a| (a["style"].as_str().expect("style").to_string(), a.clone()))
        .collect()
}

/// Checks every style of a finished image against the resource, the stored
/// object and the decoded bytes.
async fn check_every_style(app: &TestApp, image: &Value, label: &str) {
    let id = image["id"].as_str().expect("id");
    assert_eq!(image["status"], "finished", "{label}: {image}");
    let (w, h) = (
        image["width"].as_u64().unwrap(),
        image["height"].as_u64().unwrap(),
    );
    let side = w.min(h);
    let assets = assets_by_style(&app.get_assets(id).await);
    let stored = app.catalog.assets(id).await.expect("asset rows");

    let mut expected: BTreeSet<&str> = ["original", "stripped-original", "regular"].into();
    expected.extend(
        SQUARES
            .iter()
            .filter(|(_, s)| *s < 3000 || side >= 3000)
            .map(|(n, _)| *n),
    );
    let got: BTreeSet<&str> = assets.keys().map(String::as_str).collect();
    assert_eq!(got, expected, "{label}: styles");
    assert_eq!(stored.len(), expected.len(), "{label}: one row per style");

    for (style, asset) in &assets {
        let response = app.get_style(id, style, HeaderMap::new()).await;
        assert_eq!(response.status(), 200, "{label} {style}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        let length: u64 = response.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let bytes = response.bytes().await.unwrap();
        assert_eq!(
            content_type, asset["mimetype"],
            "{label} {style}: content type"
        );
        assert_eq!(
            length,
            bytes.len() as u64,
            "{label} {style}: content length"
        );
        assert_eq!(
            bytes.len() as u64,
            asset["size"].as_u64().unwrap(),
            "{label} {style}: size"
        );
        let row = stored.iter().find(|r| r.style == *style).expect("row");
        let stored_object = app
            .store
            .get(&row.storage_key)
            .await
            .expect("stored object");
        assert_eq!(
            stored_object.as_ref(),
            bytes.as_ref(),
            "{label} {style}: served bytes are the stored object"
        );
        assert_eq!(
            easel_render::sha256_hex(&bytes),
            asset["sha256"],
            "{label} {style}: sha256"
        );

        let (dw, dh) = dimensions(&bytes);
        let row_size = (
            asset["width"].as_u64().unwrap(),
            asset["height"].as_u64().unwrap(),
        );
        if style == "original" {
            // Untouched bytes: the header has the stored size, the row the
            // oriented one (EXIF orientations 5-8 swap them).
            assert!(
                row_size == (dw as u64, dh as u64) || row_size == (dh as u64, dw as u64),
                "{label}: original {dw}x{dh} vs row {row_size:?}"
            );
        } else {
            assert_eq!(
                (dw as u64, dh as u64),
                row_size,
                "{label} {style}: header size"
            );
        }
        let want = match style.as_str() {
            "original" | "stripped-original" => None,
            "regular" => Some((side, side)),
            square => SQUARES
                .iter()
                .find(|(n, _)| *n == square)
                .map(|(_, s)| (*s, *s)),
        };
        if let Some(want) = want {
            assert_eq!((dw as u64, dh as u64), want, "{label} {style}: dimensions");
            let upscaled = want.0 > side;
            assert_eq!(asset["upscaled"], upscaled, "{label} {style}: upscaled");
            assert_eq!(
                content_type, "image/jpeg",
                "{label} {style}: derived styles are JPEG"
            );
            // Derived styles must decode, not just have a header.
            image::load_from_memory(&bytes).expect("decodes");
        }
        if style == "stripped-original" {
            assert_eq!(
                (dw as u64, dh as u64),
                (w, h),
                "{label}: stripped-original has the oriented size"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_real_fixture_gets_every_style_with_the_right_size_type_and_bytes() {
    let app = TestApp::spawn().await;
    for (path, size) in REAL_IMAGES {
        let image = app.upload_and_wait(fixture(path)).await;
        if size != (0, 0) {
            assert_eq!(
                (
                    image["width"].as_u64().unwrap(),
                    image["height"].as_u64().unwrap()
                ),
                size,
                "{path}"
            );
        }
        check_every_style(&app, &image, path).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exif_orientation_is_applied_before_any_style_is_cut() {
    let app = TestApp::spawn().await;
    for path in [
        "orientation/Landscape_1.jpg",
        "orientation/Landscape_6.jpg",
        "orientation/Portrait_3.jpg",
        "orientation/Portrait_8.jpg",
        "jpeg/hopper_orientation_6.jpg",
    ] {
        let image = app.upload_and_wait(fixture(path)).await;
        let (w, h) = (
            image["width"].as_u64().unwrap(),
            image["height"].as_u64().unwrap(),
        );
        if path.contains("Landscape") {
            assert!(w > h, "{path}: {w}x{h} should be landscape once oriented");
        } else if path.contains("Portrait") {
            assert!(h > w, "{path}: {w}x{h} should be portrait once oriented");
        }
        check_every_style(&app, &image, path).await;
    }
}

/// Without a feed byte budget (see tests/delivery.rs for one), the feed
/// file is square-3000 whenever the crop allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_alias_serves_square_3000_when_the_crop_allows_it_else_itunes() {
    let app = TestApp::spawn_with(TestOptions {
        feed_max_bytes: 0,
        ..TestOptions::default()
    })
    .await;
    let big = app
        .upload_and_wait(fixture("photo/olympus_e-p3_4032x3024.jpg"))
        .await;
    let small = app
        .upload_and_wait(fixture("photo/iphone6_3264x2448.jpg"))
        .await;

    for (image, expected_style) in [(&big, "square-3000"), (&small, "itunes")] {
        let id = image["id"].as_str().unwrap();
        let feed = app.get_style(id, "feed", HeaderMap::new()).await;
        assert_eq!(feed.status(), 200);
        let etag = feed.headers()["etag"].to_str().unwrap().to_string();
        let expected = app.get_style(id, expected_style, HeaderMap::new()).await;
        assert_eq!(
            etag,
            expected.headers()["etag"].to_str().unwrap(),
            "feed is {expected_style}"
        );
        assert_eq!(feed.bytes().await.unwrap(), expected.bytes().await.unwrap());
    }

    let id = small["id"].as_str().unwrap();
    let body = problem(
        app.get_style(id, "square-3000", HeaderMap::new()).await,
        404,
        "style-not-applicable",
    )
    .await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("3000x3000") && detail.contains("2448x2448"),
        "says why: {detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_style_has_an_sha256_etag_its_version_is_immutable_and_both_answer_304() {
    let app = TestApp::spawn().await;
    let image = app
        .upload_and_wait(fixture("jpeg/exif_iptc_nokia.jpg"))
        .await;
    let id = image["id"].as_str().unwrap();
    let thumb = app.get_style(id, "thumb", HeaderMap::new()).await;
    let headers = thumb.headers().clone();
    let bytes = thumb.bytes().await.unwrap();
    let etag = headers["etag"].to_str().unwrap();
    assert_eq!(etag, format!("\"{}\"", easel_render::sha256_hex(&bytes)));
    // The alias's bytes change with a re-render: short-lived, revalidated.
    assert_eq!(headers["cache-control"], "public, max-age=300");
    assert_eq!(headers["accept-ranges"], "bytes");
    // The versioned URL's never do.
    let version = headers["content-location"].to_str().unwrap();
    let versioned = app.anonymous.get(version).send().await.unwrap();
    assert_eq!(
        versioned.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(versioned.headers()["etag"], etag);
    let again = app
        .anonymous
        .get(version)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let again = app
        .get_style(id, "thumb", header("if-none-match", etag))
        .await;
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag);
    assert!(again.bytes().await.unwrap().is_empty());

    let stale = app
        .get_style(id, "thumb", header("if-none-match", "\"0000\""))
        .await;
    assert_eq!(stale.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_requests_return_exactly_the_bytes_asked_for() {
    let app = TestApp::spawn().await;
    let image = app
        .upload_and_wait(fixture("png/palette_indexed.png"))
        .await;
    let id = image["id"].as_str().unwrap();
    let full = app
        .get_style(id, "itunes", HeaderMap::new())
        .await
        .bytes()
        .await
        .unwrap();
    let size = full.len();

    let first = app
        .get_style(id, "itunes", header("range", "bytes=0-99"))
        .await;
    assert_eq!(first.status(), 206);
    assert_eq!(
        first.headers()["content-range"],
        format!("bytes 0-99/{size}")
    );
    assert_eq!(first.headers()["content-length"], "100");
    assert_eq!(first.bytes().await.unwrap(), full.slice(0..100));

    let tail = app
        .get_style(id, "itunes", header("range", "bytes=-10"))
        .await;
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), full.slice(size - 10..));

    let open = app
        .get_style(
            id,
            "itunes",
            header("range", &format!("bytes={}-", size - 5)),
        )
        .await;
    assert_eq!(open.bytes().await.unwrap(), full.slice(size - 5..));

    let beyond = app
        .get_style(id, "itunes", header("range", &format!("bytes={size}-")))
        .await;
    assert_eq!(beyond.headers()["content-range"], format!("bytes */{size}"));
    problem(beyond, 416, "range-not-satisfiable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_downloads_byte_identical_with_accept_octet_stream() {
    let app = TestApp::spawn().await;
    let original = fixture("photo/nokia8.3_4608x1976.jpg");
    let image = app.upload_and_wait(original.clone()).await;
    let id = image["id"].as_str().unwrap();
    assert_eq!(
        (
            image["width"].as_u64().unwrap(),
            image["height"].as_u64().unwrap()
        ),
        (4608, 1976)
    );

    let download = app.get_original(id).await;
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "image/jpeg");
    assert_eq!(
        download.headers()["content-length"],
        original.len().to_string().as_str()
    );
    assert_eq!(download.bytes().await.unwrap(), original.as_slice());

    let json = app.get_image(id).await;
    assert_eq!(json.headers()["content-type"], "application/json");
    let style = app
        .get_style(id, "original", HeaderMap::new())
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(style, original.as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_body_upload_with_name_and_crop_in_the_query_gets_202_and_a_location() {
    let app = TestApp::spawn().await;
    let response = app
        .upload_raw(
            fixture("photo/iphone6_3264x2448.jpg"),
            "image/jpeg",
            "?name=Season%202%20cover&crop=100,200,1600,1000",
        )
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(location, app.url(&format!("/v1/images/{id}")));
    assert_eq!(body["status"], "ingesting");
    assert_eq!(body["name"], "Season 2 cover");
    assert_eq!(
        body["crop"],
        serde_json::json!({"x": 100, "y": 200, "width": 1600, "height": 1000})
    );
    assert_eq!(body["bucket"], "default");
    assert_eq!(
        body["sha256"],
        easel_render::sha256_hex(&fixture("photo/iphone6_3264x2448.jpg"))
    );

    let done = app.wait_until_done(id).await;
    assert_eq!(done["status"], "finished");
    assert!(done["finished_at"].is_string());
    let assets = assets_by_style(&app.get_assets(id).await);
    assert_eq!(
        (
            assets["regular"]["width"].as_u64(),
            assets["regular"]["height"].as_u64()
        ),
        (Some(1600), Some(1000))
    );
    assert_eq!(
        assets["itunes"]["upscaled"], true,
        "a 1000 px crop is enlarged to 1400"
    );
    assert_eq!(assets["square-888"]["upscaled"], false);
    let listed: Vec<&str> = done["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alias"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(
            &app.url(&format!("/v1/images/{id}/styles/thumb.jpg"))
                .as_str()
        ),
        "{listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_fields_name_facet_tags_and_crop_are_recorded() {
    let app = TestApp::spawn().await;
    let response = app
        .upload_multipart(
            fixture("png/rgba_libvips.png"),
            &[
                ("name", "Cover"),
                ("facet", "cover"),
                ("tags", "podcast, season-1"),
                ("crop", "0,0,50,40"),
            ],
            "",
        )
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "Cover");
    assert_eq!(body["facet"], "cover");
    assert_eq!(body["tags"], serde_json::json!(["podcast", "season-1"]));
    assert_eq!(body["crop"]["width"], 50);
    let done = app.wait_until_done(body["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "finished");
}

/// Beside embedded workers a wait polls the catalogue only rarely: the
/// worker's commit, or the failure it records, must end the wait itself.
/// Here neither the poll (an hour) nor the wait's own end (five minutes)
/// comes before the minute the test allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_ends_when_the_worker_commits_the_render_or_records_its_failure() {
    let app = TestApp::spawn_with(TestOptions {
        wait_poll: Duration::from_secs(3600),
        wait_timeout: Duration::from_secs(300),
        ..TestOptions::default()
    })
    .await;
    let woken = Duration::from_secs(60);
    let failed = tokio::time::timeout(
        woken,
        app.upload_multipart(fixture("corrupt/truncated_image.png"), &[], "?wait=true"),
    )
    .await
    .expect("the recorded failure did not end the wait");
    assert_eq!(failed.status(), 201);
    let failed: Value = failed.json().await.unwrap();
    assert_eq!(failed["status"], "error", "{failed}");
    let rendered = tokio::time::timeout(
        woken,
        app.upload_multipart(fixture("jpeg/hopper_orientation_6.jpg"), &[], "?wait=true"),
    )
    .await
    .expect("the committed render did not end the wait");
    assert_eq!(rendered.status(), 201);
    let rendered: Value = rendered.json().await.unwrap();
    assert_eq!(rendered["status"], "finished", "{rendered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_ends_in_error_with_a_reason_and_its_styles_say_why() {
    let app = TestApp::spawn().await;
    let response = app
        .upload_multipart(fixture("corrupt/truncated_image.png"), &[], "?wait=true")
        .await;
    assert_eq!(response.status(), 201);
    let image: Value = response.json().await.unwrap();
    assert_eq!(image["status"], "error", "{image}");
    assert_eq!(image["error_code"], "corrupt-image");
    assert!(
        image["error"]
            .as_str()
            .unwrap()
            .contains("truncated or corrupt"),
        "{image}"
    );
    let id = image["id"].as_str().unwrap();
    let body = problem(
        app.get_style(id, "thumb", HeaderMap::new()).await,
        404,
        "image-failed",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("truncated"));
    assert_eq!(
        app.catalog.assets(id).await.unwrap().len(),
        0,
        "no assets for a failed image"
    );
    let jobs = app.catalog.jobs_for_image(id).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].attempts, 1, "bad images are not retried");
}

/// Sends `bytes` raw (as `content_type`) and as a multipart form, and
/// checks both are refused with `status` and `code`; the raw answer's body.
async fn refused_raw_and_multipart(
    app: &TestApp,
    bytes: Vec<u8>,
    content_type: &str,
    status: u16,
    code: &str,
) -> Value {
    let body = problem(
        app.upload_raw(bytes.clone(), content_type, "").await,
        status,
        code,
    )
    .await;
    problem(app.upload_multipart(bytes, &[], "").await, status, code).await;
    body
}

/// An app whose byte limit is `max_bytes`.
async fn app_taking_at_most(max_bytes: u64) -> TestApp {
    TestApp::spawn_with(TestOptions {
        max_bytes,
        ..TestOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_file_gets_415_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let text = b"Episode notes: not an image at all.\n".to_vec();
    let body = refused_raw_and_multipart(&app, text, "text/plain", 415, "unsupported-format").await;
    assert!(body["detail"].as_str().unwrap().contains("text"), "{body}");
    assert!(app.stored_keys("originals").await.is_empty());
    assert_eq!(app.catalog.queue_depth().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_byte_limit_gets_413_before_anything_is_stored() {
    let app = app_taking_at_most(100_000).await;
    let big = fixture("orientation/Landscape_1.jpg");
    assert!(big.len() > 300_000);
    refused_raw_and_multipart(&app, big, "image/jpeg", 413, "too-many-bytes").await;
    assert!(app.stored_keys("originals").await.is_empty());
    // Under the limit still works.
    let small = app
        .upload_multipart(fixture("jpeg/exif_iptc_nokia.jpg"), &[], "")
        .await;
    assert_eq!(small.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_gets_422_too_many_pixels_before_anything_is_stored() {
    let app = TestApp::spawn().await;
    let bomb = png_bomb(20_000, 20_000);
    assert!(bomb.len() < 100);
    let body = refused_raw_and_multipart(&app, bomb, "image/png", 422, "too-many-pixels").await;
    assert!(
        body["detail"].as_str().unwrap().contains("20000x20000"),
        "{body}"
    );
    assert!(app.stored_keys("originals").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crop_outside_the_image_is_a_422_that_names_the_edge() {
    let app = TestApp::spawn().await;
    let image = fixture("jpeg/exif_iptc_nokia.jpg");
    let body = problem(
        app.upload_raw(image.clone(), "image/jpeg", "?crop=0,0,100000,10")
            .await,
        422,
        "crop-out-of-bounds",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("right"), "{body}");
    problem(
        app.upload_raw(image.clone(), "image/jpeg", "?crop=1,2,3")
            .await,
        422,
        "crop-invalid",
    )
    .await;
    problem(
        app.upload_raw(image, "image/jpeg", "?crop=0,0,0,10").await,
        422,
        "crop-empty",
    )
    .await;
    assert!(app.stored_keys("originals").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identical_uploads_share_one_stored_original_and_one_set_of_files() {
    let app = TestApp::spawn().await;
    let bytes = fixture("jpeg/progressive_app13_iptc.jpg");
    let a = app.upload_and_wait(bytes.clone()).await;
    let b = app.upload_and_wait(bytes).await;
    assert_ne!(a["id"], b["id"], "two uploads are two images");
    assert_eq!(a["sha256"], b["sha256"]);
    assert_eq!(
        app.stored_keys("originals").await.len(),
        1,
        "one stored original"
    );
    let styles = app.get_assets(a["id"].as_str().unwrap()).await["data"]
        .as_array()
        .unwrap()
        .len();
    // Rendering is deterministic and keys are hashes: the second image's
    // files are the first one's.
    assert_eq!(app.stored_keys("renders").await.len(), styles - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_died_is_finished_by_another_worker_with_one_set_of_assets() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        lease: Duration::from_secs(30),
        ..TestOptions::default()
    })
    .await;
    let response = app
        .upload_multipart(fixture("photo/iphone6_3264x2448.jpg"), &[], "")
        .await;
    assert_eq!(response.status(), 202);
    let id = id_of(response).await;

    // Worker A claims the job with a short lease, then "dies": it never
    // renews and never finishes.
    let dead = app
        .catalog
        .claim_job("worker-a", now_ms(), 300)
        .await
        .unwrap()
        .expect("a job to claim");
    assert_eq!(dead.image_id, id);
    let b = app.worker.named("worker-b");
    assert_eq!(
        b.run_once().await.unwrap(),
        None,
        "a live lease is not claimable"
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    let outcome = b.run_once().await.unwrap().expect("the lapsed job");
    assert!(
        matches!(outcome, Outcome::Finished { ref image_id, .. } if *image_id == id),
        "{outcome:?}"
    );

    // A comes back from the dead and tries to record its work: refused.
    let late = app
        .catalog
        .finish_job(
            &dead,
            "worker-a",
            &easel_catalog::Finish::of(&[]),
            chrono::Utc::now(),
        )
        .await;
    assert!(
        matches!(late, Err(easel_catalog::CatalogError::LeaseLost { .. })),
        "{late:?}"
    );

    let image = app.wait_until_done(&id).await;
    assert_eq!(image["status"], "finished");
    let rows = app.catalog.assets(&id).await.unwrap();
    let styles: BTreeSet<&str> = rows.iter().map(|r| r.style.as_str()).collect();
    assert_eq!(styles.len(), rows.len(), "exactly one row per style");
    assert_eq!(
        rows.len(),
        8,
        "original, stripped-original, regular and five squares"
    );
    let jobs = app.catalog.jobs_for_image(&id).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].attempts, 2, "claimed by A, then by B");
    assert_eq!(b.run_once().await.unwrap(), None, "nothing left to do");
    check_every_style(&app, &image, "after takeover").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_images_styles_and_routes_are_404_problem_json() {
    let app = TestApp::spawn().await;
    problem(app.get("/v1/images/nope").await, 404, "image-not-found").await;
    problem(
        app.get("/v1/images/nope/styles/thumb").await,
        404,
        "image-not-found",
    )
    .await;
    problem(app.get("/v1/nothing-here").await, 404, "not-found").await;
    let image = app.upload_and_wait(fixture("png/gray_alpha_la.png")).await;
    let id = image["id"].as_str().unwrap();
    let body = problem(
        app.get_style(id, "square-401", HeaderMap::new()).await,
        404,
        "unknown-style",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("itunes"),
        "lists the styles: {body}"
    );
    let put = app.client.put(app.url("/v1/images")).send().await.unwrap();
    problem(put, 405, "method-not-allowed").await;
    problem(
        app.upload_raw(Vec::new(), "image/png", "").await,
        415,
        "empty-file",
    )
    .await;
    problem(
        app.upload_raw(
            fixture("png/gray_alpha_la.png"),
            "image/png",
            "?wait=perhaps",
        )
        .await,
        400,
        "invalid-parameter",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_style_asked_for_while_rendering_is_a_404_that_says_to_retry() {
    let app = TestApp::spawn_without_workers().await;
    let response = app
        .upload_multipart(fixture("png/gray_alpha_la.png"), &[], "")
        .await;
    let id = id_of(response).await;
    let pending = app.get_style(&id, "thumb", HeaderMap::new()).await;
    assert_eq!(pending.headers()["retry-after"], "1");
    problem(pending, 404, "style-not-ready").await;
    // The original is stored before the upload is acknowledged.
    assert_eq!(app.get_original(&id).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_prometheus_metrics_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    app.upload_and_wait(fixture("jpeg/exif_iptc_nokia.jpg"))
        .await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    for name in [
        "easel_uploads_total",
        "easel_renders_total{style=\"thumb\"}",
        "easel_render_seconds_bucket",
        "easel_style_render_seconds_bucket{style=\"itunes\"",
        "easel_queue_depth",
        "easel_http_requests_total",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

/// The `easel` binary itself, configured only by environment variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_easel_binary_serves_on_embedded_defaults_from_env_vars() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .arg("migrate")
        .env("EASEL_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    assert!(
        data.join("easel.db").is_file(),
        "SQLite at $EASEL_DATA_DIR/easel.db"
    );

    let (_serve, base) = easel_serve(&data, &[("EASEL_LOG_FORMAT", "json")]).await;
    let (_, client) = easel_key(&data);
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The embedded worker renders it.
    upload_jpeg_and_wait(&client, &base, fixture("jpeg/hopper_orientation_6.jpg")).await;
    assert!(
        data.join("objects").join("originals").is_dir(),
        "objects under $EASEL_DATA_DIR/objects"
    );
}

/// `easel serve` hands an upload's original to its own render loop in
/// memory instead of reading it back from the store, and stores it all
/// the same: the stored object is the upload, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_renders_an_upload_from_the_bytes_it_stored_and_keeps_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_serve, base) = easel_serve(&data, &[]).await;
    let (_, client) = easel_key(&data);
    let handovers = |page: &str, from: &str| {
        metric_in(
            page,
            &format!("easel_original_handovers_total{{from=\"{from}\"}}"),
        )
    };
    let original = fixture("jpeg/exif_iptc_nokia.jpg");
    for round in 1..=2u64 {
        // Distinct bytes each time (after the JPEG's end), so both render.
        let mut upload = original.clone();
        upload.extend_from_slice(format!("round {round}").as_bytes());
        let image = upload_jpeg_and_wait(&client, &base, upload.clone()).await;
        let id = image["id"].as_str().unwrap();
        let stored = client
            .get(format!("{base}/v1/images/{id}"))
            .header("accept", "application/octet-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(stored.status(), 200);
        assert_eq!(stored.bytes().await.unwrap(), upload, "the stored original");

        let metrics = get_text(&client, format!("{base}/metrics")).await;
        assert_eq!(handovers(&metrics, "memory"), round as f64, "{metrics}");
        assert_eq!(handovers(&metrics, "store"), 0.0, "{metrics}");
        // Taken, and the rendered files were never held.
        assert_eq!(
            metric_in(&metrics, "easel_original_handover_bytes"),
            0.0,
            "{metrics}"
        );
    }
}

/// Scale-out shape: an API with no embedded worker, and `easel worker`
/// processes sharing its database and store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_worker_process_renders_for_an_api_without_embedded_workers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_serve, base) = easel_serve(&data, &[("EASEL_WORKERS", "0")]).await;
    let (_, client) = easel_key(&data);
    let upload = |bytes: Vec<u8>| {
        client
            .post(format!("{base}/v1/images"))
            .header("content-type", "image/png")
            .body(bytes)
            .send()
    };
    let first: Value = upload(fixture("png/gray_alpha_la.png"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting: Value = get_json(&client, format!("{base}/v1/images/{id}")).await;
    assert_eq!(waiting["status"], "ingesting", "no worker yet");

    let _worker = easel(
        &["worker"],
        &[("EASEL_DATA_DIR", &data)],
        &[("EASEL_WORKERS", "2")],
    );
    let mut status = Value::Null;
    for _ in 0..2400 {
        let image: Value = get_json(&client, format!("{base}/v1/images/{id}")).await;
        status = image["status"].clone();
        if status != "ingesting" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status, "finished",
        "the worker process rendered the queued image"
    );
    let thumb = client
        .get(format!("{base}/v1/images/{id}/styles/thumb"))
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.status(), 200);
    assert_eq!(dimensions(&thumb.bytes().await.unwrap()), (100, 100));
}

/// Our own object store down (connection refused): each retry backs off
/// longer, spends none of the job's attempts (one is all it has here), and
/// the image stays `ingesting`, not `error`, until the store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_our_store_backs_off_without_spending_attempts() {
    let (app, id) = one_upload_without_workers().await;
    // Nothing listens on port 9 of loopback: every request is refused.
    let down = s3_store_at("easel-down", "http://127.0.0.1:9");
    let base = Duration::from_millis(100);
    let worker = worker_on(
        &app,
        "outage",
        down,
        easel_worker::WorkerConfig {
            max_attempts: 1,
            retry_base: base,
            ..easel_worker::WorkerConfig::default()
        },
    );
    for outages in 1..=3i64 {
        let before = now_ms();
        let outcome = worker.run_once().await.unwrap().expect("a job");
        assert!(matches!(outcome, Outcome::Retried { .. }), "{outcome:?}");
        let job = app.catalog.jobs_for_image(&id).await.unwrap().remove(0);
        assert_eq!((job.attempts, job.outages), (0, outages), "{job:?}");
        // 100 ms, 200 ms, 400 ms: doubling with every outage.
        let backoff = base.as_millis() as i64 * (1 << (outages - 1));
        assert!(
            job.run_after >= before + backoff,
            "outage {outages}: due {} ms after the claim, expected at least {backoff}",
            job.run_after - before
        );
        tokio::time::sleep(Duration::from_millis(
            (job.run_after - now_ms()).max(0) as u64 + 20,
        ))
        .await;
    }
    let image: Value = app.image_json(&id).await;
    assert_eq!(image["status"], "ingesting", "{image}");

    // The store is back (the app's own worker uses the real one).
    let outcome = app.worker.run_once().await.unwrap().expect("the job");
    assert!(matches!(outcome, Outcome::Finished { .. }), "{outcome:?}");
}

/// A store that refuses every request (403), as one with a wrong policy
/// does for a while: an error, but not an outage of the store.
async fn refusing_store() -> easel_storage::BlobStore {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::FORBIDDEN,
            "<Error><Code>AccessDenied</Code><Message>no</Message></Error>",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    s3_store_at("easel-refusing", &format!("http://{addr}"))
}

/// The JSON at `url` (of a running `easel serve`).
async fn get_json(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

async fn get_text(client: &reqwest::Client, url: String) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// Uploads a JPEG to the `easel serve` at `base` with `?wait=true`: a 201
/// with the image rendered (`finished`), which it returns.
async fn upload_jpeg_and_wait(client: &reqwest::Client, base: &str, jpeg: Vec<u8>) -> Value {
    let response = client
        .post(format!("{base}/v1/images?wait=true"))
        .header("content-type", "image/jpeg")
        .body(jpeg)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let image: Value = response.json().await.unwrap();
    assert_eq!(image["status"], "finished", "{image}");
    image
}

/// An app without workers, and the id of one upload waiting for them.
async fn one_upload_without_workers() -> (TestApp, String) {
    let app = TestApp::spawn_without_workers().await;
    let response = app
        .upload_multipart(fixture("png/rgba_libvips.png"), &[], "")
        .await;
    let id = id_of(response).await;
    (app, id)
}

/// Bucket `bucket` of an S3 store at `endpoint` (plain HTTP, test keys).
fn s3_store_at(bucket: &str, endpoint: &str) -> easel_storage::BlobStore {
    easel_storage::BlobStore::from_url_with_options(
        &format!("s3://{bucket}"),
        [
            ("aws_endpoint", endpoint),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
            ("aws_region", "us-east-1"),
        ],
    )
    .unwrap()
}

/// A worker of `app`'s catalogue on `store`, with one render thread.
fn worker_on(
    app: &TestApp,
    name: &str,
    store: easel_storage::BlobStore,
    config: easel_worker::WorkerConfig,
) -> easel_worker::Worker {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    easel_worker::Worker::new(
        name,
        app.catalog.clone(),
        store,
        std::sync::Arc::new(easel_render::Settings::default()),
        std::sync::Arc::new(pool),
        config,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_is_retried_with_backoff_and_then_succeeds() {
    let (app, id) = one_upload_without_workers().await;
    // The store refuses requests for a while. (A missing original is not
    // this: it fails at once, as `original-missing`.)
    let refused = worker_on(
        &app,
        "refused",
        refusing_store().await,
        easel_worker::WorkerConfig::default(),
    );

    let outcome = refused.run_once().await.unwrap().expect("a job");
    assert!(matches!(outcome, Outcome::Retried { .. }), "{outcome:?}");
    let job = app.catalog.jobs_for_image(&id).await.unwrap().remove(0);
    assert!(job.run_after > now_ms(), "backing off");
    assert_eq!(
        (job.attempts, job.outages),
        (1, 0),
        "an attempt spent: {job:?}"
    );
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("blob store failure"),
        "{job:?}"
    );
    assert_eq!(app.worker.run_once().await.unwrap(), None, "not due yet");
    let image: Value = app.image_json(&id).await;
    assert_eq!(
        image["status"], "ingesting",
        "a storage hiccup is not the image's fault"
    );

    let wait = Duration::from_millis((job.run_after - now_ms()).max(0) as u64 + 50);
    tokio::time::sleep(wait).await;
    let outcome = app
        .worker
        .run_once()
        .await
        .unwrap()
        .expect("the retried job");
    assert!(matches!(outcome, Outcome::Finished { .. }), "{outcome:?}");
    assert_eq!(
        app.catalog.jobs_for_image(&id).await.unwrap()[0].attempts,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_workers_render_several_uploads_each_exactly_once() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 3,
        ..TestOptions::default()
    })
    .await;
    let files = [
        "png/gray_alpha_la.png",
        "png/rgba_libvips.png",
        "jpeg/exif_iptc_nokia.jpg",
        "jpeg/hopper_orientation_6.jpg",
        "png/gray16_trns.png",
        "jpeg/cmyk_pil_sample.jpg",
    ];
    let uploads: Vec<_> = files
        .iter()
        .map(|f| {
            let request = app
                .client
                .post(app.url("/v1/images"))
                .header("content-type", "application/octet-stream")
                .body(fixture(f));
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for upload in uploads {
        let response = upload.await.unwrap();
        assert_eq!(response.status(), 202);
        ids.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in &ids {
        assert_eq!(app.wait_until_done(id).await["status"], "finished");
        let jobs = app.catalog.jobs_for_image(id).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            jobs[0].attempts, 1,
            "claimed once: no two workers raced for it"
        );
        assert_eq!(app.catalog.assets(id).await.unwrap().len(), 8);
    }
    assert_eq!(app.catalog.queue_depth().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_without_content_length_is_cut_off_at_the_limit_with_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = app_taking_at_most(100_000).await;
    let body = fixture("orientation/Landscape_1.jpg");
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/images HTTP/1.1\r\nHost: easel\r\nContent-Type: image/jpeg\r\n\
         Authorization: Bearer {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(16 * 1024) {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(chunk);
        frame.extend_from_slice(b"\r\n");
        stream.write_all(&frame).await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("\"code\":\"too-many-bytes\""),
        "{response}"
    );
    assert!(app.stored_keys("originals").await.is_empty());
}

/// Runs `easel ARGS` on a data dir to the end; its exit status, stdout and
/// stderr.
fn easel_run(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(args)
        .env("EASEL_DATA_DIR", data)
        .output()
        .expect("run easel");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The batch id in `easel rerender`'s "started|resuming batch ID (...)".
fn batch_id_in(stderr: &str, verb: &str) -> String {
    let needle = format!("{verb} batch ");
    let start = stderr
        .find(&needle)
        .unwrap_or_else(|| panic!("no {needle:?} in {stderr}"))
        + needle.len();
    stderr[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The operator's path after a settings change: `easel rerender --dry-run`
/// counts what is stale, an interrupted run resumes the same batch when run
/// again, every stale image is rendered with the new settings (and the
/// fingerprint on its assets says so), a failure is reported with its
/// reason while the image keeps serving its old files, and afterwards
/// nothing is stale.
/// Three images rendered by `easel serve` on `data`, which is stopped
/// again: their resources.
async fn three_rendered_images(data: &std::path::Path) -> Vec<Value> {
    let (serve, base) = easel_serve(data, &[]).await;
    let (_, client) = easel_key(data);
    let mut images = Vec::new();
    for path in [
        "png/gray_alpha_la.png",
        "png/palette_indexed.png",
        "jpeg/hopper_orientation_6.jpg",
    ] {
        let response = client
            .post(format!("{base}/v1/images?wait=true"))
            .header("content-type", "application/octet-stream")
            .body(fixture(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{path}");
        let image: Value = response.json().await.unwrap();
        assert_eq!(image["status"], "finished", "{image}");
        images.push(image);
    }
    drop(serve);
    images
}

/// Deletes the image's original from the local store, behind the
/// catalogue's back.
fn remove_original(data: &std::path::Path, image: &Value) {
    let sha = image["sha256"].as_str().unwrap();
    let key = data
        .join("objects/originals")
        .join(&sha[0..2])
        .join(&sha[2..4])
        .join(sha);
    std::fs::remove_file(&key).expect("the original is stored under its hash");
}

/// Runs `easel rerender --concurrency 0` (queue only, no render loops) for
/// bucket `default` at quality 70 and stops it with Ctrl-C once it has
/// started its batch: it says how to resume, exits 0, and has rendered
/// nothing. The batch's id.
fn a_queue_only_rerender_stopped_by_ctrl_c_leaves_its_batch_queued(
    data: &std::path::Path,
) -> String {
    use std::io::{BufRead, BufReader};

    let mut queue_only = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args([
            "rerender",
            "--bucket",
            "default",
            "--quality",
            "70",
            "--concurrency",
            "0",
        ])
        .env("EASEL_DATA_DIR", data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn easel rerender");
    let mut stderr = BufReader::new(queue_only.stderr.take().unwrap());
    let mut started = String::new();
    while !started.contains("started batch") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited early: {started}"
        );
        started.push_str(&line);
    }
    let batch = batch_id_in(&started, "started");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &queue_only.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = queue_only.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(output.status.success(), "{rest}");
    assert!(
        rest.contains("interrupted; run the same command again to resume"),
        "{rest}"
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("0 done, 0 failed"), "{summary}");
    batch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn easel_rerender_renders_what_a_settings_change_made_stale_and_resumes_after_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let images = three_rendered_images(&data).await;
    let (_, client) = easel_key(&data);
    let thumb = |image: &Value| -> (String, String) {
        let asset = asset(image, "thumb");
        (
            asset["sha256"].as_str().unwrap().to_string(),
            asset["settings_fingerprint"].as_str().unwrap().to_string(),
        )
    };
    let before: Vec<(String, String)> = images.iter().map(thumb).collect();

    // Same settings: nothing to do.
    let (ok, stdout, stderr) = easel_run(&data, &["rerender", "--dry-run"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("easel: 0 image(s)"), "{stdout}");
    // A new quality makes all three stale.
    let (ok, stdout, stderr) = easel_run(&data, &["rerender", "--dry-run", "--quality", "70"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("easel: 3 image(s)"), "{stdout}");

    // One original vanishes from the store: its re-render must fail, with
    // a reason, and leave the image as it was.
    let lost = images[2]["id"].as_str().unwrap().to_string();
    remove_original(&data, &images[2]);

    // Queue only (no render loops here), then Ctrl-C. For bucket
    // `default`, so its key can follow the batch over the API too.
    let batch = a_queue_only_rerender_stopped_by_ctrl_c_leaves_its_batch_queued(&data);

    // The same command again resumes that batch and renders here.
    let (ok, stdout, stderr) = easel_run(
        &data,
        &[
            "rerender",
            "--bucket",
            "default",
            "--quality",
            "70",
            "--concurrency",
            "1",
            "--max-attempts",
            "1",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(batch_id_in(&stderr, "resuming"), batch, "{stderr}");
    assert!(
        !stderr.contains("INFO"),
        "the workers' INFO lines would scroll the progress bar away: {stderr}"
    );
    assert!(
        stdout.contains(&format!(
            "batch {batch}: 2 done, 1 failed, 0 still queued, 0 not queued yet"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("failed: {lost} (the original (originals/")),
        "the failure and its reason: {stdout}"
    );

    // Finished: the same command starts afresh and finds only the image
    // whose original is gone (images in error aside, a failed batch job
    // leaves the image finished with its old files).
    let (ok, stdout, stderr) = easel_run(&data, &["rerender", "--dry-run", "--quality", "70"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("easel: 1 image(s)"), "{stdout}");

    let (_serve, base) = easel_serve(&data, &[("EASEL_JPEG_QUALITY", "70")]).await;
    for (image, (old_sha, old_fingerprint)) in images.iter().zip(&before) {
        let id = image["id"].as_str().unwrap();
        let now: Value = get_json(&client, format!("{base}/v1/images/{id}")).await;
        assert_eq!(now["status"], "finished", "{now}");
        let (sha, fingerprint) = thumb(&now);
        let served = client
            .get(format!("{base}/v1/images/{id}/styles/thumb"))
            .send()
            .await
            .unwrap();
        assert_eq!(served.status(), 200);
        assert_eq!(
            easel_render::sha256_hex(&served.bytes().await.unwrap()),
            sha,
            "the served file is the recorded one"
        );
        if id == lost {
            assert_eq!((&sha, &fingerprint), (old_sha, old_fingerprint), "kept");
        } else {
            assert_ne!(&sha, old_sha, "quality 70 makes other bytes");
            assert_ne!(&fingerprint, old_fingerprint);
        }
    }
    let batch_view: Value = get_json(&client, format!("{base}/v1/batches/{batch}")).await;
    assert_eq!(batch_view["complete"], true, "{batch_view}");
    assert_eq!(batch_view["counts"]["done"], 2);
    assert_eq!(batch_view["failures"][0]["image_id"], lost.as_str());
}

/// `KEY=$(easel keys create ...)` must capture the key and nothing else:
/// what it says about the key goes to stderr.
#[test]
fn keys_create_prints_only_the_key_on_stdout() {
    let data = tempfile::tempdir().expect("temp dir");
    let (ok, stdout, stderr) = easel_run(
        data.path(),
        &[
            "keys",
            "create",
            "--bucket",
            "shows",
            "--scopes",
            "image:read",
        ],
    );
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {stdout:?}");
    assert!(lines[0].starts_with("easel_"), "stdout: {stdout:?}");
    assert!(!lines[0].contains(' '), "stdout: {stdout:?}");
    assert!(stderr.contains("for bucket \"shows\""), "{stderr}");
}

/// `keys create --roles` makes a key holding roles (and no scope unless
/// asked), `keys list` shows them, and a role that is not a URI is refused.
#[test]
fn keys_create_grants_roles_and_keys_list_shows_them() {
    let data = tempfile::tempdir().expect("temp dir");
    let members = "https://example.org/roles/members";
    let (ok, stdout, stderr) = easel_run(
        data.path(),
        &[
            "keys",
            "create",
            "--roles",
            &format!("{members},urn:x:staff"),
            "--name",
            "member",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.trim().starts_with("easel_"), "{stdout}");
    assert!(
        stderr.contains(&format!("roles {members},urn:x:staff")),
        "{stderr}"
    );
    let (ok, listed, stderr) = easel_run(data.path(), &["keys", "list"]);
    assert!(ok, "{stderr}");
    let row = listed
        .lines()
        .find(|line| line.contains("member"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row.ends_with(&format!("{members},urn:x:staff")), "{row}");
    assert!(!row.contains("image:read"), "roles only: {row}");
    assert!(
        listed.lines().next().unwrap().ends_with("roles"),
        "{listed}"
    );

    let (ok, _, stderr) = easel_run(data.path(), &["keys", "create", "--roles", "not a uri"]);
    assert!(!ok);
    assert!(stderr.contains("not an absolute URI"), "{stderr}");
}

/// Bucket names are `[A-Za-z0-9._-]{1,64}` wherever the CLI takes one; any
/// other is refused with the rule, a non-zero exit, and nothing written.
#[test]
fn the_cli_refuses_bucket_names_outside_the_alphabet() {
    let data = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
            .args(args)
            .env("EASEL_DATA_DIR", data.path())
            .output()
            .expect("run easel")
    };
    let too_long = "b".repeat(65);
    for args in [
        &["buckets", "set-styles", "no such/bucket!", "private"][..],
        &["buckets", "set-styles", "", "public"],
        &["buckets", "show", "a/b"],
        &["keys", "create", "--bucket", "x y"],
        &["keys", "create", "--bucket", &too_long],
        &["rerender", "--dry-run", "--bucket", "caf\u{e9}"],
    ] {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains("bucket names are 1 to 64 characters of A-Z a-z 0-9 . _ -"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read_dir(data.path()).unwrap().count(),
        0,
        "a refused command touches no database"
    );

    let longest = "b".repeat(64);
    let output = run(&["buckets", "set-styles", "Shows.2026_a-b", "private"]);
    assert!(output.status.success(), "{output:?}");
    let output = run(&["buckets", "show", "Shows.2026_a-b"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("need an image:read key"),
        "{output:?}"
    );
    let output = run(&["keys", "create", "--bucket", &longest]);
    assert!(output.status.success(), "{output:?}");
}
