//! Delivery to feeds and apps, and files that are never lost: versioned
//! and alias URLs, the grace period of superseded files, the feed byte
//! budget, the podcast tags, `feed_ready`, and the races between deleting
//! a file and an upload that needs it again.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{asset, metric_in, TestApp, TestOptions};
use easel_catalog::Retention;
use serde_json::Value;

// ---------------------------------------------------------------- helpers

/// A small PNG no other round uses: each round of a race gets fresh bytes,
/// so rounds cannot share (and hide each other's) files.
fn distinct_png(seed: u32, side: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(side, side, |x, y| {
        let v = seed.wrapping_mul(2_654_435_761);
        image::Rgb([
            (v >> 8) as u8 ^ (x as u8),
            (v >> 16) as u8 ^ (y as u8),
            (v >> 24) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

fn sha256_hex(bytes: &[u8]) -> String {
    easel_render::sha256_hex(bytes)
}

/// What is wrong with an image a client was told is fine: every style it
/// lists must download with the bytes its row names, and so must the
/// original. Empty when nothing is.
async fn damage(app: &TestApp, image: &Value) -> Vec<String> {
    let id = image["id"].as_str().expect("id");
    let mut wrong = Vec::new();
    if image["status"] != "finished" {
        wrong.push(format!(
            "{id} is {} ({}): {}",
            image["status"], image["error_code"], image["error"]
        ));
        return wrong;
    }
    let assets = app.get_assets(id).await;
    for asset in assets["data"].as_array().expect("assets") {
        let style = asset["style"].as_str().expect("style");
        let response = app
            .client
            .get(app.url(&format!("/v1/images/{id}/styles/{style}")))
            .send()
            .await
            .expect("get style");
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        if status != 200 {
            wrong.push(format!("{id} {style}: {status}"));
        } else if sha256_hex(&bytes) != asset["sha256"] {
            wrong.push(format!("{id} {style}: other bytes than its row names"));
        }
    }
    wrong
}

/// Options for the races: nothing is kept after it loses its last
/// reference, so every deletion the races allow happens at once.
fn keep_nothing(workers: usize) -> TestOptions {
    TestOptions {
        workers,
        retention: Retention {
            grace: Duration::ZERO,
            delete_delay: Duration::ZERO,
        },
        ..TestOptions::default()
    }
}

/// Reaps in a loop (every millisecond or so) while a race runs; counts
/// the objects it deleted, so a test can show deletions did happen.
struct ReaperLoop {
    deleted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<()>,
}

impl ReaperLoop {
    fn start(app: &TestApp) -> Self {
        let (deleted, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let reaper = app.reaper.clone();
        let handle = tokio::spawn({
            let (deleted, stop) = (deleted.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let reaped = reaper
                        .run_once(easel_catalog::now_ms())
                        .await
                        .expect("reap");
                    deleted.fetch_add(reaped.deleted.len(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        ReaperLoop {
            deleted,
            stop,
            handle,
        }
    }

    fn deleted(&self) -> usize {
        self.deleted.load(Ordering::Relaxed)
    }

    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.expect("reaper loop");
        self.deleted.load(Ordering::Relaxed)
    }
}

async fn force_delete(app: &TestApp, id: &str) -> reqwest::StatusCode {
    app.client
        .delete(app.url(&format!("/v1/images/{id}?force=true")))
        .send()
        .await
        .expect("delete")
        .status()
}

/// A race's verdict: no round damaged `what`, and the reaper deleted at
/// least `least` objects meanwhile (a race without deletions tests nothing).
fn assert_race_undamaged(
    damaged: &[String],
    rounds: u32,
    what: &str,
    deleted: usize,
    least: usize,
) {
    assert!(
        damaged.is_empty(),
        "{} of {rounds} rounds damaged {what}:\n{}",
        damaged.len(),
        damaged.join("\n")
    );
    assert!(
        deleted >= least,
        "the race ran with deletions: {deleted} objects deleted"
    );
}

async fn upload_wait(app: &TestApp, bytes: Vec<u8>, query: &str) -> Value {
    let response = app
        .upload_raw(bytes, "image/png", &format!("?wait=true{query}"))
        .await;
    assert_eq!(response.status(), 201, "upload{query}");
    response.json().await.expect("json")
}

// ------------------------------------------------- dedup-safe deletion

/// Issue 11: a force delete commits, then removes the files nothing refers
/// to; an upload of the same bytes that found the original already stored
/// (and skipped writing it) must never end up pointing at nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_force_delete_racing_an_upload_of_the_same_bytes_never_damages_the_upload() {
    let app = TestApp::spawn_with(keep_nothing(2)).await;
    let reaper = ReaperLoop::start(&app);
    let rounds = 200;
    let mut damaged = Vec::new();
    for round in 0..rounds {
        let bytes = distinct_png(round, 48);
        let first = upload_wait(&app, bytes.clone(), "").await;
        let first_id = first["id"].as_str().unwrap().to_string();
        // The delete starts a little later each round, so that over the
        // rounds it lands on every step of the upload.
        let jitter = Duration::from_micros(u64::from(round % 20) * 500);
        let delete = async {
            tokio::time::sleep(jitter).await;
            force_delete(&app, &first_id).await
        };
        let (deleted, second) = tokio::join!(delete, upload_wait(&app, bytes, ""));
        assert_eq!(deleted, 204, "round {round}");
        let wrong = damage(&app, &second).await;
        if !wrong.is_empty() {
            damaged.push(format!("round {round}: {}", wrong.join("; ")));
        }
        // Next round's bytes are new: this one's files may go now.
        let second_id = second["id"].as_str().unwrap();
        force_delete(&app, second_id).await;
    }
    assert_race_undamaged(
        &damaged,
        rounds,
        "an acknowledged image",
        reaper.stop().await,
        rounds as usize,
    );
}

/// An origin on loopback serving `/{seed}.png`: `distinct_png(seed, 48)`.
async fn png_origin() -> String {
    use axum::extract::Path;
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/{file}",
        get(|Path(file): Path<String>| async move {
            let seed: u32 = file.trim_end_matches(".png").parse().unwrap_or(0);
            ([("content-type", "image/png")], distinct_png(seed, 48))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// Issue 11's fetch slots store an origin's original and hand it to the
/// render loops; issue 12's claims must hold that original as they hold an
/// upload's: a force delete of an image with the same bytes, racing the
/// fetch, must never leave the fetched image pointing at nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_force_delete_racing_an_origin_fetch_of_the_same_bytes_never_damages_the_fetched_image() {
    let app = TestApp::spawn_with(keep_nothing(2)).await;
    let origin = png_origin().await;
    let reaper = ReaperLoop::start(&app);
    let rounds = 200;
    let mut damaged = Vec::new();
    for round in 0..rounds {
        let first = upload_wait(&app, distinct_png(round, 48), "").await;
        let first_id = first["id"].as_str().unwrap().to_string();
        let second_id = format!("fetched-{round}");
        // The fetch takes longer than an upload: the delete lands over a
        // wider span of it.
        let jitter = Duration::from_micros(u64::from(round % 40) * 1000);
        let delete = async {
            tokio::time::sleep(jitter).await;
            force_delete(&app, &first_id).await
        };
        let fetch = async {
            let response = app
                .client
                .put(app.url(&format!("/v1/images/{second_id}?wait=true")))
                .json(&serde_json::json!({"origin": format!("{origin}/{round}.png")}))
                .send()
                .await
                .expect("put");
            assert_eq!(response.status(), 201, "round {round}");
            response.json::<Value>().await.expect("json")
        };
        let (deleted, second) = tokio::join!(delete, fetch);
        assert_eq!(deleted, 204, "round {round}");
        assert_eq!(
            second["sha256"],
            sha256_hex(&distinct_png(round, 48)),
            "round {round}: the same bytes"
        );
        let wrong = damage(&app, &second).await;
        if !wrong.is_empty() {
            damaged.push(format!("round {round}: {}", wrong.join("; ")));
        }
        force_delete(&app, &second_id).await;
    }
    assert_race_undamaged(
        &damaged,
        rounds,
        "a fetched image",
        reaper.stop().await,
        rounds as usize,
    );
    // Every fetch's claim ended with its hand-over, so once every image
    // is gone nothing holds their files: all of them go.
    app.reaper
        .run_once(easel_catalog::now_ms())
        .await
        .expect("reap");
    let left = [
        app.stored_keys("originals").await,
        app.stored_keys("renders").await,
    ]
    .concat();
    assert!(
        left.is_empty(),
        "{} objects kept with no image, e.g. {:?}",
        left.len(),
        &left[..left.len().min(3)]
    );
}

/// Issue 11: a re-render (new crop) commits its files, then removes the
/// files of the old crop; an upload of the same bytes with the old crop
/// renders exactly those files and must never end up pointing at nothing.
///
/// The orders are spread over the rounds: the PATCH a little later each
/// round, the upload a little later each round, and every fourth round
/// the upload only once the old crop's files are gone (so the race
/// reaches the deletions on any machine: on a loaded PostgreSQL + S3 run
/// the upload otherwise always claimed the files first).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerender_cleanup_racing_an_identical_upload_never_damages_the_upload() {
    let app = TestApp::spawn_with(keep_nothing(2)).await;
    let reaper = ReaperLoop::start(&app);
    let rounds = 200;
    let mut damaged = Vec::new();
    for round in 0..rounds {
        let bytes = distinct_png(round, 64);
        let first = upload_wait(&app, bytes.clone(), "&crop=0,0,48,48").await;
        let first_id = first["id"].as_str().unwrap().to_string();
        let old_itunes = asset(&first, "itunes")["sha256"].clone();
        let step = u64::from(round % 40);
        let (patch_delay, upload_delay) = match round % 4 {
            0 | 2 => (Duration::from_micros(step * 500), Duration::ZERO),
            _ => (Duration::ZERO, Duration::from_micros(step * 2500)),
        };
        let after_cleanup = round % 4 == 3;
        let patch = async {
            tokio::time::sleep(patch_delay).await;
            let crop = serde_json::json!({"crop": {"x": 8, "y": 8, "width": 48, "height": 48}});
            app.patch_image(&first_id, crop).await;
        };
        let upload = async {
            tokio::time::sleep(upload_delay).await;
            if after_cleanup {
                let deleted_before = reaper.deleted();
                wait_for_new_itunes(&app, &first_id, &old_itunes).await;
                for _ in 0..500 {
                    if reaper.deleted() > deleted_before {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            upload_wait(&app, bytes, "&crop=0,0,48,48").await
        };
        let ((), second) = tokio::join!(patch, upload);
        let first = app.wait_until_done(&first_id).await;
        let mut wrong = damage(&app, &second).await;
        wrong.extend(damage(&app, &first).await);
        if !wrong.is_empty() {
            damaged.push(format!("round {round}: {}", wrong.join("; ")));
        }
    }
    assert_race_undamaged(
        &damaged,
        rounds,
        "an acknowledged image",
        reaper.stop().await,
        1,
    );
}

/// Waits (up to 60 s) until the image's `itunes` file is no longer
/// `old`: its re-render has committed.
async fn wait_for_new_itunes(app: &TestApp, id: &str, old: &Value) {
    for _ in 0..1200 {
        let image: Value = app.image_json(id).await;
        let current = image["assets"]
            .as_array()
            .and_then(|assets| assets.iter().find(|a| a["style"] == "itunes"))
            .map(|a| a["sha256"].clone());
        if current.is_some_and(|sha| sha != *old) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the re-render of {id} did not commit in 60 s");
}

// ------------------------------------------------------- versioned URLs

/// A 3200 px cover as designers make them: flat colour fields and dark
/// lettering (the same picture as easel-render's feed tests).
fn flat_cover_png(side: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(side, side, |x, y| {
        let field = (x / 400 + y / 300) % 4;
        let colour = [[230, 60, 40], [250, 240, 220], [30, 40, 90], [240, 190, 30]][field as usize];
        let lettering = y % 240 > 200 && x % 37 < 20 && (x / 37) % 3 != 0;
        image::Rgb(if lettering { [20, 20, 20] } else { colour })
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"))
}

async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("GET")
}

async fn head(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client.head(url).send().await.expect("HEAD")
}

fn header_of(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_string()
}

const WEEK: i64 = 7 * 24 * 3600 * 1000;

/// Issue 12's regression: a re-render used to change the bytes of an
/// `immutable` URL. Now the alias revalidates and changes, the versioned
/// URL never does, and the replaced file serves until its grace is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_crop_changes_what_the_alias_serves_but_never_what_a_versioned_url_serves() {
    let app = TestApp::spawn().await;
    let image = upload_wait(&app, distinct_png(7, 300), "").await;
    let id = text(&image["id"], "id").to_string();
    let before = asset(&image, "itunes").clone();
    let old_url = text(&before["url"], "url").to_string();
    let alias = text(&before["alias"], "alias").to_string();
    assert!(old_url.starts_with(&app.base), "absolute: {old_url}");
    assert!(
        old_url.ends_with(".jpg")
            && old_url.contains(&format!("/v1/images/{id}/styles/itunes/"))
            && old_url.contains(&text(&before["sha256"], "sha256")[..16]),
        "{old_url}"
    );
    assert_eq!(
        alias,
        app.url(&format!("/v1/images/{id}/styles/itunes.jpg"))
    );

    let versioned = get(&app.anonymous, &old_url, &[]).await;
    assert_eq!(versioned.status(), 200);
    assert_eq!(
        header_of(&versioned, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    let old_bytes = versioned.bytes().await.unwrap();
    assert_eq!(sha256_hex(&old_bytes), before["sha256"]);

    let aliased = get(&app.anonymous, &alias, &[]).await;
    assert_eq!(aliased.status(), 200);
    let cache = header_of(&aliased, "cache-control");
    assert_eq!(cache, "public, max-age=300", "short and never immutable");
    let old_etag = header_of(&aliased, "etag");
    assert_eq!(header_of(&aliased, "content-location"), old_url);
    assert_eq!(aliased.bytes().await.unwrap(), old_bytes);
    let unchanged = get(&app.anonymous, &alias, &[("if-none-match", &old_etag)]).await;
    assert_eq!(unchanged.status(), 304);

    // A new crop: the alias changes (no 304 for the old ETag), the old
    // versioned URL still gives the old bytes.
    app.patch_image(
        &id,
        serde_json::json!({"crop": {"x": 0, "y": 0, "width": 150, "height": 150}}),
    )
    .await;
    let after = app.wait_until_done(&id).await;
    let new = asset(&after, "itunes");
    let new_url = text(&new["url"], "url");
    assert_ne!(new_url, old_url);
    assert_eq!(text(&new["alias"], "alias"), alias, "the alias is stable");
    let revalidated = get(&app.anonymous, &alias, &[("if-none-match", &old_etag)]).await;
    assert_eq!(revalidated.status(), 200, "the alias's bytes changed");
    assert_ne!(header_of(&revalidated, "etag"), old_etag);
    assert_eq!(
        sha256_hex(&revalidated.bytes().await.unwrap()),
        new["sha256"]
    );
    let still = get(&app.anonymous, &old_url, &[]).await;
    assert_eq!(still.status(), 200, "kept for the grace period");
    assert_eq!(
        header_of(&still, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(still.bytes().await.unwrap(), old_bytes);
    assert_eq!(
        get(&app.anonymous, new_url, &[])
            .await
            .bytes()
            .await
            .unwrap(),
        get(&app.anonymous, &alias, &[])
            .await
            .bytes()
            .await
            .unwrap()
    );

    // A reaper inside the grace period keeps it; one after it deletes it.
    let now = easel_catalog::now_ms();
    let reaped = app.reaper.run_once(now + WEEK - 60_000).await.unwrap();
    assert!(reaped.deleted.is_empty(), "{reaped:?}");
    assert_eq!(get(&app.anonymous, &old_url, &[]).await.status(), 200);
    let old_key = easel_storage::render_key(text(&before["sha256"], "sha256"), "jpg");
    assert!(app.store.size(&old_key).await.is_ok());
    let reaped = app.reaper.run_once(now + WEEK + 1).await.unwrap();
    assert_eq!(
        reaped.expired, 6,
        "regular and the five squares of the old crop: {reaped:?}"
    );
    // ...then, the delete delay later, the files go.
    let reaped = app.reaper.run_once(now + WEEK + 2 * 60_000).await.unwrap();
    assert!(reaped.deleted.contains(&old_key), "{reaped:?}");
    assert!(app.store.size(&old_key).await.is_err(), "deleted");
    let gone = get(&app.anonymous, &old_url, &[]).await;
    let body = common::problem(gone, 404, "version-not-found").await;
    assert!(
        text(&body["detail"], "detail").contains(&format!("/v1/images/{id}/styles/itunes")),
        "says where the current one is: {body}"
    );
    assert_eq!(damage(&app, &after).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_and_versions_answer_head_and_ranges_and_check_their_extension() {
    let app = TestApp::spawn().await;
    let image = upload_wait(&app, distinct_png(8, 200), "").await;
    let id = text(&image["id"], "id").to_string();
    let itunes = asset(&image, "itunes");
    let size = itunes["size"].as_u64().unwrap();
    let url = text(&itunes["url"], "url");
    let full = get(&app.anonymous, url, &[]).await.bytes().await.unwrap();
    assert_eq!(full.len() as u64, size);

    for name in ["itunes", "itunes.jpg", "itunes.jpeg", "feed", "feed.jpg"] {
        let alias = app.url(&format!("/v1/images/{id}/styles/{name}"));
        let response = get(&app.anonymous, &alias, &[]).await;
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(
            response.bytes().await.unwrap(),
            full,
            "{name}: itunes is the feed file"
        );
        let head = head(&app.anonymous, &alias).await;
        assert_eq!(head.status(), 200, "HEAD {name}");
        assert_eq!(header_of(&head, "content-length"), size.to_string());
        assert_eq!(header_of(&head, "content-type"), "image/jpeg");
        assert!(head.bytes().await.unwrap().is_empty());
    }
    let head = head(&app.anonymous, url).await;
    assert_eq!(header_of(&head, "content-length"), size.to_string());
    assert_eq!(
        header_of(&head, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    let part = get(&app.anonymous, url, &[("range", "bytes=10-19")]).await;
    assert_eq!(part.status(), 206);
    assert_eq!(
        header_of(&part, "content-range"),
        format!("bytes 10-19/{size}")
    );
    assert_eq!(part.bytes().await.unwrap(), full.slice(10..20));
    let part = get(
        &app.anonymous,
        &app.url(&format!("/v1/images/{id}/styles/feed.jpg")),
        &[("range", "bytes=-5")],
    )
    .await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), full.slice(full.len() - 5..));

    let wrong = get(
        &app.anonymous,
        &app.url(&format!("/v1/images/{id}/styles/itunes.png")),
        &[],
    )
    .await;
    let body = common::problem(wrong, 404, "wrong-extension").await;
    assert!(text(&body["detail"], "detail").contains(".jpg"), "{body}");
    for (path, code) in [
        (format!("/v1/images/{id}/styles/nope.jpg"), "unknown-style"),
        (
            format!("/v1/images/{id}/styles/itunes/0123456789abcdef.jpg"),
            "version-not-found",
        ),
        (
            format!(
                "/v1/images/{id}/styles/itunes/{}",
                url.rsplit('/').next().unwrap().replace(".jpg", ".png")
            ),
            "version-not-found",
        ),
        (
            format!("/v1/images/{id}/styles/itunes/short.jpg"),
            "version-not-found",
        ),
        (
            format!("/v1/images/{id}/styles/feed/0123456789abcdef.jpg"),
            "unknown-style",
        ),
        (
            "/v1/images/ghost/styles/itunes.jpg".to_string(),
            "image-not-found",
        ),
    ] {
        let response = get(&app.anonymous, &app.url(&path), &[]).await;
        common::problem(response, 404, code).await;
    }
    // The original's versioned URL needs a key, like the original.
    let original = text(&asset(&image, "original")["url"], "url");
    assert!(original.ends_with(".png"), "{original}");
    assert_eq!(get(&app.anonymous, original, &[]).await.status(), 401);
    assert_eq!(get(&app.client, original, &[]).await.status(), 200);
}

// ------------------------------------------------------ the feed budget

const KIB: u64 = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_file_is_a_flat_covers_square_3000_and_a_camera_photos_itunes_within_the_budget() {
    let app = TestApp::spawn().await;
    let flat = upload_wait(&app, flat_cover_png(3200), "").await;
    let photo = app
        .upload_and_wait(common::fixture("photo/olympus_e-p3_4032x3024.jpg"))
        .await;

    for (image, style, side) in [(&flat, "square-3000", 3000), (&photo, "itunes", 1400)] {
        let id = text(&image["id"], "id");
        let feed = get(
            &app.anonymous,
            &app.url(&format!("/v1/images/{id}/styles/feed.jpg")),
            &[],
        )
        .await;
        assert_eq!(feed.status(), 200);
        let bytes = feed.bytes().await.unwrap();
        assert!(
            bytes.len() as u64 <= 512 * KIB,
            "{style}: {} bytes",
            bytes.len()
        );
        assert_eq!(common::dimensions(&bytes), (side, side));
        assert_eq!(
            sha256_hex(&bytes),
            asset(image, style)["sha256"],
            "feed is {style}"
        );
        assert_eq!(
            text(&image["links"]["feed_file"], "feed_file"),
            text(&asset(image, style)["url"], "url")
        );
        assert_eq!(image["feed_ready"]["ok"], true, "{}", image["feed_ready"]);
        // Every file records the quality it was encoded at.
        assert_eq!(asset(image, style)["quality"], 88);
        assert_eq!(asset(image, "thumb")["quality"], 88);
        assert_eq!(asset(image, "original")["quality"], Value::Null);
    }
    // The photo's square-3000 exists but cannot fit: said as advice.
    let large = asset(&photo, "square-3000");
    assert!(large["size"].as_u64().unwrap() > 512 * KIB);
    let warnings = photo["feed_ready"]["warnings"].to_string();
    assert!(
        warnings.contains("square-3000") && warnings.contains("over the feed budget"),
        "{warnings}"
    );
    // The flat cover's fits only with optimised tables, at full quality.
    assert!(asset(&flat, "square-3000")["size"].as_u64().unwrap() <= 512 * KIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buckets_own_feed_budget_holds_its_feed_files_to_it() {
    let app = TestApp::spawn().await;
    let budget = 300 * KIB;
    app.catalog
        .set_bucket_settings(
            "default",
            easel_catalog::BucketSettings {
                public_max_side: None,
                feed_max_bytes: Some(budget as i64),
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let photo = app
        .upload_and_wait(common::fixture("photo/olympus_e-p3_4032x3024.jpg"))
        .await;
    let itunes = asset(&photo, "itunes");
    let quality = itunes["quality"].as_i64().unwrap();
    assert!((70..88).contains(&quality), "quality {quality}");
    assert!(itunes["size"].as_u64().unwrap() <= budget);
    assert_eq!(
        asset(&photo, "square-640")["quality"],
        88,
        "only feed files"
    );
    assert_eq!(photo["feed_ready"]["ok"], true);
    assert!(
        photo["feed_ready"]["warnings"]
            .to_string()
            .contains(&format!("quality {quality} instead of 88")),
        "{}",
        photo["feed_ready"]
    );
}

/// Issue 12: `feed_ready` said ok for a bucket whose styles were private,
/// though an anonymous HEAD of the feed URL (what Apple's crawler does)
/// got a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_ready_says_no_while_the_bucket_keeps_the_feed_file_from_directories() {
    let app = TestApp::spawn().await;
    let flat = upload_wait(&app, flat_cover_png(3200), "").await;
    let id = text(&flat["id"], "id").to_string();
    assert_eq!(flat["feed_ready"]["ok"], true);
    let feed_url = text(&flat["links"]["feed_file"], "feed_file").to_string();
    let set = |public_max_side| {
        let catalog = app.catalog.clone();
        async move {
            catalog
                .set_bucket_settings(
                    "default",
                    easel_catalog::BucketSettings {
                        public_max_side,
                        feed_max_bytes: None,
                    },
                    chrono::Utc::now(),
                )
                .await
                .unwrap()
        }
    };
    let ready = |app: &TestApp| {
        let url = app.url(&format!("/v1/images/{id}"));
        let client = app.client.clone();
        async move {
            let image: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            image["feed_ready"].clone()
        }
    };
    let listed = |ready: bool| {
        let url = app.url(&format!("/v1/images?filter[feed_ready]={ready}"));
        let client = app.client.clone();
        async move {
            let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            page["data"].as_array().unwrap().len()
        }
    };

    for (setting, public) in [
        (Some(0), false),
        (Some(1400), false),
        (Some(3000), true),
        (None, true),
    ] {
        set(setting).await;
        let readiness = ready(&app).await;
        assert_eq!(readiness["ok"], public, "{setting:?}: {readiness}");
        let anonymous_head = head(&app.anonymous, &feed_url).await.status();
        if public {
            assert_eq!(anonymous_head, 200, "{setting:?}");
            assert_eq!(listed(true).await, 1);
        } else {
            assert_eq!(anonymous_head, 404, "{setting:?}: strangers learn nothing");
            assert!(
                readiness["reasons"].to_string().contains("not public"),
                "{readiness}"
            );
            assert_eq!((listed(true).await, listed(false).await), (0, 1));
            // The key still opens it.
            assert_eq!(
                app.client.head(&feed_url).send().await.unwrap().status(),
                200
            );
        }
    }
}

// ------------------------------------------------------------ podcast tags

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_podcast_document_gives_absolute_jpg_urls_that_all_fetch() {
    let app = TestApp::spawn().await;
    let flat = app
        .upload_raw(
            flat_cover_png(3200),
            "image/png",
            "?wait=true&name=Tom%20%26%20Jerry%27s%20%22Show%22",
        )
        .await;
    assert_eq!(flat.status(), 201);
    let flat: Value = flat.json().await.unwrap();
    let id = text(&flat["id"], "id");
    let url = app.url(&format!("/v1/images/{id}/podcast"));
    let response = get(&app.anonymous, &url, &[]).await;
    assert_eq!(response.status(), 200, "public, like the feed file");
    let doc: Value = response.json().await.unwrap();

    let href = text(&doc["itunes_image"]["href"], "href");
    assert_eq!(href, text(&asset(&flat, "square-3000")["url"], "url"));
    assert!(
        href.starts_with(&app.base) && href.ends_with(".jpg"),
        "{href}"
    );
    let images = doc["podcast_images"].as_array().unwrap();
    let sides: Vec<u64> = images
        .iter()
        .map(|i| i["width"].as_u64().unwrap())
        .collect();
    assert_eq!(
        sides,
        [3000, 1400, 640, 400],
        "the feed file, itunes and small squares"
    );
    for image in images {
        let href = text(&image["href"], "href");
        assert!(
            href.starts_with(&app.base) && href.ends_with(".jpg"),
            "{href}"
        );
        assert_eq!(image["aspect_ratio"], "1/1");
        assert_eq!(image["purpose"], "artwork");
        assert_eq!(image["type"], "image/jpeg");
        assert_eq!(image["alt"], "Tom & Jerry's \"Show\"");
        let file = get(&app.anonymous, href, &[]).await;
        assert_eq!(file.status(), 200, "{href}");
        let side = image["width"].as_u64().unwrap() as u32;
        assert_eq!(
            common::dimensions(&file.bytes().await.unwrap()),
            (side, side)
        );
    }
    let xml = text(&doc["xml"], "xml");
    assert!(
        xml.starts_with(&format!("<itunes:image href=\"{href}\"/>\n")),
        "{xml}"
    );
    assert!(
        xml.contains("alt=\"Tom &amp; Jerry&apos;s &quot;Show&quot;\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<podcast:image ").count(), 4);
    assert!(xml.contains("aspect-ratio=\"1/1\" width=\"3000\" height=\"3000\" type=\"image/jpeg\" purpose=\"artwork\""));
    assert_eq!(
        doc["namespaces"]["podcast"],
        "https://podcastindex.org/namespace/1.0"
    );
    assert_eq!(doc["feed_ready"]["ok"], true);
    assert!(
        doc["warnings"].to_string().contains("https"),
        "{}",
        doc["warnings"]
    );
    assert_eq!(text(&doc["links"]["self"], "self"), url);

    // The JSON resource's links are absolute the same way; a proxy's
    // forwarded scheme and host are the ones links use.
    let image: Value = app
        .client
        .get(app.url(&format!("/v1/images/{id}")))
        .header("host", "img.example")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (name, link) in image["links"].as_object().unwrap() {
        assert!(
            text(link, name).starts_with("https://img.example/"),
            "{name}: {link}"
        );
    }
    assert!(text(&asset(&image, "itunes")["url"], "url").starts_with("https://img.example/"));
    assert_eq!(
        text(&image["links"]["podcast"], "podcast"),
        format!("https://img.example/v1/images/{id}/podcast")
    );
}

/// The document through a real feed library: feedgen keeps the versioned
/// URL as the channel's and an episode's `<itunes:image>`, where it drops
/// the extensionless alias (issue 12). Needs Python and PyPI once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedgen_writes_the_itunes_image_of_the_podcast_document() {
    let app = TestApp::spawn().await;
    let photo = app
        .upload_and_wait(common::fixture("photo/iphone6_3264x2448.jpg"))
        .await;
    let id = text(&photo["id"], "id").to_string();
    let url = app.url(&format!("/v1/images/{id}/podcast"));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/feed-check.sh");
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new(script).arg(url).output())
            .await
            .unwrap()
            .expect("run scripts/feed-check.sh");
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr);
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("scripts/feed-check.sh failed:\n{why}");
        }
        eprintln!(
            "\n*** SKIPPED feedgen check: scripts/feed-check.sh failed (no PyPI?):\n{why} ***\n"
        );
        return;
    }
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    let href = text(&asset(&photo, "itunes")["url"], "url");
    assert_eq!(report["channel_image"], href, "{}", report["rss"]);
    assert_eq!(report["episode_image"], href);
    assert_eq!(report["snippet_itunes_image"], href);
    assert_eq!(report["alias_kept"], false, "why feeds need the .jpg URL");
    let parsed = report["podcast_images"].as_array().unwrap();
    assert_eq!(
        parsed.len(),
        3,
        "itunes (the feed file), 640 and 400: {parsed:?}"
    );
    assert_eq!(parsed[0]["href"], href);
    assert_eq!(parsed[0]["aspect-ratio"], "1/1");
    assert_eq!(parsed[0]["width"], "1400");
    for image in parsed {
        let response = head(&app.anonymous, text(&image["href"], "href")).await;
        assert_eq!(response.status(), 200, "{image}");
        assert_eq!(header_of(&response, "content-type"), "image/jpeg");
    }
}

// -------------------------------------------------------------------- IIIF

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iiif_images_answer_head_with_their_length_and_serve_ranges() {
    let app = TestApp::spawn().await;
    let image = upload_wait(&app, distinct_png(9, 400), "").await;
    let id = text(&image["id"], "id");
    // A stored square and an on-demand render.
    for path in [
        format!("/iiif/3/{id}/full/400,400/0/default.jpg"),
        format!("/iiif/3/{id}/10,10,200,100/max/0/gray.png"),
    ] {
        let url = app.url(&path);
        let full = get(&app.anonymous, &url, &[]).await;
        assert_eq!(full.status(), 200, "{path}");
        let bytes = full.bytes().await.unwrap();
        let head = head(&app.anonymous, &url).await;
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert_eq!(
            header_of(&head, "content-length"),
            bytes.len().to_string(),
            "{path}"
        );
        assert_eq!(header_of(&head, "accept-ranges"), "bytes");
        assert!(head.bytes().await.unwrap().is_empty());
        let part = get(&app.anonymous, &url, &[("range", "bytes=5-24")]).await;
        assert_eq!(part.status(), 206, "{path}");
        assert_eq!(
            header_of(&part, "content-range"),
            format!("bytes 5-24/{}", bytes.len())
        );
        assert_eq!(header_of(&part, "content-length"), "20");
        assert_eq!(part.bytes().await.unwrap(), bytes.slice(5..25));
        let beyond = get(
            &app.anonymous,
            &url,
            &[("range", &format!("bytes={}-", bytes.len()))],
        )
        .await;
        common::problem(beyond, 416, "range-not-satisfiable").await;
    }
}

// --------------------------------------------------- private buckets (11)

/// Issue 11: a private bucket told strangers which ids exist (401 for a
/// real id, 404 for a made-up one). Every answer a stranger gets is now
/// the one a missing id gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_bucket_answers_strangers_alike_for_existing_and_missing_ids() {
    let app = TestApp::spawn().await;
    let image = upload_wait(&app, distinct_png(10, 300), "").await;
    let real = text(&image["id"], "id").to_string();
    let version = text(&asset(&image, "itunes")["url"], "url")
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let (_, other_bucket) = app.key_for("other", &["image:read"]).await;
    for setting in [Some(0), Some(200)] {
        app.catalog
            .set_bucket_settings(
                "default",
                easel_catalog::BucketSettings {
                    public_max_side: setting,
                    feed_max_bytes: None,
                },
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        let paths = |id: &str| {
            [
                format!("/v1/images/{id}/styles/itunes"),
                format!("/v1/images/{id}/styles/itunes.jpg"),
                format!("/v1/images/{id}/styles/itunes/{version}"),
                format!("/v1/images/{id}/styles/itunes/0123456789abcdef.jpg"),
                format!("/v1/images/{id}/styles/itunes/not-a-version"),
                format!("/v1/images/{id}/styles/feed.jpg"),
                format!("/v1/images/{id}/styles/original"),
                format!("/v1/images/{id}/styles/square-3000"),
                format!("/v1/images/{id}/podcast"),
                format!("/iiif/3/{id}/info.json"),
                format!("/iiif/3/{id}/full/max/0/default.jpg"),
                format!("/iiif/3/{id}"),
            ]
        };
        for (real_path, made_up_path) in paths(&real).iter().zip(paths("made-up-id")) {
            for (who, client) in [
                ("no key", &app.anonymous),
                ("another bucket's key", &other_bucket),
            ] {
                let answer = |path: String| {
                    let client = client.clone();
                    let url = app.url(&path);
                    async move {
                        let response = client.get(url).send().await.unwrap();
                        let status = response.status();
                        let mut headers: Vec<String> = response
                            .headers()
                            .iter()
                            .filter(|(name, _)| !matches!(name.as_str(), "date" | "content-length"))
                            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
                            .collect();
                        headers.sort();
                        let body = response.text().await.unwrap();
                        (status, headers, body)
                    }
                };
                // Where some size is public, IIIF tells a stranger about
                // the image (info.json with the public sizes and the auth
                // services, a 401 above them): its thumb is public anyway.
                if setting == Some(200) && who == "no key" && real_path.starts_with("/iiif/") {
                    let (status, _, body) = answer(real_path.clone()).await;
                    let expected = match real_path.rsplit('/').next() {
                        Some("info.json") => 200,
                        Some("default.jpg") => 401,
                        _ => 200, // the 303 to info.json, followed
                    };
                    assert_eq!(status.as_u16(), expected, "{real_path}: {body}");
                    continue;
                }
                let (status, headers, body) = answer(real_path.clone()).await;
                let (made_up_status, made_up_headers, made_up_body) =
                    answer(made_up_path.clone()).await;
                let label = format!("{setting:?}, {who}: {real_path}");
                assert_eq!(status, 404, "{label}: {body}");
                assert_eq!(status, made_up_status, "{label}");
                assert_eq!(headers, made_up_headers, "{label}");
                assert_eq!(body.replace(&real, "made-up-id"), made_up_body, "{label}");
            }
        }
        // The bucket's key still sees everything.
        assert_eq!(
            get(
                &app.client,
                &app.url(&format!("/v1/images/{real}/styles/itunes.jpg")),
                &[]
            )
            .await
            .status(),
            200
        );
    }
    // With styles up to 200 px public, small files stay public.
    assert_eq!(
        get(
            &app.anonymous,
            &app.url(&format!("/v1/images/{real}/styles/thumb")),
            &[]
        )
        .await
        .status(),
        200
    );
}

// --------------------------------------------------- a missing original

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_original_fails_its_render_at_once_with_its_own_code() {
    let app = TestApp::spawn_without_workers().await;
    let response = app.upload_raw(distinct_png(11, 64), "image/png", "").await;
    assert_eq!(response.status(), 202);
    let image: Value = response.json().await.unwrap();
    let id = text(&image["id"], "id");
    let stored = app.catalog.image(id).await.unwrap().unwrap();
    app.store
        .delete(stored.original_key.as_deref().unwrap())
        .await
        .unwrap();
    let outcome = app.worker.run_once().await.unwrap();
    assert_eq!(
        outcome,
        Some(easel_worker::Outcome::Failed {
            image_id: id.to_string(),
            code: "original-missing".into()
        })
    );
    assert!(
        app.worker.run_once().await.unwrap().is_none(),
        "not retried"
    );
    let jobs = app.catalog.jobs_for_image(id).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].attempts, 1, "one attempt, not five");
    let image = app.wait_until_done(id).await;
    assert_eq!(image["status"], "error");
    assert_eq!(image["error_code"], "original-missing");
    assert!(text(&image["error"], "error").contains("missing from the object store"));
}

// ------------------------------------------------------------------ sweep

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_deletes_old_objects_no_row_refers_to_and_nothing_else() {
    let app = TestApp::spawn().await;
    let image = upload_wait(&app, distinct_png(12, 100), "").await;
    let id = text(&image["id"], "id");
    let stray_original = easel_storage::original_key(&"ab".repeat(32));
    let stray_render = easel_storage::render_key(&"cd".repeat(32), "jpg");
    for key in [&stray_original, &stray_render] {
        app.store
            .put(
                key,
                axum::body::Bytes::from_static(b"left by a failed upload"),
            )
            .await
            .unwrap();
    }
    let referenced = {
        let mut keys: Vec<String> = app
            .catalog
            .assets(id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.storage_key)
            .collect();
        keys.sort();
        keys.dedup();
        keys
    };
    let now = easel_catalog::now_ms();
    // Young objects are left alone: an upload may be about to refer to one.
    let swept = app
        .reaper
        .sweep(Duration::from_secs(3600), now)
        .await
        .unwrap();
    assert_eq!(swept.listed, referenced.len() + 2);
    assert_eq!(swept.old_enough, 0);
    // Old enough: only the strays are scheduled, and then deleted.
    let swept = app.reaper.sweep(Duration::ZERO, now + 1000).await.unwrap();
    let mut scheduled = swept.scheduled.clone();
    scheduled.sort();
    let mut strays = vec![stray_original.clone(), stray_render.clone()];
    strays.sort();
    assert_eq!(scheduled, strays);
    let reaped = app.reaper.run_once(now + 1000).await.unwrap();
    let mut deleted = reaped.deleted.clone();
    deleted.sort();
    assert_eq!(deleted, strays);
    for key in &strays {
        assert!(app.store.size(key).await.is_err(), "{key} deleted");
    }
    for key in &referenced {
        assert!(app.store.size(key).await.is_ok(), "{key} kept");
    }
    assert_eq!(damage(&app, &image).await, Vec::<String>::new());
}

#[test]
fn easel_gc_deletes_a_stray_object_and_reports_what_it_did() {
    let data = tempfile::tempdir().unwrap();
    let sha = "ef".repeat(32);
    let stray = data
        .path()
        .join("objects/originals")
        .join(&sha[0..2])
        .join(&sha[2..4])
        .join(&sha);
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"an upload whose commit failed").unwrap();
    let gc = |min_age: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
            .args(["gc", "--gc-min-age-secs", min_age])
            .env("EASEL_DATA_DIR", data.path())
            .env_remove("EASEL_DATABASE_URL")
            .env_remove("EASEL_STORE_URL")
            .output()
            .expect("run easel gc");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).expect("a JSON report")
    };
    let young = gc("3600");
    assert_eq!(
        (young["listed"].as_u64(), young["deleted"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(stray.exists(), "younger than the minimum age");
    let old = gc("0");
    assert_eq!(old["unreferenced"], 1, "{old}");
    assert_eq!(old["deleted"], 1, "{old}");
    assert!(!stray.exists());
}

#[test]
fn a_buckets_feed_budget_is_set_shown_and_kept_by_set_styles() {
    let data = tempfile::tempdir().unwrap();
    let easel = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
            .args(args)
            .env("EASEL_DATA_DIR", data.path())
            .env_remove("EASEL_DATABASE_URL")
            .env_remove("EASEL_STORE_URL")
            .output()
            .expect("run easel");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, out, err) = easel(&["buckets", "set-feed-budget", "shows", "307200"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("feed budget: 307200 bytes") && out.contains("rerender --all --bucket shows"),
        "{out}"
    );
    let (ok, _, err) = easel(&["buckets", "set-styles", "shows", "private"]);
    assert!(ok, "{err}");
    let (_, out, _) = easel(&["buckets", "show", "shows"]);
    assert!(
        out.contains("need an image:read key") && out.contains("feed budget: 307200 bytes"),
        "set-styles keeps the budget: {out}"
    );
    let (ok, _, err) = easel(&["buckets", "set-feed-budget", "shows", "a lot"]);
    assert!(!ok && err.contains("number of bytes"), "{err}");
    let (ok, out, _) = easel(&["buckets", "set-feed-budget", "shows", "default"]);
    assert!(ok && out.contains("the server's"), "{out}");
    let (_, out, _) = easel(&["buckets", "show", "shows"]);
    assert!(
        out.contains("need an image:read key") && out.contains("the server's"),
        "{out}"
    );
}

// ------------------------------------------------ per-image access (issue 17)

const MEMBERS: &str = "https://example.org/roles/members";

async fn status_of(client: &reqwest::Client, app: &TestApp, path: &str) -> u16 {
    get(client, &app.url(path), &[]).await.status().as_u16()
}

/// `max_unauthorised` N: styles up to N px are public, larger ones need a
/// key with image:read or a role of the image; strangers and other buckets
/// get the 404 of a missing id; the original needs image:read whatever the
/// roles; `/podcast` and `feed_ready` follow the feed file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_unauthorised_opens_styles_up_to_its_limit_and_the_rest_to_a_scope_or_a_role() {
    let app = TestApp::spawn().await;
    let image = upload_wait(
        &app,
        flat_cover_png(1400),
        &format!("&max_unauthorised=640&roles={MEMBERS}"),
    )
    .await;
    let id = text(&image["id"], "id").to_string();
    assert_eq!(image["max_unauthorised"], 640);
    assert_eq!(image["roles"], serde_json::json!([MEMBERS]));
    assert_eq!(image["batch"], Value::Null);
    let ready = &image["feed_ready"];
    assert_eq!(ready["ok"], false, "{ready}");
    let reasons = ready["reasons"].to_string();
    assert!(reasons.contains("max_unauthorised (640)"), "{reasons}");

    let small = format!("/v1/images/{id}/styles/square-640");
    let large = format!("/v1/images/{id}/styles/square-888");
    let large_version = format!(
        "/v1/images/{id}/styles/square-888/{}",
        text(&asset(&image, "square-888")["url"], "url")
            .rsplit('/')
            .next()
            .unwrap()
    );
    let original = format!("/v1/images/{id}/styles/original");
    let podcast = format!("/v1/images/{id}/podcast");
    let (_, other_bucket) = app.key_for("other", &["image:read"]).await;
    let (_, other_bucket_member) = app.role_key_for("other", &[MEMBERS]).await;
    let (_, writer) = app.key_for("default", &["image:write"]).await;
    let (_, member) = app.role_key_for("default", &[MEMBERS]).await;
    let (_, outsider) = app
        .role_key_for("default", &["https://example.org/roles/staff"])
        .await;

    let anonymous = get(&app.anonymous, &app.url(&small), &[]).await;
    assert_eq!(anonymous.status(), 200);
    assert!(header_of(&anonymous, "cache-control").starts_with("public"));
    for (who, client, expected) in [
        ("no key", &app.anonymous, [200, 404, 404, 404, 404]),
        (
            "another bucket's read key",
            &other_bucket,
            [404, 404, 404, 404, 404],
        ),
        (
            "another bucket's member",
            &other_bucket_member,
            [404, 404, 404, 404, 404],
        ),
        (
            "a key without image:read or the role",
            &writer,
            [200, 403, 403, 403, 403],
        ),
        (
            "a key with another role",
            &outsider,
            [200, 403, 403, 403, 403],
        ),
        ("a key with the role", &member, [200, 200, 200, 403, 200]),
        (
            "the bucket's read key",
            &app.client,
            [200, 200, 200, 200, 200],
        ),
    ] {
        let mut got = [0u16; 5];
        for (slot, path) in
            got.iter_mut()
                .zip([&small, &large, &large_version, &original, &podcast])
        {
            *slot = status_of(client, &app, path).await;
        }
        assert_eq!(
            got, expected,
            "{who}: small, large, large version, original, podcast"
        );
    }
    let granted = get(&member, &app.url(&large), &[]).await;
    assert!(header_of(&granted, "cache-control").starts_with("private"));
    assert_eq!(
        common::dimensions(&granted.bytes().await.unwrap()),
        (888, 888)
    );

    // -1 opens it all, even in a bucket that shows nothing by default.
    app.make_default_bucket_private().await;
    let image = app
        .patch_image(&id, serde_json::json!({ "max_unauthorised": -1 }))
        .await;
    assert_eq!(image["feed_ready"]["ok"], true, "{}", image["feed_ready"]);
    for path in [&small, &large, &podcast] {
        assert_eq!(status_of(&app.anonymous, &app, path).await, 200, "{path}");
    }
    // null follows the bucket again: nothing without a key.
    let image = app
        .patch_image(&id, serde_json::json!({ "max_unauthorised": null }))
        .await;
    assert_eq!(image["max_unauthorised"], Value::Null);
    assert_eq!(image["feed_ready"]["ok"], false);
    assert_eq!(status_of(&app.anonymous, &app, &small).await, 404);
    assert_eq!(status_of(&member, &app, &small).await, 200);
    // 0 on the image: the same, whatever the bucket says.
    app.catalog
        .set_bucket_settings("default", Default::default(), chrono::Utc::now())
        .await
        .unwrap();
    let image = app
        .patch_image(
            &id,
            serde_json::json!({ "max_unauthorised": 0, "roles": [] }),
        )
        .await;
    assert_eq!(image["roles"], serde_json::json!([]));
    assert_eq!(
        status_of(
            &app.anonymous,
            &app,
            &format!("/v1/images/{id}/styles/thumb")
        )
        .await,
        404
    );
    assert_eq!(
        status_of(&member, &app, &large).await,
        403,
        "the role was taken away"
    );
}

/// The fields are validated, PUT replaces them, `initial_origin` is
/// fetched by the first ingest only and never shown, and lists filter on
/// the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_takes_the_access_fields_and_an_initial_origin_that_is_never_shown() {
    let app = TestApp::spawn().await;
    let origin = png_origin().await;
    for (body, code) in [
        (
            serde_json::json!({ "max_unauthorised": -2 }),
            "invalid-field",
        ),
        (
            serde_json::json!({ "max_unauthorised": 1.5 }),
            "invalid-field",
        ),
        (
            serde_json::json!({ "roles": ["not a uri"] }),
            "invalid-field",
        ),
        (serde_json::json!({ "roles": "urn:x:a" }), "invalid-field"),
        (serde_json::json!({ "initial_origin": 5 }), "invalid-field"),
    ] {
        let mut body = body;
        body["origin"] = Value::from(format!("{origin}/1.png"));
        let response = app
            .client
            .put(app.url("/v1/images/access-bad"))
            .json(&body)
            .send()
            .await
            .unwrap();
        common::problem(response, 400, code).await;
    }
    // The long-term origin does not answer; the first ingest fetches the
    // initial one.
    let response = app
        .client
        .put(app.url("/v1/images/access-put?wait=true"))
        .json(&serde_json::json!({
            "origin": "http://127.0.0.1:9/gone.png",
            "initial_origin": format!("{origin}/7.png"),
            "max_unauthorised": 100,
            "roles": [MEMBERS, MEMBERS],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let image: Value = response.json().await.unwrap();
    assert_eq!(image["status"], "finished", "{image}");
    assert_eq!(image["origin"], "http://127.0.0.1:9/gone.png");
    assert!(image.get("initial_origin").is_none(), "{image}");
    assert!(!image.to_string().contains("7.png"), "{image}");
    assert_eq!(image["max_unauthorised"], 100);
    assert_eq!(image["roles"], serde_json::json!([MEMBERS]));
    assert_eq!(
        common::dimensions(
            &get(
                &app.client,
                &app.url("/v1/images/access-put/styles/original"),
                &[]
            )
            .await
            .bytes()
            .await
            .unwrap()
        ),
        (48, 48)
    );
    let list: Value = get(
        &app.client,
        &app.url("/v1/images?filter[batch]=none-such"),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(list["meta"]["total"], 0, "{list}");
    let list: Value = get(
        &app.client,
        &app.url("/v1/images?fields[image]=id,max_unauthorised,roles,batch"),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(list["data"][0]["max_unauthorised"], 100, "{list}");
}

// ----------------------------------------------------------- serve cache

/// What a file URL answers now: status, ETag (if any) and body; a 200's
/// body must be the bytes its ETag names.
async fn fetch_checked(client: &reqwest::Client, url: &str) -> (u16, String, Vec<u8>) {
    let response = get(client, url, &[]).await;
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.bytes().await.unwrap().to_vec();
    if status == 200 {
        assert_eq!(etag, format!("\"{}\"", sha256_hex(&body)), "{url}");
    }
    (status, etag, body)
}

/// Issue 14: with lookups kept for ten minutes, this node's own re-render
/// shows on the alias as soon as the worker commits it (the commit drops
/// them, not their age), and a force delete here is never served from the
/// cache, by alias or by version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_cache_shows_its_own_rerender_at_once_and_never_serves_a_force_deleted_file() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        lookup_ttl: Duration::from_secs(600),
        ..TestOptions::default()
    })
    .await;
    let response = app.upload_raw(distinct_png(41, 300), "image/png", "").await;
    assert_eq!(response.status(), 202);
    let id = text(&response.json::<Value>().await.unwrap()["id"], "id").to_string();
    app.worker.run_once().await.unwrap().expect("a job");
    let image: Value = app.image_json(&id).await;
    let old = asset(&image, "thumb").clone();
    let versioned = text(&old["url"], "url").to_string();
    let alias = app.url(&format!("/v1/images/{id}/styles/thumb"));
    for _ in 0..3 {
        let (status, etag, _) = fetch_checked(&app.anonymous, &alias).await;
        assert_eq!(
            (status, etag),
            (200, format!("\"{}\"", text(&old["sha256"], "sha")))
        );
    }

    // A new crop, and the alias asked while the re-render waits in the
    // queue: the cache holds the old file again.
    app.patch_image(
        &id,
        serde_json::json!({"crop": {"x": 0, "y": 0, "width": 150, "height": 150}}),
    )
    .await;
    let (status, etag, _) = fetch_checked(&app.anonymous, &alias).await;
    assert_eq!(
        (status, &etag),
        (200, &format!("\"{}\"", text(&old["sha256"], "sha")))
    );
    app.worker.run_once().await.unwrap().expect("the re-render");
    let image: Value = app.image_json(&id).await;
    let new = asset(&image, "thumb").clone();
    assert_ne!(new["sha256"], old["sha256"]);
    let (status, etag, _) = fetch_checked(&app.anonymous, &alias).await;
    assert_eq!(
        (status, etag),
        (200, format!("\"{}\"", text(&new["sha256"], "sha"))),
        "the alias serves the re-render at once"
    );
    // The old version still serves its own bytes (grace period).
    let (status, etag, _) = fetch_checked(&app.anonymous, &versioned).await;
    assert_eq!(
        (status, etag),
        (200, format!("\"{}\"", text(&old["sha256"], "sha")))
    );

    let new_versioned = text(&new["url"], "url").to_string();
    for url in [&alias, &new_versioned, &versioned] {
        assert_eq!(fetch_checked(&app.anonymous, url).await.0, 200, "{url}");
    }
    assert_eq!(force_delete(&app, &id).await, 204);
    for url in [&alias, &new_versioned, &versioned] {
        let (status, _, _) = fetch_checked(&app.anonymous, url).await;
        assert_eq!(status, 404, "{url} after a force delete");
        assert_eq!(head(&app.anonymous, url).await.status(), 404, "HEAD {url}");
    }
}

/// Issue 14: a change another node makes (here: the catalogue written
/// behind this API's back) shows within the lookup lifetime; until then
/// the access decision still runs on every request, so a key of another
/// bucket never gets the cached file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_changes_show_within_the_lookup_lifetime_and_access_is_decided_per_request() {
    let ttl = Duration::from_millis(400);
    let app = TestApp::spawn_with(TestOptions {
        lookup_ttl: ttl,
        ..TestOptions::default()
    })
    .await;
    let image = upload_wait(&app, distinct_png(42, 300), "").await;
    let id = text(&image["id"], "id").to_string();
    let alias = app.url(&format!("/v1/images/{id}/styles/thumb"));
    let versioned = text(&asset(&image, "thumb")["url"], "url").to_string();
    for url in [&alias, &versioned] {
        assert_eq!(fetch_checked(&app.anonymous, url).await.0, 200);
    }
    let (_, stranger) = app.key_for("elsewhere", &["image:read"]).await;
    for url in [&alias, &versioned] {
        assert_eq!(
            fetch_checked(&stranger, url).await.0,
            404,
            "a key of another bucket, with the lookup cached"
        );
    }

    // Another node makes the bucket private.
    app.make_default_bucket_private().await;
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    for url in [&alias, &versioned] {
        assert_eq!(fetch_checked(&app.anonymous, url).await.0, 404, "{url}");
        assert_eq!(
            fetch_checked(&app.client, url).await.0,
            200,
            "{url} with a key"
        );
    }

    // Another node deletes the image for good.
    app.catalog
        .hard_delete(&id, None, easel_catalog::now_ms(), easel_catalog::now_ms())
        .await
        .unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    for url in [&alias, &versioned] {
        assert_eq!(fetch_checked(&app.client, url).await.0, 404, "{url}");
    }
}

/// Issue 14: under a small file budget (each file at most 8 KiB of it),
/// files it keeps and files it cannot keep are both served right, twice.
/// (That the budget holds is `serve_cache`'s unit test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_cache_keeps_to_its_budget_and_serves_what_it_cannot_keep() {
    let app = TestApp::spawn_with(TestOptions {
        serve_cache_bytes: 64 * 1024,
        lookup_ttl: Duration::from_secs(60),
        ..TestOptions::default()
    })
    .await;
    let image = upload_wait(&app, distinct_png(43, 1600), "").await;
    let mut served = 0;
    for style in ["thumb", "square-400", "square-640", "itunes", "regular"] {
        let Some(file) = image["assets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["style"] == style)
        else {
            continue;
        };
        for _ in 0..2 {
            let (status, etag, body) =
                fetch_checked(&app.anonymous, text(&file["url"], "url")).await;
            assert_eq!(status, 200);
            assert_eq!(etag, format!("\"{}\"", text(&file["sha256"], "sha")));
            assert_eq!(body.len() as i64, file["size"].as_i64().unwrap());
        }
        served += 1;
    }
    assert!(served >= 4, "{image}");
}

/// The `easel_serve_cache_total` counter with these labels, from /metrics.
async fn metric(app: &TestApp, series: &str) -> f64 {
    metric_in(&app.get("/metrics").await.text().await.unwrap(), series)
}

/// Issue 14: a file URL asked again while its lookup is kept is answered
/// ahead of the router, with the very headers and bytes the route sent
/// (its 304 too), counted in the request metrics, and with the
/// `Content-Location` of the host it was asked by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_file_url_answers_as_the_route_did_and_is_counted() {
    let app = TestApp::spawn_with(TestOptions {
        lookup_ttl: Duration::from_secs(600),
        ..TestOptions::default()
    })
    .await;
    let image = upload_wait(&app, distinct_png(44, 300), "").await;
    let id = text(&image["id"], "id").to_string();
    let alias = app.url(&format!("/v1/images/{id}/styles/thumb"));
    let versioned = text(&asset(&image, "thumb")["url"], "url").to_string();
    let warm_hits = "easel_serve_cache_total{cache=\"answer\",result=\"hit\"}";
    let counted = "easel_http_requests_total{method=\"GET\",route=\"/v1/images/{id}/styles/{style}\",status=\"200\"}";
    let without_date = |response: &reqwest::Response| {
        let mut headers = response.headers().clone();
        headers.remove("date");
        headers
    };
    // A client may list its ETags over several headers: the last one here
    // names this file, through the router and through a warm answer alike.
    let tag = format!("\"{}\"", text(&asset(&image, "thumb")["sha256"], "sha256"));
    let listed = [
        ("if-none-match", "\"0000\""),
        ("if-none-match", tag.as_str()),
    ];
    for url in [&alias, &versioned] {
        assert_eq!(
            get(&app.anonymous, url, &listed).await.status(),
            304,
            "{url}"
        );
        // The first GET reads the store, the second keeps its answer.
        let cold = get(&app.anonymous, url, &[]).await;
        let cold_headers = without_date(&cold);
        let cold_body = cold.bytes().await.unwrap();
        assert_eq!(get(&app.anonymous, url, &[]).await.status(), 200);
        let (hits, requests) = (metric(&app, warm_hits).await, metric(&app, counted).await);
        for _ in 0..5 {
            let warm = get(&app.anonymous, url, &[]).await;
            assert_eq!(warm.status(), 200, "{url}");
            assert_eq!(without_date(&warm), cold_headers, "{url}");
            assert_eq!(warm.bytes().await.unwrap(), cold_body, "{url}");
        }
        assert!(
            metric(&app, warm_hits).await >= hits + 5.0,
            "{url}: warm answers"
        );
        if url == &alias {
            assert!(
                metric(&app, counted).await >= requests + 5.0,
                "each one counted"
            );
        }
        let etag = header_of(&get(&app.anonymous, url, &[]).await, "etag");
        let not_modified = get(&app.anonymous, url, &[("if-none-match", &etag)]).await;
        assert_eq!(not_modified.status(), 304);
        let mut expected = cold_headers.clone();
        expected.remove("content-type");
        expected.remove("content-length");
        let mut got = without_date(&not_modified);
        got.remove("content-length");
        assert_eq!(got, expected, "{url}: the route's 304");
        let warm_listed = get(&app.anonymous, url, &listed).await;
        assert_eq!(warm_listed.status(), 304, "{url}: warm, listed ETags");
        // Another Host: the alias points at its own versioned URL there.
        let elsewhere = get(&app.anonymous, url, &[("host", "img.example:8443")]).await;
        assert_eq!(elsewhere.status(), 200);
        if url == &alias {
            assert!(
                header_of(&elsewhere, "content-location").starts_with("http://img.example:8443/"),
                "{:?}",
                elsewhere.headers()
            );
        }
    }
}
