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
    // IIIF is judged on the size returned: 64 px is public too.
    let small = app.anonymous.get(app.url(&iiif[1])).send().await.unwrap();
    assert_eq!(small.status(), 200);
    assert_public(&small, "a IIIF size within the limit");
    // info.json lists what the caller may have, so it varies on the key.
    for path in [&iiif[0], &iiif[2]].into_iter().chain(&styles[1..]) {
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

// --------------------------------------- max_unauthorised and IIIF Auth 2.0

const AUTH_CONTEXT: &str = "http://iiif.io/api/auth/2/context.json";
const IMAGE_CONTEXT: &str = "http://iiif.io/api/image/3/context.json";

/// The terms the Authorization Flow 2.0 context defines (its own and the
/// `@context` terms of its result types), from the published file.
fn auth_terms() -> std::collections::HashSet<String> {
    let context: Value = serde_json::from_slice(&fixture("iiif/auth-2-context.json")).unwrap();
    let mut terms = std::collections::HashSet::new();
    let list = context["@context"].as_array().unwrap();
    assert_eq!(list[0], "https://iiif.io/api/presentation/3/context.json");
    for (term, definition) in list[1].as_object().unwrap() {
        terms.insert(term.clone());
        if let Some(scoped) = definition.get("@context").and_then(Value::as_object) {
            terms.extend(scoped.keys().cloned());
        }
    }
    terms
}

/// Every key and every `type` and `profile` of an auth document is a term
/// of the auth context, or one of the Presentation 3 terms it imports
/// that these documents use.
fn assert_auth_terms(document: &Value, terms: &std::collections::HashSet<String>, path: &str) {
    const PRESENTATION: [&str; 9] = [
        "@context", "id", "type", "profile", "label", "service", "format", "width", "height",
    ];
    let Some(object) = document.as_object() else {
        if let Some(list) = document.as_array() {
            for item in list {
                assert_auth_terms(item, terms, path);
            }
        }
        return;
    };
    for (key, value) in object {
        assert!(
            terms.contains(key) || PRESENTATION.contains(&key.as_str()),
            "{path}.{key} is not a term of the auth context"
        );
        match key.as_str() {
            "type" => {
                let kind = value.as_str().unwrap();
                assert!(
                    terms.contains(kind) || kind == "Image",
                    "{path}: type {kind}"
                );
            }
            "profile" => {
                let profile = value.as_str().unwrap();
                assert!(terms.contains(profile), "{path}: profile {profile}");
            }
            // Language maps: {"en": ["..."]}.
            "label" | "heading" | "note" | "errorHeading" | "errorNote" => {
                for (_, texts) in value.as_object().unwrap() {
                    assert!(texts.as_array().unwrap().iter().all(Value::is_string));
                }
            }
            "service" | "substitute" => assert_auth_terms(value, terms, &format!("{path}.{key}")),
            _ => {}
        }
    }
}

/// Uploads 640x480 with `max_unauthorised` 320 and the members role.
async fn restricted(app: &TestApp) -> String {
    let response = app
        .upload_multipart(
            fixture(MEDIUM_JPEG),
            &[
                ("max_unauthorised", "320"),
                ("roles", "https://example.org/roles/members"),
            ],
            "?wait=true",
        )
        .await;
    assert_eq!(response.status(), 201);
    let image: Value = response.json().await.unwrap();
    assert_eq!(image["max_unauthorised"], 320);
    image["id"].as_str().unwrap().to_string()
}

/// Without a key, IIIF gives what fits in 320 px at the scale returned
/// (so tiles cannot rebuild the full size) and info.json lists only that;
/// a key with image:read or the role gets everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iiif_serves_strangers_sizes_up_to_max_unauthorised_and_keys_the_rest() {
    let app = TestApp::spawn().await;
    let id = restricted(&app).await;
    let (_, member) = app
        .role_key_for("default", &["https://example.org/roles/members"])
        .await;
    let (_, other_bucket) = app.key_for("other", &["image:read"]).await;

    let info = app
        .anonymous
        .get(app.url(&format!("/iiif/3/{id}/info.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    assert_private(&info, "info.json of a restricted image");
    let info: Value = info.json().await.unwrap();
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(640), Some(480))
    );
    assert_eq!(info["@context"], json!([AUTH_CONTEXT, IMAGE_CONTEXT]));
    assert_eq!(
        (info["maxWidth"].as_u64(), info["maxHeight"].as_u64()),
        (Some(320), Some(240))
    );
    assert!(info.get("tiles").is_none(), "{info}");
    assert_eq!(
        info["profile"], "level0",
        "only the listed sizes, to this caller"
    );
    let sizes = info["sizes"].as_array().unwrap();
    assert!(
        sizes
            .iter()
            .any(|s| s["width"] == 320 && s["height"] == 240),
        "{info}"
    );
    for size in sizes {
        assert!(size["width"].as_u64().unwrap() <= 320, "{info}");
        let path = format!(
            "/iiif/3/{id}/full/{},{}/0/default.jpg",
            size["width"], size["height"]
        );
        let (headers, bytes) = get_ok(&app.anonymous, &app.url(&path)).await;
        assert!(
            headers["cache-control"]
                .to_str()
                .unwrap()
                .starts_with("public"),
            "{path}"
        );
        assert_eq!(
            dimensions(&bytes),
            (
                size["width"].as_u64().unwrap() as u32,
                size["height"].as_u64().unwrap() as u32
            )
        );
    }
    let probe = &info["service"][0];
    assert_eq!(probe["type"], "AuthProbeService2");
    assert_eq!(probe["id"], app.url(&format!("/iiif/3/{id}/probe")));
    assert_eq!(probe["service"][0]["profile"], "external");
    assert_eq!(
        probe["service"][0]["service"][0]["type"],
        "AuthAccessTokenService2"
    );
    assert_auth_terms(&info["service"], &auth_terms(), "info.service");

    // On both sides of the limit, at the scale returned.
    for (path, stranger, size) in [
        ("full/320,/0/default.jpg", 200, (320, 240)),
        ("full/pct:50/0/default.jpg", 200, (320, 240)),
        ("full/!320,320/90/default.png", 200, (240, 320)),
        ("full/321,/0/default.jpg", 401, (321, 241)),
        ("full/max/0/default.jpg", 401, (640, 480)),
        // A quarter of the image at 320 px is the full image at 640.
        ("0,0,320,240/320,/0/default.jpg", 401, (320, 240)),
        ("0,0,320,240/160,/0/default.jpg", 200, (160, 120)),
    ] {
        let url = app.url(&format!("/iiif/3/{id}/{path}"));
        let response = app.anonymous.get(&url).send().await.unwrap();
        assert_eq!(response.status(), stranger, "{path}");
        for (who, client) in [("read key", &app.client), ("member", &member)] {
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{who}: {path}");
            if stranger != 200 {
                assert_private(&response, path);
            }
            assert_eq!(dimensions(&response.bytes().await.unwrap()), size, "{path}");
        }
        let response = other_bucket.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 404, "another bucket: {path}");
    }

    // A key sees the whole image described, tiles and all.
    let (_, bytes) = get_ok(&member, &app.url(&format!("/iiif/3/{id}/info.json"))).await;
    let full: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(full.get("tiles").is_some(), "{full}");
    assert!(full["maxWidth"].as_u64().unwrap() > 640);
    assert_eq!(full["service"][0]["type"], "AuthProbeService2");

    // An open image declares no auth services.
    let open = upload(&app, fixture(SMALL_JPEG)).await;
    let (_, bytes) = get_ok(
        &app.anonymous,
        &app.url(&format!("/iiif/3/{open}/info.json")),
    )
    .await;
    let info: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(info["@context"], IMAGE_CONTEXT);
    assert!(info.get("service").is_none());
}

/// The probe answers with HTTP 200 the status the full image would get:
/// 401 and the largest public size as a substitute without a key, 200 with
/// one; the token service hands a key's holder its token, as JSON or by
/// postMessage; all in the terms of the auth context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_says_401_with_a_substitute_without_a_key_and_200_with_one() {
    let app = TestApp::spawn().await;
    let id = restricted(&app).await;
    let terms = auth_terms();
    let probe_url = app.url(&format!("/iiif/3/{id}/probe"));
    let probe = |client: reqwest::Client| {
        let url = probe_url.clone();
        async move {
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], "application/ld+json");
            assert_eq!(response.headers()["access-control-allow-origin"], "*");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["@context"], AUTH_CONTEXT);
            assert_eq!(body["type"], "AuthProbeResult2");
            body
        }
    };
    let stranger = probe(app.anonymous.clone()).await;
    assert_auth_terms(&stranger, &terms, "probe");
    assert_eq!(stranger["status"], 401, "{stranger}");
    assert!(stranger["heading"]["en"][0].is_string());
    let substitute = &stranger["substitute"][0];
    assert_eq!(
        (substitute["width"].as_u64(), substitute["height"].as_u64()),
        (Some(320), Some(240))
    );
    let (_, bytes) = get_ok(&app.anonymous, substitute["id"].as_str().unwrap()).await;
    assert_eq!(dimensions(&bytes), (320, 240));

    let (member_key, member) = app
        .role_key_for("default", &["https://example.org/roles/members"])
        .await;
    for (who, client) in [("read key", app.client.clone()), ("member", member)] {
        let answer = probe(client).await;
        assert_eq!(answer["status"], 200, "{who}: {answer}");
        assert!(answer.get("substitute").is_none(), "{who}");
        assert_auth_terms(&answer, &terms, "probe");
    }
    let (_, outsider) = app.role_key_for("default", &["urn:x:staff"]).await;
    assert_eq!(probe(outsider).await["status"], 401);
    let (_, other_bucket) = app.key_for("other", &["image:read"]).await;
    let response = other_bucket.get(&probe_url).send().await.unwrap();
    problem(response, 404, "image-not-found").await;
    let response = app
        .anonymous
        .get(app.url("/iiif/3/made-up/probe"))
        .send()
        .await
        .unwrap();
    problem(response, 404, "image-not-found").await;

    // Nothing public: a stranger learns nothing, as for a missing id.
    let patched = app
        .client
        .patch(app.url(&format!("/v1/images/{id}")))
        .json(&json!({ "max_unauthorised": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    for path in ["probe", "info.json"] {
        let response = app
            .anonymous
            .get(app.url(&format!("/iiif/3/{id}/{path}")))
            .send()
            .await
            .unwrap();
        problem(response, 404, "image-not-found").await;
    }

    // The token service: the key's holder gets it back as the token the
    // probe takes; without one, the spec's error.
    let token_url = app.url("/iiif/auth/2/token");
    let token: Value = client_json(&common::client_with_key(&member_key), &token_url).await;
    assert_auth_terms(&token, &terms, "token");
    assert_eq!(token["type"], "AuthAccessToken2");
    assert!(token["expiresIn"].as_u64().unwrap() > 0);
    let bearer = common::client_with_key(token["accessToken"].as_str().unwrap());
    assert_eq!(probe(bearer).await["status"], 200);
    let error = client_json(&app.anonymous, &token_url).await;
    assert_auth_terms(&error, &terms, "token error");
    assert_eq!(
        (error["type"].as_str(), error["profile"].as_str()),
        (Some("AuthAccessTokenError2"), Some("missingAspect"))
    );
    let page = common::client_with_key(&member_key)
        .get(format!(
            "{token_url}?messageId=m-1&origin=https://viewer.example"
        ))
        .send()
        .await
        .unwrap();
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = page.text().await.unwrap();
    assert!(page.contains("window.parent.postMessage("), "{page}");
    assert!(page.contains("\"messageId\":\"m-1\""), "{page}");
    assert!(
        page.contains(&format!("\"accessToken\":\"{member_key}\"")),
        "{page}"
    );
    assert!(
        page.ends_with(", \"https://viewer.example\");</script></body></html>"),
        "{page}"
    );
    let hostile = app
        .anonymous
        .get(format!("{token_url}?messageId=%3C/script%3E&origin=x"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(hostile.matches("</script>").count(), 1, "{hostile}");
}

async fn client_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}
