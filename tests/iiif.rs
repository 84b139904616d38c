//! IIIF over real HTTP: the render cache's budget and its clean-up, render
//! slots, when a stored style may answer, canonical links, limits, CORS and
//! caching headers.

mod common;

use std::time::{Duration, Instant};

use common::{dimensions, easel_key, easel_serve, fixture, problem, TestApp, TestOptions};
use easel_api::iiif::IiifConfig;
use easel_catalog::BucketSettings;
use easel_render::iiif::IiifLimits;
use serde_json::{json, Value};

/// 640x480.
const MEDIUM_JPEG: &str = "jpeg/exif_iptc_nokia.jpg";
/// 128x128.
const SMALL_JPEG: &str = "jpeg/hopper_orientation_6.jpg";
const PHOTO: &str = "photo/olympus_e-p3_4032x3024.jpg";

const RED: [u8; 3] = [220, 30, 30];
const BLUE: [u8; 3] = [30, 40, 210];

fn with_iiif(iiif: IiifConfig) -> TestOptions {
    TestOptions {
        iiif,
        ..TestOptions::default()
    }
}

/// A PNG whose pixel (x, y) is `colour(x, y)`.
fn png(width: u32, height: u32, colour: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb(colour(x, y)));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

async fn upload(app: &TestApp, bytes: Vec<u8>) -> String {
    let image = app.upload_and_wait(bytes).await;
    assert_eq!(image["status"], "finished", "{image}");
    image["id"].as_str().expect("id").to_string()
}

async fn get_ok(client: &reqwest::Client, url: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let response = client.get(url).send().await.expect("get");
    assert_eq!(response.status(), 200, "{url}");
    let headers = response.headers().clone();
    (headers, response.bytes().await.expect("body").to_vec())
}

/// Where the cache keeps the render with this ETag.
fn cache_key(etag: &reqwest::header::HeaderValue, extension: &str) -> String {
    let hash = etag.to_str().unwrap().trim_matches('"');
    format!("iiif/{}/{}/{hash}.{extension}", &hash[..2], &hash[2..4])
}

/// The cache's objects and the bytes they take, from the store itself.
async fn cached_objects(app: &TestApp) -> (Vec<String>, u64) {
    let keys = app.stored_keys("iiif").await;
    let mut total = 0;
    for key in &keys {
        total += app.store.size(key).await.expect("size of a cached object");
    }
    (keys, total)
}

fn mean(img: &image::RgbImage, x0: u32, y0: u32, side: u32) -> [u8; 3] {
    let mut sum = [0u64; 3];
    for y in y0..y0 + side {
        for x in x0..x0 + side {
            for (c, s) in sum.iter_mut().enumerate() {
                *s += img.get_pixel(x, y)[c] as u64;
            }
        }
    }
    let n = (side * side) as u64;
    sum.map(|s| (s / n) as u8)
}

fn near(got: [u8; 3], want: [u8; 3], label: &str) {
    let off = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as i32 - w as i32).abs())
        .max()
        .unwrap();
    assert!(off <= 12, "{label}: {got:?} is not {want:?}");
}

fn decode(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory(bytes).expect("decode").to_rgb8()
}

// ------------------------------------------------------------- the cache

/// Many distinct renders against a small budget: the bytes under `iiif/`
/// never exceed it, what was used last (a render hit before every new one)
/// and what was rendered last survive, and the catalogue's count agrees
/// with the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_render_cache_stays_within_its_budget_and_keeps_the_most_recently_used() {
    const BUDGET: u64 = 40_000;
    let app = TestApp::spawn_with(with_iiif(IiifConfig {
        cache_budget_bytes: BUDGET,
        // Every hit counts, so the order is exact.
        cache_touch_interval: Duration::ZERO,
        ..IiifConfig::default()
    }))
    .await;
    let id = upload(&app, fixture(MEDIUM_JPEG)).await;
    let favourite = app.url(&format!("/iiif/3/{id}/full/150,/0/default.jpg"));
    let (headers, first) = get_ok(&app.anonymous, &favourite).await;
    let favourite_key = cache_key(&headers["etag"], "jpg");

    let mut rendered = first.len() as u64;
    let mut largest = first.len() as u64;
    for width in (160..=400).step_by(20) {
        let (_, again) = get_ok(&app.anonymous, &favourite).await;
        assert_eq!(again, first, "a hit is the same bytes");
        // Uses are ordered by the millisecond.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let url = app.url(&format!("/iiif/3/{id}/full/{width},/0/default.jpg"));
        let (headers, bytes) = get_ok(&app.anonymous, &url).await;
        rendered += bytes.len() as u64;
        largest = largest.max(bytes.len() as u64);
        tokio::time::sleep(Duration::from_millis(5)).await;

        let (keys, total) = cached_objects(&app).await;
        assert!(total <= BUDGET, "{total} bytes cached after {width},");
        assert!(
            keys.contains(&favourite_key),
            "the most recently used render survives {width},"
        );
        assert!(
            keys.contains(&cache_key(&headers["etag"], "jpg")),
            "the newest render is kept"
        );
        assert_eq!(
            app.catalog.iiif_cache_bytes().await.unwrap() as u64,
            total,
            "the catalogue counts what the store holds"
        );
    }
    // What makes this test mean something.
    assert!(rendered > 2 * BUDGET, "{rendered} bytes rendered in all");
    assert!(2 * largest <= BUDGET, "two renders fit: {largest}");
    let (keys, _) = cached_objects(&app).await;
    assert!(keys.len() < 14, "renders were evicted: {keys:?}");
}

/// An object that went missing (deleted by hand, or evicted by another node
/// a moment ago) is rendered again, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_render_whose_object_is_gone_is_rendered_again() {
    let app = TestApp::spawn().await;
    let id = upload(&app, fixture(SMALL_JPEG)).await;
    let url = app.url(&format!("/iiif/3/{id}/full/50,/90/gray.png"));
    let (headers, first) = get_ok(&app.anonymous, &url).await;
    let key = cache_key(&headers["etag"], "png");
    assert_eq!(app.stored_keys("iiif").await, std::slice::from_ref(&key));
    app.store.delete(&key).await.unwrap();

    let (_, again) = get_ok(&app.anonymous, &url).await;
    assert_eq!(again, first, "rendering is deterministic");
    assert_eq!(app.stored_keys("iiif").await, [key]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_budget_of_zero_keeps_nothing() {
    let app = TestApp::spawn_with(with_iiif(IiifConfig {
        cache_budget_bytes: 0,
        ..IiifConfig::default()
    }))
    .await;
    let id = upload(&app, fixture(SMALL_JPEG)).await;
    for _ in 0..2 {
        let url = app.url(&format!("/iiif/3/{id}/full/50,/0/default.jpg"));
        let (_, bytes) = get_ok(&app.anonymous, &url).await;
        assert_eq!(dimensions(&bytes), (50, 50));
    }
    assert!(app.stored_keys("iiif").await.is_empty());
    assert_eq!(app.catalog.iiif_cache_bytes().await.unwrap(), 0);
}

/// The budget is a setting of `easel serve`: with 0, renders are served
/// and nothing is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn easel_serve_takes_its_cache_budget_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_serve, base) = easel_serve(&data, &[("EASEL_IIIF_CACHE_BYTES", "0")]).await;
    let (_, client) = easel_key(&data);
    let response = client
        .put(format!("{base}/v1/images/budget?wait=true"))
        .header("content-type", "image/jpeg")
        .body(fixture(SMALL_JPEG))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let url = format!("{base}/iiif/3/budget/full/50,/0/default.jpg");
    let (_, bytes) = get_ok(&client, &url).await;
    assert_eq!(dimensions(&bytes), (50, 50));
    assert!(data.join("objects").join("originals").is_dir());
    assert!(
        !data.join("objects").join("iiif").exists(),
        "no render kept with a budget of 0"
    );
}

/// Renders are shared by images with the same original: they stay while
/// one of them does, and go with the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_delete_removes_the_renders_of_the_last_image_with_that_original() {
    let app = TestApp::spawn().await;
    let a = upload(&app, fixture(SMALL_JPEG)).await;
    let b = upload(&app, fixture(SMALL_JPEG)).await;
    let other = upload(&app, fixture("png/rgba_transparent.png")).await;
    let paths = ["full/64,/0/default.jpg", "pct:10,10,50,50/max/!0/gray.png"];
    for id in [&a, &b, &other] {
        for path in paths {
            get_ok(&app.anonymous, &app.url(&format!("/iiif/3/{id}/{path}"))).await;
        }
    }
    let all = app.stored_keys("iiif").await;
    assert_eq!(all.len(), 4, "a and b share their renders: {all:?}");
    let other_keys: Vec<String> = {
        let mut keys = Vec::new();
        for path in paths {
            let url = app.url(&format!("/iiif/3/{other}/{path}"));
            let (headers, _) = get_ok(&app.anonymous, &url).await;
            let extension = path.rsplit('.').next().unwrap();
            keys.push(cache_key(&headers["etag"], extension));
        }
        keys.sort();
        keys
    };

    let delete = |id: String| {
        let url = app.url(&format!("/v1/images/{id}?force=true"));
        let client = app.client.clone();
        async move { client.delete(url).send().await.unwrap().status() }
    };
    assert_eq!(delete(a.clone()).await, 204);
    assert_eq!(app.stored_keys("iiif").await, all, "b still needs them");
    get_ok(
        &app.anonymous,
        &app.url(&format!("/iiif/3/{b}/full/64,/0/default.jpg")),
    )
    .await;

    assert_eq!(delete(b.clone()).await, 204);
    assert_eq!(
        app.stored_keys("iiif").await,
        other_keys,
        "only the other image's renders are left"
    );
    assert_eq!(
        app.catalog.iiif_cache_bytes().await.unwrap() as u64,
        cached_objects(&app).await.1
    );
}

// ------------------------------------------------------------ render slots

/// A client that goes away does not free its render slot while its render
/// still runs on a blocking thread: the limit counts renders, not requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_whose_client_left_keeps_its_slot_until_it_is_done() {
    let app = TestApp::spawn_with(with_iiif(IiifConfig {
        limits: IiifLimits {
            max_width: 6000,
            max_height: 6000,
            max_area: 36_000_000,
        },
        max_concurrent_renders: 1,
        // A request finds a slot free at once or gets a 503: the probe.
        render_wait: Duration::ZERO,
        ..IiifConfig::default()
    }))
    .await;
    let photo = upload(&app, fixture(PHOTO)).await;
    let small = upload(&app, fixture(SMALL_JPEG)).await;
    // Each probe is a new (tiny) render, so it needs the slot.
    let mut probes = 0;
    let mut probe = || {
        probes += 1;
        let url = app.url(&format!(
            "/iiif/3/{small}/0,0,{probes},{probes}/max/0/default.jpg"
        ));
        let client = app.anonymous.clone();
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };

    // Seconds of work: upscale 12 MP to 27 MP and encode it losslessly.
    let slow = app.url(&format!("/iiif/3/{photo}/full/^6000,/0/default.png"));
    let client = app.anonymous.clone();
    let started = Instant::now();
    let leaving = tokio::spawn(async move { client.get(slow).send().await });
    // Until the slow render holds the only slot. Probes are spaced out so
    // that one holding the slot for its millisecond rarely meets the slow
    // request's attempt (which would then be a 503 too).
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!leaving.is_finished(), "the slow request ended early");
        if probe().await == 503 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no slow render"
        );
    }
    leaving.abort();
    assert!(leaving.await.is_err(), "the client went away mid-render");
    // Time for the server to see the connection close and drop the handler.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        probe().await,
        503,
        "the abandoned render still holds its slot ({:?} in)",
        started.elapsed()
    );

    // And gives it back when it is done.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match probe().await {
            200 => break,
            503 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            status => panic!("the slot never came back: {status}"),
        }
    }
}

// ----------------------------------------------------------- stored styles

/// A stored square answers only while it belongs to the current original:
/// once the original is replaced, and while the new one renders, IIIF
/// renders from the new original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_original_is_never_answered_with_the_old_square() {
    let app = TestApp::spawn_without_workers().await;
    let path = "/v1/images/replaced";
    let put = |bytes: Vec<u8>| {
        let request = app
            .client
            .put(app.url(path))
            .header("content-type", "image/png")
            .body(bytes);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(put(png(500, 500, |_, _| RED)).await, 201);
    app.worker.run_once().await.unwrap().expect("rendered");
    let square = app.url("/iiif/3/replaced/square/400,400/0/default.jpg");
    let (headers, red) = get_ok(&app.anonymous, &square).await;
    let (_, style) = get_ok(
        &app.anonymous,
        &app.url(&format!("{path}/styles/square-400")),
    )
    .await;
    assert_eq!(red, style, "a finished image's square is the stored style");
    assert!(headers.contains_key("etag"));

    assert_eq!(put(png(500, 500, |_, _| BLUE)).await, 200);
    let image = app.catalog.image("replaced").await.unwrap().unwrap();
    assert_eq!(image.status().as_str(), "ingesting", "not rendered yet");
    let (_, now) = get_ok(&app.anonymous, &square).await;
    let img = decode(&now);
    assert_eq!(img.dimensions(), (400, 400));
    near(mean(&img, 150, 150, 100), BLUE, "the new original");
}

/// Clearing a crop: the stored squares were cut from the crop, the IIIF
/// square is the centred square of the whole image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_crop_is_never_answered_with_squares_of_the_old_crop() {
    let app = TestApp::spawn_without_workers().await;
    // Left half red, right half blue; the crop is the red left square.
    let halves = png(800, 400, |x, _| if x < 400 { RED } else { BLUE });
    let response = app
        .upload_raw(halves, "image/png", "?crop=0,0,400,400")
        .await;
    assert_eq!(response.status(), 202);
    let id = common::id_of(response).await;
    app.worker.run_once().await.unwrap().expect("rendered");

    let response = app
        .client
        .patch(app.url(&format!("/v1/images/{id}")))
        .json(&json!({"crop": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let url = app.url(&format!("/iiif/3/{id}/square/400,400/0/default.jpg"));
    let (_, bytes) = get_ok(&app.anonymous, &url).await;
    let img = decode(&bytes);
    // The centred square of 800x400 is x 200..600: red, then blue.
    near(mean(&img, 50, 150, 100), RED, "left of the centred square");
    near(
        mean(&img, 250, 150, 100),
        BLUE,
        "right of the centred square",
    );
}

// ------------------------------------------------- canonical links, limits

fn canonical_of(headers: &reqwest::header::HeaderMap) -> String {
    let link = headers["link"].to_str().unwrap();
    let start = link.find('<').unwrap() + 1;
    let end = link.find(">;rel=\"canonical\"").expect("a canonical link");
    link[start..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canonical_links_are_requests_that_give_the_same_image() {
    let app = TestApp::spawn().await;
    let id = upload(&app, fixture(SMALL_JPEG)).await;
    let base = app.url(&format!("/iiif/3/{id}"));
    let cases = [
        ("full/^200,/0/default.jpg", "full/^200,200/0/default.jpg"),
        ("full/64,/0/color.png", "full/64,64/0/color.png"),
        ("square/max/!90/default.jpg", "full/128,128/!90/default.jpg"),
    ];
    for (request, canonical) in cases {
        let (headers, bytes) = get_ok(&app.anonymous, &format!("{base}/{request}")).await;
        let link = canonical_of(&headers);
        assert_eq!(link, format!("{base}/{canonical}"), "{request}");
        let (_, again) = get_ok(&app.anonymous, &link).await;
        assert_eq!(again, bytes, "{link} gives what {request} gave");
    }
    let info: Value = app
        .anonymous
        .get(format!("{base}/info.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let features = info["extraFeatures"].as_array().unwrap();
    for feature in ["canonicalLinkHeader", "profileLinkHeader"] {
        assert!(features.contains(&json!(feature)), "{feature}: {info}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_fit_sizes_shrink_to_the_limits_and_named_sizes_beyond_them_are_400() {
    let app = TestApp::spawn_with(with_iiif(IiifConfig {
        limits: IiifLimits {
            max_width: 300,
            max_height: 200,
            max_area: 50_000,
        },
        ..IiifConfig::default()
    }))
    .await;
    let id = upload(&app, fixture(MEDIUM_JPEG)).await; // 640x480
    let base = app.url(&format!("/iiif/3/{id}"));
    for (size, want) in [("!600,600", (258, 193)), ("^!2000,1000", (258, 193))] {
        let (_, bytes) = get_ok(&app.anonymous, &format!("{base}/full/{size}/0/default.jpg")).await;
        let (w, h) = dimensions(&bytes);
        assert_eq!((w, h), want, "{size}");
        assert!(w <= 300 && h <= 200 && w * h <= 50_000, "{size}: {w}x{h}");
    }
    for size in ["301,", ",201", "260,195", "pct:50"] {
        let response = app
            .anonymous
            .get(format!("{base}/full/{size}/0/default.jpg"))
            .send()
            .await
            .unwrap();
        problem(response, 400, "iiif-beyond-limits").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percent_region_at_the_far_edge_is_its_last_pixels() {
    let app = TestApp::spawn().await;
    // 1000 px wide: red but for a blue last column.
    let id = upload(
        &app,
        png(1000, 100, |x, _| if x == 999 { BLUE } else { RED }),
    )
    .await;
    let url = app.url(&format!("/iiif/3/{id}/pct:99.99,0,1,100/max/0/default.png"));
    let (_, bytes) = get_ok(&app.anonymous, &url).await;
    let img = decode(&bytes);
    assert_eq!(img.dimensions(), (1, 100));
    assert_eq!(img.get_pixel(0, 50).0, BLUE);
    let url = app.url(&format!("/iiif/3/{id}/pct:0,0,0.04,0.04/max/0/default.png"));
    let (_, bytes) = get_ok(&app.anonymous, &url).await;
    assert_eq!(dimensions(&bytes), (1, 1));
}

// -------------------------------------------------------------------- CORS

fn allows_any_origin(response: &reqwest::Response, label: &str) {
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("*"),
        "{label}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_iiif_answer_allows_any_origin_and_preflights_are_answered() {
    let app = TestApp::spawn().await;
    let id = upload(&app, fixture(SMALL_JPEG)).await;
    let origin = "https://viewer.example";

    for path in [
        format!("/iiif/3/{id}/info.json"),
        format!("/iiif/3/{id}/full/max/0/default.jpg"),
        format!("/iiif/3/{id}/full/max/0/default.gif"),
        format!("/iiif/3/{id}/full/nonsense/0/default.jpg"),
        "/iiif/3/no-such-image/info.json".to_string(),
        format!("/iiif/3/{id}/too/many/segments/here/default.jpg"),
        format!("/iiif/3/{id}/full"),
        "/iiif/3".to_string(),
    ] {
        let response = app
            .anonymous
            .get(app.url(&path))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        allows_any_origin(&response, &format!("GET {path} ({})", response.status()));
    }
    let unmatched = app
        .anonymous
        .get(app.url(&format!("/iiif/3/{id}/a/b")))
        .send()
        .await
        .unwrap();
    allows_any_origin(&unmatched, "without an Origin header too");
    problem(unmatched, 404, "not-found").await;

    let post = app
        .anonymous
        .post(app.url(&format!("/iiif/3/{id}/info.json")))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    allows_any_origin(&post, "405");
    problem(post, 405, "method-not-allowed").await;

    // A viewer sending a key for a private bucket asks first.
    for path in [
        format!("/iiif/3/{id}/info.json"),
        format!("/iiif/3/{id}/full/max/0/default.jpg"),
    ] {
        let preflight = app
            .anonymous
            .request(reqwest::Method::OPTIONS, app.url(&path))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
            .await
            .unwrap();
        assert!(
            preflight.status().is_success(),
            "{path}: {}",
            preflight.status()
        );
        allows_any_origin(&preflight, &path);
        let header = |name: &str| {
            preflight.headers()[name]
                .to_str()
                .unwrap()
                .to_ascii_lowercase()
        };
        assert!(header("access-control-allow-headers").contains("authorization"));
        assert!(header("access-control-allow-methods").contains("get"));
    }

    // The rest of the API is not opened to other origins.
    let api = app
        .client
        .get(app.url("/v1/images"))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    assert!(!api.headers().contains_key("access-control-allow-origin"));
}

// ---------------------------------------------------------- cache headers

fn cache_headers(response: &reqwest::Response) -> (String, String) {
    let get = |name: &str| {
        response
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    (get("cache-control"), get("vary"))
}

fn assert_private(response: &reqwest::Response, label: &str) {
    let (cache_control, vary) = cache_headers(response);
    assert!(
        cache_control.starts_with("private"),
        "{label}: {cache_control}"
    );
    assert!(vary.contains("Authorization"), "{label}: Vary {vary}");
}

fn assert_public(response: &reqwest::Response, label: &str) {
    let (cache_control, vary) = cache_headers(response);
    assert!(
        cache_control.starts_with("public"),
        "{label}: {cache_control}"
    );
    assert!(!vary.contains("Authorization"), "{label}: Vary {vary}");
}

/// What only a key unlocks is `private` and varies on the key; what anyone
/// may fetch stays `public`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_only_a_key_unlocks_is_never_cached_as_public() {
    let app = TestApp::spawn().await;
    let id = upload(&app, fixture(MEDIUM_JPEG)).await;
    let iiif = [
        format!("/iiif/3/{id}/info.json"),
        format!("/iiif/3/{id}/full/64,/0/default.jpg"),
        // A stored square.
        format!("/iiif/3/{id}/square/400,400/0/default.jpg"),
    ];
    let styles = [
        format!("/v1/images/{id}/styles/thumb"),
        format!("/v1/images/{id}/styles/square-400"),
    ];
    for path in iiif.iter().chain(&styles) {
        let response = app.anonymous.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_public(&response, path);
    }
    let original = app
        .client
        .get(app.url(&format!("/v1/images/{id}/styles/original")))
        .send()
        .await
        .unwrap();
    assert_eq!(original.status(), 200);
    assert_private(&original, "the original always needs a key");
    let original = app.get_original(&id).await;
    assert_eq!(original.status(), 200);
    assert_private(&original, "the original, by Accept");

    // Styles up to 100 px stay public; anything larger needs a key.
    app.catalog
        .set_bucket_settings(
            "default",
            BucketSettings {
                public_max_side: Some(100),
                feed_max_bytes: None,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let thumb = app.anonymous.get(app.url(&styles[0])).send().await.unwrap();
    assert_eq!(thumb.status(), 200);
    assert_public(&thumb, "a style still public");
    for path in iiif.iter().chain(&styles[1..]) {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_private(&response, path);
        let Some(etag) = response.headers().get("etag").cloned() else {
            continue; // info.json
        };
        let revalidated = app
            .client
            .get(app.url(path))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(revalidated.status(), 304, "{path}");
        assert_private(&revalidated, &format!("{path} (304)"));
    }
}
