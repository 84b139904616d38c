//! End to end tests of the Image API against the real service: keys and
//! scopes on every endpoint, the list's parameters, PATCH/PUT/DELETE,
//! re-renders that swap files, feed readiness, ETags and batches.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{asset, fixture, header, problem, Body, TestApp, TestOptions};
use easel_catalog::BucketSettings;
use easel_worker::Outcome;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// 64x64 16-bit grey PNG: the cheapest real image to render.
const TINY: &str = "png/gray16_trns.png";
/// 128x128 JPEG.
const SMALL_JPEG: &str = "jpeg/hopper_orientation_6.jpg";
/// 640x480 JPEG.
const MEDIUM_JPEG: &str = "jpeg/exif_iptc_nokia.jpg";

// ---------------------------------------------------------------- helpers

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("json body")
}

/// Raw upload with query metadata, answered at once (202).
async fn upload(app: &TestApp, path: &str, query: &str) -> Value {
    let response = app.upload_raw(fixture(path), "image/png", query).await;
    assert_eq!(response.status(), 202, "upload {path}{query}");
    json_of(response).await
}

/// Raw upload with `wait=true`; the image is finished (or failed).
async fn upload_wait(app: &TestApp, path: &str, query: &str) -> Value {
    let q = if query.is_empty() {
        "?wait=true".to_string()
    } else {
        format!("{query}&wait=true")
    };
    let response = app.upload_raw(fixture(path), "image/png", &q).await;
    assert_eq!(response.status(), 201, "upload {path}{q}");
    json_of(response).await
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let response = app.get(&format!("/v1/images{query}")).await;
    assert_eq!(response.status(), 200, "GET /v1/images{query}");
    json_of(response).await
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(id)
        .collect()
}

/// Uploads a tiny image to bucket `other` with a key of that bucket,
/// answered at once (202).
async fn upload_to_bucket_other(app: &TestApp, query: &str) -> Value {
    let (_, other) = app.key_for("other", &["image:read", "image:write"]).await;
    let path = format!("/v1/images{query}");
    let response = app
        .send_as(
            &other,
            Method::POST,
            &path,
            Body::Image(fixture(TINY), "image/png"),
        )
        .await;
    assert_eq!(response.status(), 202, "POST {path} to bucket other");
    json_of(response).await
}

/// The ids of a list page, as a set.
fn id_set(page: &Value) -> BTreeSet<String> {
    ids(page).into_iter().collect()
}

fn set_of(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// A 400 that names what was wrong.
async fn bad_param(app: &TestApp, query: &str, names: &str) {
    let response = app.get(&format!("/v1/images{query}")).await;
    let body = problem(response, 400, "invalid-parameter").await;
    assert!(
        body["detail"].as_str().unwrap().contains(names),
        "{query}: detail should name {names:?}: {body}"
    );
}

/// Drives the queue by hand until it is empty.
async fn drain_queue(app: &TestApp) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    while let Some(outcome) = app.worker.run_once().await.expect("run_once") {
        outcomes.push(outcome);
    }
    outcomes
}

async fn storage_key(app: &TestApp, image_id: &str, style: &str) -> String {
    app.catalog
        .asset(image_id, style)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{image_id} has no {style} row"))
        .storage_key
}

async fn on_disk(app: &TestApp, key: &str) -> bool {
    app.store.size(key).await.is_ok()
}

/// Every storage key the catalogue refers to for these images.
async fn referenced_keys(app: &TestApp, image_ids: &[impl AsRef<str>]) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for image_id in image_ids {
        let image_id = image_id.as_ref();
        if let Some(image) = app.catalog.image(image_id).await.unwrap() {
            keys.extend(image.original_key);
        }
        for row in app.catalog.assets(image_id).await.unwrap() {
            keys.insert(row.storage_key);
        }
    }
    keys
}

/// Nothing deletes a file at once: replaced files are kept for the grace
/// period, and files nothing refers to go after the delete delay, when the
/// reaper comes by. Reaps as if both were over (a week and a day on).
async fn settle_store(app: &TestApp, image_ids: &[impl AsRef<str>]) {
    let later = easel_catalog::now_ms() + 8 * 24 * 3600 * 1000;
    app.reaper.run_once(later).await.expect("reap");
    app.reaper
        .run_once(later + 3600 * 1000)
        .await
        .expect("reap");
    assert_eq!(
        stored_keys(app).await,
        referenced_keys(app, image_ids).await,
        "the store holds what the catalogue refers to"
    );
}

/// Every object in the store, as storage keys.
async fn stored_keys(app: &TestApp) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    keys.extend(app.stored_keys("originals").await);
    keys.extend(app.stored_keys("renders").await);
    keys
}

fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_string()
}

/// A tiny HTTP origin on loopback: `/x.jpg` (a real JPEG), `/notes.jpg`
/// (text sent as image/jpeg); anything else is a 404.
async fn origin_server() -> String {
    use axum::routing::get;
    let jpeg = fixture(MEDIUM_JPEG);
    let app = axum::Router::new()
        .route(
            "/x.jpg",
            get(move || {
                let jpeg = jpeg.clone();
                async move { ([("content-type", "image/jpeg")], jpeg) }
            }),
        )
        .route(
            "/notes.jpg",
            get(|| async {
                (
                    [("content-type", "image/jpeg")],
                    "Episode notes: not an image at all.\n",
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

// ------------------------------------------------------------ auth matrix

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    NoKey,
    UnknownKey,
    NotBearer,
    RevokedKey,
    WrongScope,
    OtherBucket,
    RightKey,
}

struct Endpoint {
    method: Method,
    path: String,
    /// The scope the endpoint needs; `None` for public style files.
    scope: Option<&'static str>,
    /// Status with the right key.
    ok: u16,
    /// What a key of another bucket gets: 404 for another bucket's
    /// resources, or success in its own bucket for collection endpoints.
    other_bucket: u16,
    body: fn() -> Body,
}

fn all_scopes_but(scope: &str) -> Vec<&'static str> {
    ["image:read", "image:write", "image:delete"]
        .into_iter()
        .filter(|s| *s != scope)
        .collect()
}

impl Endpoint {
    /// The status `caller` gets.
    fn answer_to(&self, caller: Caller) -> u16 {
        match (caller, self.scope) {
            (Caller::UnknownKey | Caller::NotBearer | Caller::RevokedKey, _) => 401,
            (Caller::NoKey, Some(_)) => 401,
            (Caller::NoKey, None) => self.ok,
            (Caller::WrongScope, Some(_)) => 403,
            (Caller::WrongScope, None) => self.ok,
            (Caller::OtherBucket, _) => self.other_bucket,
            (Caller::RightKey, _) => self.ok,
        }
    }
}

/// Every endpoint of the Image API with what the right key gets and what
/// a key of another bucket gets, on `image_id` and `batch_id`.
fn endpoints(image_id: &str, batch_id: &str) -> Vec<Endpoint> {
    let p = |s: &str| s.replace("{id}", image_id).replace("{batch}", batch_id);
    vec![
        Endpoint {
            method: Method::GET,
            path: p("/v1/images"),
            scope: Some("image:read"),
            ok: 200,
            other_bucket: 200,
            body: || Body::None,
        },
        Endpoint {
            method: Method::POST,
            path: p("/v1/images"),
            scope: Some("image:write"),
            ok: 202,
            other_bucket: 202,
            body: || Body::Image(fixture(TINY), "image/png"),
        },
        Endpoint {
            method: Method::GET,
            path: p("/v1/images/{id}"),
            scope: Some("image:read"),
            ok: 200,
            other_bucket: 404,
            body: || Body::None,
        },
        Endpoint {
            method: Method::PATCH,
            path: p("/v1/images/{id}"),
            scope: Some("image:write"),
            ok: 200,
            other_bucket: 404,
            body: || Body::Json(json!({"name": "Renamed"})),
        },
        Endpoint {
            method: Method::PUT,
            path: p("/v1/images/{id}"),
            scope: Some("image:write"),
            ok: 200,
            other_bucket: 404,
            body: || Body::Image(fixture(TINY), "image/png"),
        },
        Endpoint {
            method: Method::POST,
            path: p("/v1/images/{id}/render"),
            scope: Some("image:write"),
            ok: 202,
            other_bucket: 404,
            body: || Body::None,
        },
        Endpoint {
            method: Method::GET,
            path: p("/v1/images/{id}/assets"),
            scope: Some("image:read"),
            ok: 200,
            other_bucket: 404,
            body: || Body::None,
        },
        Endpoint {
            method: Method::GET,
            path: p("/v1/images/{id}/styles/thumb"),
            scope: None,
            ok: 200,
            other_bucket: 404,
            body: || Body::None,
        },
        Endpoint {
            method: Method::GET,
            path: p("/v1/images/{id}/styles/original"),
            scope: Some("image:read"),
            ok: 200,
            other_bucket: 404,
            body: || Body::None,
        },
        Endpoint {
            method: Method::POST,
            path: p("/v1/rerender"),
            scope: Some("image:write"),
            ok: 202,
            other_bucket: 202,
            body: || Body::Json(json!({})),
        },
        Endpoint {
            method: Method::GET,
            path: p("/v1/batches/{batch}"),
            scope: Some("image:read"),
            ok: 200,
            other_bucket: 404,
            body: || Body::None,
        },
        // Last: they hide, then bring back, the image the others use.
        Endpoint {
            method: Method::DELETE,
            path: p("/v1/images/{id}"),
            scope: Some("image:delete"),
            ok: 200,
            other_bucket: 404,
            body: || Body::None,
        },
        Endpoint {
            method: Method::POST,
            path: p("/v1/images/{id}/restore"),
            scope: Some("image:delete"),
            ok: 200,
            other_bucket: 404,
            body: || Body::None,
        },
    ]
}

/// What is wrong with `response`, the answer to `caller` on `endpoint`:
/// its status, its challenge, its problem body, or what it touched.
async fn faults(
    caller: Caller,
    endpoint: &Endpoint,
    label: &str,
    response: reqwest::Response,
) -> Vec<String> {
    let mut failures = Vec::new();
    let status = response.status().as_u16();
    let www = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.bytes().await.unwrap();
    let expected = endpoint.answer_to(caller);
    if status != expected {
        failures.push(format!(
            "{label}: got {status}, want {expected}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
        return failures;
    }
    // RFC 6750 §3.1: an error code only when a bearer key was sent.
    let challenge = match caller {
        Caller::UnknownKey | Caller::RevokedKey => {
            "Bearer realm=\"easel\", error=\"invalid_token\""
        }
        _ => "Bearer realm=\"easel\"",
    };
    match status {
        401 if www.as_deref() != Some(challenge) => {
            failures.push(format!("{label}: 401 WWW-Authenticate {www:?}"));
        }
        401 => {}
        403 => {
            let ok = www
                .as_deref()
                .is_some_and(|w| w.starts_with("Bearer") && w.contains("insufficient_scope"));
            let problem: Value = serde_json::from_slice(&body).unwrap_or_default();
            if !ok || problem["code"] != "forbidden" {
                failures.push(format!("{label}: 403 WWW-Authenticate {www:?} {problem}"));
            }
        }
        404 => {
            let problem: Value = serde_json::from_slice(&body).unwrap_or_default();
            let want = if endpoint.path.starts_with("/v1/batches") {
                "batch-not-found"
            } else {
                "image-not-found"
            };
            if problem["code"] != want
                || content_type.as_deref() != Some("application/problem+json")
            {
                failures.push(format!("{label}: 404 body {problem}"));
            }
        }
        _ => {}
    }
    if matches!(status, 401 | 403) && content_type.as_deref() != Some("application/problem+json") {
        failures.push(format!("{label}: {status} is not problem+json"));
    }
    // What a success with another bucket's key touched: only its own bucket.
    if caller == Caller::OtherBucket && status / 100 == 2 {
        let value: Value = serde_json::from_slice(&body).unwrap();
        let is_list = endpoint.method == Method::GET && endpoint.path == "/v1/images";
        let touched_default = match is_list {
            true => value["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["bucket"] != "other"),
            false => value["bucket"] != "other",
        };
        if touched_default {
            failures.push(format!("{label}: saw or touched bucket default: {value}"));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_checks_its_key_scope_and_bucket() {
    let app = TestApp::spawn().await;
    let image = upload_wait(&app, TINY, "?name=Matrix").await;
    let image_id = id(&image);
    assert_eq!(image["status"], "finished");
    let batch = app
        .send(Method::POST, "/v1/rerender", Body::Json(json!({})))
        .await;
    assert_eq!(batch.status(), 202);
    let batch_id = id(&json_of(batch).await);

    let (other_key, other) = app
        .key_for("other", &["image:read", "image:write", "image:delete"])
        .await;
    let _ = other_key;
    let (revoked_key, revoked) = app
        .key_for("default", &["image:read", "image:write", "image:delete"])
        .await;
    let revoked_id = revoked_key.split('_').nth(1).unwrap().to_string();
    assert!(app
        .catalog
        .revoke_api_key(&revoked_id, chrono::Utc::now())
        .await
        .unwrap());
    let unknown = common::client_with_key("easel_0123456789abcdef_00000000000000000000");
    let not_bearer = {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap()
    };
    let mut wrong_scope = std::collections::HashMap::new();
    for scope in ["image:read", "image:write", "image:delete"] {
        wrong_scope.insert(
            scope,
            app.key_for("default", &all_scopes_but(scope)).await.1,
        );
    }

    let endpoints = endpoints(&image_id, &batch_id);

    let callers = [
        Caller::NoKey,
        Caller::UnknownKey,
        Caller::NotBearer,
        Caller::RevokedKey,
        Caller::WrongScope,
        Caller::OtherBucket,
        Caller::RightKey,
    ];
    let mut failures = Vec::new();
    for endpoint in &endpoints {
        for caller in callers {
            let client = match caller {
                Caller::NoKey => &app.anonymous,
                Caller::UnknownKey => &unknown,
                Caller::NotBearer => &not_bearer,
                Caller::RevokedKey => &revoked,
                // A public file has no scope: any key of the bucket will do.
                Caller::WrongScope => &wrong_scope[endpoint.scope.unwrap_or("image:read")],
                Caller::OtherBucket => &other,
                Caller::RightKey => &app.client,
            };
            let label = format!("{} {} as {caller:?}", endpoint.method, endpoint.path);
            let response = app
                .send_as(
                    client,
                    endpoint.method.clone(),
                    &endpoint.path,
                    (endpoint.body)(),
                )
                .await;
            failures.extend(faults(caller, endpoint, &label, response).await);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // Nothing the refused callers sent changed the image: the name is the
    // right key's PATCH, which a PUT then replaced (PUT replaces fields).
    let image = app.wait_until_done(&image_id).await;
    assert_eq!(image["deleted_at"], Value::Null, "restored at the end");
    assert_eq!(image["bucket"], "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn style_files_follow_the_buckets_public_max_side_setting() {
    let app = TestApp::spawn().await;
    let image = upload_wait(&app, TINY, "").await;
    let image_id = id(&image);
    let (_, reader) = app.key_for("default", &["image:read"]).await;
    let (_, writer) = app.key_for("default", &["image:write"]).await;
    let (_, stranger) = app.key_for("other", &["image:read"]).await;
    let style = |client: &reqwest::Client, s: &str| {
        client
            .get(app.url(&format!("/v1/images/{image_id}/styles/{s}")))
            .send()
    };
    let set = |side: Option<i64>| {
        app.catalog.set_bucket_settings(
            "default",
            BucketSettings {
                public_max_side: side,
                feed_max_bytes: None,
            },
            chrono::Utc::now(),
        )
    };

    // Default: every rendered style is public, the original is not.
    for s in [
        "thumb",
        "regular",
        "square-400",
        "itunes",
        "feed",
        "stripped-original",
    ] {
        let response = style(&app.anonymous, s).await.unwrap();
        assert_eq!(response.status(), 200, "{s} is public by default");
        let want = if s == "stripped-original" {
            "image/png"
        } else {
            "image/jpeg"
        };
        assert_eq!(response.headers()["content-type"], want, "{s}");
    }
    let original = style(&app.anonymous, "original").await.unwrap();
    let www = original.headers().get("www-authenticate").cloned();
    problem(original, 401, "unauthenticated").await;
    assert!(www.is_some(), "401 says how to authenticate");
    problem(style(&writer, "original").await.unwrap(), 403, "forbidden").await;
    let bytes = style(&reader, "original")
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        bytes.as_ref(),
        fixture(TINY).as_slice(),
        "the original is the upload"
    );
    problem(
        style(&stranger, "thumb").await.unwrap(),
        404,
        "image-not-found",
    )
    .await;

    // Key-only bucket: a stranger gets what a missing id gets (issue 11).
    set(Some(0)).await.unwrap();
    for s in [
        "thumb",
        "regular",
        "itunes",
        "feed",
        "stripped-original",
        "original",
    ] {
        let response = style(&app.anonymous, s).await.unwrap();
        assert!(
            !response.headers().contains_key("www-authenticate"),
            "{s}: nothing says a key would help"
        );
        problem(response, 404, "image-not-found").await;
        problem(style(&writer, s).await.unwrap(), 403, "forbidden").await;
        assert_eq!(
            style(&reader, s).await.unwrap().status(),
            200,
            "{s} with image:read"
        );
        problem(style(&stranger, s).await.unwrap(), 404, "image-not-found").await;
    }
    // A style that will never exist says why only to a key holder.
    problem(
        style(&app.anonymous, "square-3000").await.unwrap(),
        404,
        "image-not-found",
    )
    .await;
    problem(
        style(&reader, "square-3000").await.unwrap(),
        404,
        "style-not-applicable",
    )
    .await;

    // Styles up to 400 px are public; larger ones need a key.
    set(Some(400)).await.unwrap();
    for (s, public) in [
        ("thumb", true),
        ("square-400", true),
        ("regular", true), // 64x64
        ("square-640", false),
        ("itunes", false),
        ("feed", false),
        ("stripped-original", true), // 64x64
    ] {
        let anonymous = style(&app.anonymous, s).await.unwrap().status();
        assert_eq!(anonymous == 200, public, "{s} anonymous: {anonymous}");
        if !public {
            assert_eq!(anonymous, 404, "{s}: as for a missing id");
            assert_eq!(style(&writer, s).await.unwrap().status(), 403, "{s}");
        }
        assert_eq!(style(&reader, s).await.unwrap().status(), 200, "{s}");
    }
    problem(
        style(&app.anonymous, "original").await.unwrap(),
        404,
        "image-not-found",
    )
    .await;

    // Back to public.
    set(None).await.unwrap();
    assert_eq!(style(&app.anonymous, "itunes").await.unwrap().status(), 200);
}

// ------------------------------------------------------------------- list

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_pages_with_links_meta_and_an_rfc_8288_link_header() {
    let app = TestApp::spawn_without_workers().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(id(&upload(&app, TINY, &format!("?name=Cover%20{i}")).await));
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let page = list(&app, "").await;
    assert_eq!(page["meta"]["per_page"], 25, "default page size");
    assert_eq!(page["meta"]["total"], 7);
    assert_eq!(page["meta"]["current_page"], 1);
    assert_eq!(ids(&page), newest_first, "newest first by default");

    // Three pages of three, walked by the `next` links.
    let mut seen = Vec::new();
    // Links are absolute: from --public-url, else the request's host.
    let mut url = app.url("/v1/images?page[size]=3");
    let mut number = 1;
    loop {
        let response = app.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let link_header = response.headers()["link"].to_str().unwrap().to_string();
        let page = json_of(response).await;
        let links = &page["links"];
        assert_eq!(page["meta"]["current_page"], number, "{url}");
        assert_eq!(page["meta"]["per_page"], 3);
        assert_eq!(page["meta"]["total"], 7);
        assert_eq!(page["meta"]["last_page"], 3);
        for rel in ["first", "prev", "next", "last"] {
            match links[rel].as_str() {
                Some(href) => {
                    assert!(
                        link_header.contains(&format!("<{href}>; rel=\"{rel}\"")),
                        "Link header {link_header:?} lacks {rel} {href}"
                    );
                    assert!(
                        href.contains("page%5Bsize%5D=3"),
                        "{rel} keeps the size: {href}"
                    );
                }
                None => assert!(
                    !link_header.contains(&format!("rel=\"{rel}\"")),
                    "{link_header:?} has {rel} but the body does not"
                ),
            }
        }
        assert!(links["first"]
            .as_str()
            .unwrap()
            .contains("page%5Bnumber%5D=1"));
        assert!(links["last"]
            .as_str()
            .unwrap()
            .contains("page%5Bnumber%5D=3"));
        assert_eq!(
            links["prev"].is_null(),
            number == 1,
            "prev on page {number}"
        );
        assert_eq!(
            links["next"].is_null(),
            number == 3,
            "next on page {number}"
        );
        let got = ids(&page);
        assert_eq!(got.len(), if number < 3 { 3 } else { 1 });
        seen.extend(got);
        match links["next"].as_str() {
            Some(next) => {
                assert!(next.contains(&format!("page%5Bnumber%5D={}", number + 1)));
                url = next.to_string();
                number += 1;
            }
            None => break,
        }
    }
    assert_eq!(seen, newest_first, "pages cover every image once, in order");

    // Direct page numbers, and a page past the end.
    let page = list(&app, "?page[size]=3&page[number]=2").await;
    assert_eq!(ids(&page), newest_first[3..6].to_vec());
    let page = list(&app, "?page[size]=3&page[number]=9").await;
    assert_eq!(ids(&page), Vec::<String>::new());
    assert!(page["links"]["prev"]
        .as_str()
        .unwrap()
        .contains("page%5Bnumber%5D=3"));
    assert!(page["links"]["next"].is_null());

    // Sizes: 100 is fine, 101 is a 400 that says the maximum.
    assert_eq!(list(&app, "?page[size]=100").await["meta"]["per_page"], 100);
    bad_param(&app, "?page[size]=101", "at most 100").await;
    bad_param(&app, "?page%5Bsize%5D=500", "at most 100").await;
    bad_param(&app, "?page[size]=0", "page[size]").await;
    bad_param(&app, "?page[size]=ten", "page[size]").await;
    bad_param(&app, "?page[number]=0", "page[number]").await;
    bad_param(&app, "?page[number]=-1", "page[number]").await;
}

/// What the list tests list: four finished images (`a` to `d`) and a
/// failed one (`e`) in bucket `default`, uploaded in that order, and one
/// of another bucket (`stranger`).
struct Listed {
    app: TestApp,
    a: String,
    b: String,
    c: String,
    d: String,
    e: String,
    stranger: String,
}

async fn listed_images() -> Listed {
    let app = TestApp::spawn().await;
    let a = id(&upload_wait(
        &app,
        TINY,
        "?name=Season%20One%20Cover&facet=cover&tags=s1,art",
    )
    .await);
    let b = id(&upload_wait(
        &app,
        SMALL_JPEG,
        "?name=Season%20Two%20cover&facet=cover&tags=s2",
    )
    .await);
    let c = id(&upload_wait(&app, TINY, "?name=Trailer&facet=grill&tags=art").await);
    let d = id(&upload_wait(&app, TINY, "?name=100%25%20Pure").await);
    let failed = app
        .upload_raw(
            fixture("corrupt/truncated_image.png"),
            "image/png",
            "?wait=true&name=Broken",
        )
        .await;
    assert_eq!(failed.status(), 201);
    let e = json_of(failed).await;
    assert_eq!(e["status"], "error");
    let e = id(&e);
    let stranger = id(&upload_to_bucket_other(&app, "?name=Season%20cover").await);
    Listed {
        app,
        a,
        b,
        c,
        d,
        e,
        stranger,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_by_id_facet_tag_and_status_and_the_filters_combine() {
    let Listed {
        app,
        a,
        b,
        c,
        d,
        e,
        stranger,
    } = listed_images().await;

    // filter[id]: repeated, comma separated, [] suffix, percent-encoded brackets.
    for query in [
        format!("?filter[id]={a}&filter[id]={c}"),
        format!("?filter%5Bid%5D={a}&filter%5Bid%5D={c}"),
        format!("?filter[id]={a},{c}"),
        format!("?filter[id][]={a}&filter[id][]={c}"),
        format!("?filter[id]={a}&filter[id]={c}&filter[id]={stranger}"),
    ] {
        let page = list(&app, &query).await;
        assert_eq!(id_set(&page), set_of(&[&a, &c]), "{query}");
        assert_eq!(page["meta"]["total"], 2, "{query}");
    }
    bad_param(&app, "?filter[id]=no%20spaces", "filter[id]").await;

    assert_eq!(
        id_set(&list(&app, "?filter[facet]=cover").await),
        set_of(&[&a, &b])
    );
    assert_eq!(
        id_set(&list(&app, "?filter[facet]=grill").await),
        set_of(&[&c])
    );
    assert_eq!(
        id_set(&list(&app, "?filter[tag]=art").await),
        set_of(&[&a, &c])
    );
    assert_eq!(id_set(&list(&app, "?filter[tag]=s2").await), set_of(&[&b]));
    assert_eq!(
        id_set(&list(&app, "?filter[tag]=nope").await),
        BTreeSet::new()
    );
    assert_eq!(
        id_set(&list(&app, "?filter[status]=finished").await),
        set_of(&[&a, &b, &c, &d])
    );
    assert_eq!(
        id_set(&list(&app, "?filter[status]=error").await),
        set_of(&[&e])
    );
    assert_eq!(
        id_set(&list(&app, "?filter[status]=ingesting").await),
        BTreeSet::new()
    );
    assert_eq!(
        id_set(&list(&app, "?filter[facet]=cover&filter[tag]=s1").await),
        set_of(&[&a]),
        "filters combine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_search_matches_names_in_any_case_and_takes_like_characters_literally() {
    let Listed { app, a, b, d, .. } = listed_images().await;

    // search: name contains, case-insensitive, LIKE characters are literal.
    assert_eq!(
        id_set(&list(&app, "?search=COVER").await),
        set_of(&[&a, &b])
    );
    assert_eq!(
        id_set(&list(&app, "?search=season%20t").await),
        set_of(&[&b])
    );
    assert_eq!(id_set(&list(&app, "?search=100%25").await), set_of(&[&d]));
    assert_eq!(id_set(&list(&app, "?search=%25").await), set_of(&[&d]));
    assert_eq!(id_set(&list(&app, "?search=_").await), BTreeSet::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_sorts_by_creation_name_or_update_either_way() {
    let Listed {
        app, a, b, c, d, e, ..
    } = listed_images().await;

    // sort
    let all_newest = vec![e.clone(), d.clone(), c.clone(), b.clone(), a.clone()];
    assert_eq!(ids(&list(&app, "").await), all_newest);
    assert_eq!(ids(&list(&app, "?sort=-created_at").await), all_newest);
    let oldest: Vec<String> = all_newest.iter().rev().cloned().collect();
    assert_eq!(ids(&list(&app, "?sort=created_at").await), oldest);
    let by_name = vec![d.clone(), e.clone(), a.clone(), b.clone(), c.clone()];
    assert_eq!(
        ids(&list(&app, "?sort=name").await),
        by_name,
        "100% Pure, Broken, Season One, Season Two, Trailer"
    );
    let by_name_desc: Vec<String> = by_name.iter().rev().cloned().collect();
    assert_eq!(ids(&list(&app, "?sort=-name").await), by_name_desc);
    tokio::time::sleep(Duration::from_millis(5)).await;
    app.patch_image(&a, json!({"string1": "touched"})).await;
    assert_eq!(
        ids(&list(&app, "?sort=-updated_at").await)[0],
        a,
        "just updated"
    );
    assert_eq!(
        ids(&list(&app, "?sort=updated_at").await).last().unwrap(),
        &a
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_and_include_shape_the_lists_items() {
    let Listed { app, a, e, .. } = listed_images().await;

    // fields[image]: only the named fields, and the id.
    let page = list(&app, "?fields[image]=name,tags&sort=name").await;
    for item in page["data"].as_array().unwrap() {
        let keys: BTreeSet<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["id", "name", "tags"]), "{item}");
    }
    assert_eq!(page["data"][0]["name"], "100% Pure");
    let page = list(&app, "?fields%5Bimage%5D=status").await;
    assert_eq!(page["data"][0].as_object().unwrap().len(), 2);

    // include=assets: every rendered style of each image; none without it.
    let page = list(&app, &format!("?filter[id]={a},{e}&include=assets")).await;
    for item in page["data"].as_array().unwrap() {
        let styles: BTreeSet<&str> = item["assets"]
            .as_array()
            .expect("assets included")
            .iter()
            .map(|x| x["style"].as_str().unwrap())
            .collect();
        if item["id"] == a.as_str() {
            assert!(
                [
                    "original",
                    "stripped-original",
                    "regular",
                    "thumb",
                    "itunes"
                ]
                .iter()
                .all(|s| styles.contains(s)),
                "{styles:?}"
            );
            let rows = app.catalog.assets(&a).await.unwrap();
            assert_eq!(styles.len(), rows.len());
        } else {
            assert!(styles.is_empty(), "a failed image has no assets");
        }
    }
    let page = list(&app, "").await;
    assert!(
        page["data"][0].get("assets").is_none(),
        "no assets unless included"
    );
    let page = list(
        &app,
        &format!("?filter[id]={a}&include=assets&fields[image]=name"),
    )
    .await;
    assert!(
        page["data"][0].get("assets").is_none(),
        "fields[image] wins"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_list_parameters_and_values_are_400s_that_name_them() {
    let app = TestApp::spawn_without_workers().await;
    let a = "some-image";
    // Unknown parameters and values are 400s that name them.
    bad_param(&app, "?filter[colour]=red", "filter[colour]").await;
    bad_param(&app, "?colour=red", "colour").await;
    bad_param(&app, "?sort=colour", "colour").await;
    bad_param(&app, "?sort=-colour", "colour").await;
    bad_param(&app, "?sort=name&sort=-name", "sort").await;
    bad_param(&app, "?fields[image]=name,colour", "colour").await;
    // `type` is not a field of the resource (JSON:API's envelope has one).
    bad_param(
        &app,
        "?fields[image]=type,name,colour",
        "\"type\", \"colour\"",
    )
    .await;
    // An empty id list would drop the filter and list everything.
    bad_param(&app, "?filter[id]=", "filter[id] needs at least one id").await;
    bad_param(&app, "?filter[id]=%20,", "filter[id] needs at least one id").await;
    bad_param(
        &app,
        &format!("?filter[id]={a}&filter[id][]="),
        "filter[id][]",
    )
    .await;
    bad_param(&app, "?include=owner", "owner").await;
    bad_param(&app, "?filter[status]=done", "done").await;
    bad_param(&app, "?filter[trashed]=maybe", "maybe").await;
    bad_param(&app, "?filter[feed_ready]=maybe", "maybe").await;
    bad_param(&app, "?filter[bucket]=other", "filter[bucket]").await;
    bad_param(&app, "?page[number]=1&page[after]=x", "page[after]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_after_walks_the_list_by_keyset_in_any_sort() {
    let app = TestApp::spawn_without_workers().await;
    let mut created = Vec::new();
    for name in ["delta", "alpha", "echo", "charlie", "bravo"] {
        created.push((
            name,
            id(&upload(&app, TINY, &format!("?name={name}")).await),
        ));
    }
    for (sort, want) in [
        (
            "-created_at",
            created
                .iter()
                .rev()
                .map(|(_, i)| i.clone())
                .collect::<Vec<_>>(),
        ),
        ("name", {
            let mut sorted = created.clone();
            sorted.sort();
            sorted.into_iter().map(|(_, i)| i).collect()
        }),
        ("-name", {
            let mut sorted = created.clone();
            sorted.sort();
            sorted.into_iter().rev().map(|(_, i)| i).collect()
        }),
    ] {
        let first = list(&app, &format!("?sort={sort}&page[size]=2")).await;
        let mut seen = ids(&first);
        let mut cursor = seen.last().unwrap().clone();
        for _ in 0..5 {
            let page = list(
                &app,
                &format!("?sort={sort}&page[size]=2&page[after]={cursor}"),
            )
            .await;
            assert_eq!(
                page["meta"]["current_page"],
                Value::Null,
                "keyset pages have no number"
            );
            assert_eq!(page["meta"]["total"], 5);
            let got = ids(&page);
            if let Some(next) = page["links"]["next"].as_str() {
                assert!(next.contains("page%5Bafter%5D="), "{next}");
                assert!(next.contains(&format!("sort={}", sort)), "{next}");
            } else {
                assert!(got.len() < 2, "a full page links to the next");
            }
            seen.extend(got.clone());
            match got.last() {
                Some(last) if got.len() == 2 => cursor = last.clone(),
                _ => break,
            }
        }
        assert_eq!(seen, want, "sort={sort}");
    }
    let response = app.get("/v1/images?page[after]=no-such-image").await;
    let body = problem(response, 400, "invalid-parameter").await;
    assert!(body["detail"].as_str().unwrap().contains("no-such-image"));
}

// ------------------------------------------------------------------ PATCH

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_metadata_without_rerendering_and_refuses_bad_fields() {
    let app = TestApp::spawn().await;
    let image = upload_wait(&app, TINY, "?name=Before&facet=cover&tags=a,b&number1=1").await;
    let image_id = id(&image);
    let path = format!("/v1/images/{image_id}");
    let before = app.get_image(&image_id).await;
    let etag_before = etag(&before);

    let response = app
        .send(
            Method::PATCH,
            &path,
            Body::Json(json!({
                "name": "  After  ",
                "facet": "grill",
                "tags": ["x", "y", "x"],
                "string1": "one", "string2": "two", "string3": "three",
                "number1": 1.5, "number2": -2, "number3": 1e10,
            })),
        )
        .await;
    assert_eq!(response.status(), 200);
    let etag_after = etag(&response);
    assert_ne!(etag_after, etag_before, "a change changes the ETag");
    let patched = json_of(response).await;
    let expect = json!({
        "name": "After", "facet": "grill", "tags": ["x", "y"],
        "string1": "one", "string2": "two", "string3": "three",
        "number1": 1.5, "number2": -2.0, "number3": 1e10,
    });
    for (field, value) in expect.as_object().unwrap() {
        assert_eq!(&patched[field], value, "PATCH response {field}");
    }
    assert_eq!(patched["status"], "finished", "metadata does not re-render");
    let shown = app.image_json(&image_id).await;
    for (field, value) in expect.as_object().unwrap() {
        assert_eq!(&shown[field], value, "GET after PATCH {field}");
    }
    assert_eq!(
        app.catalog.jobs_for_image(&image_id).await.unwrap().len(),
        1
    );
    assert_eq!(
        ids(&list(&app, "?filter[tag]=y").await),
        vec![image_id.clone()]
    );
    assert_eq!(
        ids(&list(&app, "?filter[tag]=a").await),
        Vec::<String>::new(),
        "tags replaced"
    );

    // Absent fields stay, null clears.
    let patched = app
        .patch_image(
            &image_id,
            json!({"facet": null, "number2": null, "tags": []}),
        )
        .await;
    assert_eq!(patched["facet"], Value::Null);
    assert_eq!(patched["number2"], Value::Null);
    assert_eq!(patched["tags"], json!([]));
    assert_eq!(patched["name"], "After");
    assert_eq!(patched["number3"], 1e10);

    // Refusals.
    for (body, code, names) in [
        (json!({"colour": "red"}), "unknown-field", "colour"),
        (json!({"number1": "seven"}), "invalid-field", "number1"),
        (json!({"tags": "a,b"}), "invalid-field", "tags"),
        (json!({"name": 7}), "invalid-field", "name"),
        (json!({"name": "x".repeat(1025)}), "invalid-field", "name"),
        (json!({"crop": "nonsense"}), "crop-invalid", ""),
        (json!([1, 2]), "invalid-json", ""),
    ] {
        let response = app
            .send(Method::PATCH, &path, Body::Json(body.clone()))
            .await;
        let status = response.status().as_u16();
        let problem: Value = json_of(response).await;
        assert!(matches!(status, 400 | 422), "{body}: {status} {problem}");
        assert_eq!(problem["code"], code, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(names),
            "{problem}"
        );
    }
    let response = app
        .client
        .patch(app.url(&path))
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    problem(response, 415, "unsupported-media-type").await;
    let response = app
        .send(
            Method::PATCH,
            &path,
            Body::Json(json!({"crop": {"x": 0, "y": 0, "width": 65, "height": 10}})),
        )
        .await;
    problem(response, 422, "crop-out-of-bounds").await;
    let response = app
        .send(Method::PATCH, "/v1/images/nope", Body::Json(json!({})))
        .await;
    problem(response, 404, "image-not-found").await;
    assert_eq!(
        app.image_json(&image_id).await["name"],
        "After",
        "refusals change nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_crop_rerenders_serving_the_old_files_until_the_new_ones_replace_them() {
    let app = TestApp::spawn_without_workers().await;
    let image_id = id(&upload(&app, MEDIUM_JPEG, "").await);
    assert!(matches!(
        drain_queue(&app).await.as_slice(),
        [Outcome::Finished { .. }]
    ));
    let first = app.image_json(&image_id).await;
    assert_eq!(first["status"], "finished");
    assert_eq!(
        (first["width"].as_u64(), first["height"].as_u64()),
        (Some(640), Some(480))
    );
    let old_regular = storage_key(&app, &image_id, "regular").await;
    let old_thumb = storage_key(&app, &image_id, "thumb").await;
    let old_sha = asset(&first, "regular")["sha256"].clone();
    assert!(on_disk(&app, &old_regular).await);
    assert_eq!(
        asset(&first, "regular")["width"],
        480,
        "centred square by default"
    );

    // The same crop as now (none) does not re-render.
    let patched = app
        .patch_image(&image_id, json!({"crop": null, "name": "No crop"}))
        .await;
    assert_eq!(patched["status"], "finished");
    assert!(
        drain_queue(&app).await.is_empty(),
        "no job for an unchanged crop"
    );

    let patched = app
        .patch_image(
            &image_id,
            json!({"crop": {"x": 100, "y": 50, "width": 300, "height": 300}}),
        )
        .await;
    assert_eq!(patched["status"], "ingesting", "a new crop re-renders");
    assert_eq!(
        patched["crop"],
        json!({"x": 100, "y": 50, "width": 300, "height": 300})
    );

    // While the render is queued, the old files are still served.
    let response = app.get_style(&image_id, "regular", HeaderMap::new()).await;
    assert_eq!(response.status(), 200, "old assets keep being served");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(serde_json::json!(easel_render::sha256_hex(&bytes)), old_sha);
    assert_eq!(common::dimensions(&bytes), (480, 480));
    assert_eq!(
        app.get_assets(&image_id).await["data"]
            .as_array()
            .unwrap()
            .len(),
        8
    );

    let outcomes = drain_queue(&app).await;
    assert!(
        matches!(outcomes.as_slice(), [Outcome::Finished { .. }]),
        "{outcomes:?}"
    );
    let second = app.image_json(&image_id).await;
    assert_eq!(second["status"], "finished");
    let regular = asset(&second, "regular");
    assert_eq!(
        (regular["width"].as_u64(), regular["height"].as_u64()),
        (Some(300), Some(300))
    );
    assert_ne!(regular["sha256"], old_sha);
    let response = app.get_style(&image_id, "regular", HeaderMap::new()).await;
    assert_eq!(
        common::dimensions(&response.bytes().await.unwrap()),
        (300, 300)
    );

    // Swapped: the superseded files keep serving at their versioned URLs
    // for the grace period, then go; nothing unreferenced is left.
    let new_regular = storage_key(&app, &image_id, "regular").await;
    assert_ne!(new_regular, old_regular);
    assert!(
        on_disk(&app, &old_regular).await,
        "kept for the grace period"
    );
    let old_url = asset(&first, "regular")["url"]
        .as_str()
        .unwrap()
        .to_string();
    let response = app.anonymous.get(&old_url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{old_url}");
    assert_eq!(
        serde_json::json!(easel_render::sha256_hex(&response.bytes().await.unwrap())),
        old_sha
    );
    settle_store(&app, &[&image_id]).await;
    assert!(on_disk(&app, &new_regular).await);
    assert!(
        !on_disk(&app, &old_regular).await,
        "the old regular file is deleted"
    );
    assert!(
        !on_disk(&app, &old_thumb).await,
        "the old thumb file is deleted"
    );
    assert_eq!(
        stored_keys(&app).await,
        referenced_keys(&app, &[&image_id]).await
    );
    assert_eq!(
        app.catalog.assets(&image_id).await.unwrap().len(),
        8,
        "one row per style"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_render_queues_a_rerender_that_keeps_identical_files() {
    let app = TestApp::spawn_without_workers().await;
    let image_id = id(&upload(&app, TINY, "").await);
    drain_queue(&app).await;
    let keys_before = stored_keys(&app).await;
    let response = app
        .send(
            Method::POST,
            &format!("/v1/images/{image_id}/render"),
            Body::None,
        )
        .await;
    assert_eq!(response.status(), 202);
    assert!(response.headers().contains_key("etag"));
    let body = json_of(response).await;
    assert_eq!(body["status"], "ingesting");
    assert_eq!(
        body["assets"].as_array().unwrap().len(),
        8,
        "old assets still listed"
    );
    assert_eq!(
        app.get_style(&image_id, "thumb", HeaderMap::new())
            .await
            .status(),
        200
    );
    assert_eq!(
        app.catalog.jobs_for_image(&image_id).await.unwrap().len(),
        2
    );
    let outcomes = drain_queue(&app).await;
    assert!(matches!(outcomes.as_slice(), [Outcome::Finished { .. }]));
    assert_eq!(app.image_json(&image_id).await["status"], "finished");
    // Deterministic render: the same keys, still stored (not deleted as superseded).
    settle_store(&app, &[&image_id]).await;
    assert_eq!(stored_keys(&app).await, keys_before);
    assert_eq!(
        stored_keys(&app).await,
        referenced_keys(&app, &[&image_id]).await
    );
    let response = app
        .send(Method::POST, "/v1/images/no-such-image/render", Body::None)
        .await;
    problem(response, 404, "image-not-found").await;
}

// -------------------------------------------------------------------- PUT

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_creates_then_replaces_an_image_under_a_client_chosen_id() {
    let app = TestApp::spawn().await;
    let path = "/v1/images/show-42.cover_v1";
    let response = app
        .client
        .put(app.url(&format!("{path}?name=First&tags=a")))
        .header("content-type", "image/png")
        .body(fixture(TINY))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "created");
    assert_eq!(response.headers()["location"], app.url(path).as_str());
    assert!(response.headers().contains_key("etag"));
    let created = json_of(response).await;
    assert_eq!(created["id"], "show-42.cover_v1");
    assert_eq!(created["name"], "First");
    assert_eq!(created["bucket"], "default");
    let done = app.wait_until_done("show-42.cover_v1").await;
    assert_eq!(done["status"], "finished");
    assert_eq!(done["width"], 64);
    let old_original = app
        .catalog
        .image("show-42.cover_v1")
        .await
        .unwrap()
        .unwrap()
        .original_key
        .unwrap();
    let old_regular = storage_key(&app, "show-42.cover_v1", "regular").await;

    // Replace with other bytes and no name: 200, and PUT replaces every field.
    let response = app
        .client
        .put(app.url(&format!("{path}?wait=true")))
        .header("content-type", "image/jpeg")
        .body(fixture(SMALL_JPEG))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "replaced");
    let replaced = json_of(response).await;
    assert_eq!(replaced["status"], "finished", "{replaced}");
    assert_eq!(replaced["name"], Value::Null);
    assert_eq!(replaced["tags"], json!([]));
    assert_eq!(replaced["mimetype"], "image/jpeg");
    assert_eq!(
        (replaced["width"].as_u64(), replaced["height"].as_u64()),
        (Some(128), Some(128))
    );
    assert_eq!(
        replaced["created_at"], created["created_at"],
        "same resource"
    );
    let original = app
        .get_original("show-42.cover_v1")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(original.as_ref(), fixture(SMALL_JPEG).as_slice());
    assert_eq!(asset(&replaced, "regular")["width"], 128);
    assert_eq!(
        ids(&list(&app, "").await),
        vec!["show-42.cover_v1".to_string()]
    );

    // The replaced original and renders are superseded: deleted.
    settle_store(&app, &["show-42.cover_v1"]).await;
    assert!(!on_disk(&app, &old_regular).await, "old regular deleted");
    assert!(!on_disk(&app, &old_original).await, "old original deleted");
    assert_eq!(
        stored_keys(&app).await,
        referenced_keys(&app, &["show-42.cover_v1"]).await
    );

    // Ids: [A-Za-z0-9._-]{1,128}.
    let ok_id = "A".repeat(128);
    let response = app
        .client
        .put(app.url(&format!("/v1/images/{ok_id}")))
        .header("content-type", "image/png")
        .body(fixture(TINY))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "128 characters are fine");
    for bad in [
        "A".repeat(129),
        "has%20space".into(),
        "caf%C3%A9".into(),
        "a%2Fb".into(),
        "x$y".into(),
        "..".into(),
    ] {
        let response = app
            .client
            .put(format!("{}/v1/images/{bad}", app.base))
            .header("content-type", "image/png")
            .body(fixture(TINY))
            .send()
            .await
            .unwrap();
        let status = response.status();
        if bad == ".." {
            // The client may normalise the path away; only a 400 or 404/405 is sane.
            assert!(
                status == 400 || status == 404 || status == 405,
                "{bad}: {status}"
            );
            continue;
        }
        problem(response, 400, "invalid-id").await;
    }
    // A body that is not an image: 415, nothing created.
    let response = app
        .client
        .put(app.url("/v1/images/not-an-image"))
        .header("content-type", "image/png")
        .body("plain text")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert!(app.catalog.image("not-an-image").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_an_origin_url_fetches_the_image_or_records_why_not() {
    let app = TestApp::spawn().await;
    let origin = origin_server().await;
    let put = |id: &str, body: Value| {
        app.client
            .put(app.url(&format!("/v1/images/{id}?wait=true")))
            .json(&body)
            .send()
    };

    let url = format!("{origin}/x.jpg");
    let response = put(
        "from-origin",
        json!({"origin": url, "name": "Fetched", "tags": ["o"]}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let image = json_of(response).await;
    assert_eq!(image["status"], "finished", "{image}");
    assert_eq!(image["origin"], url);
    assert_eq!(image["name"], "Fetched");
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(640), Some(480))
    );
    assert_eq!(
        image["size"].as_u64(),
        Some(fixture(MEDIUM_JPEG).len() as u64)
    );
    assert_eq!(
        image["sha256"],
        easel_render::sha256_hex(&fixture(MEDIUM_JPEG))
    );
    let original = app.get_original("from-origin").await.bytes().await.unwrap();
    assert_eq!(original.as_ref(), fixture(MEDIUM_JPEG).as_slice());
    assert_eq!(asset(&image, "thumb")["width"], 100);

    // The same id again: replaced, 200.
    let response = put("from-origin", json!({"origin": url})).await.unwrap();
    assert_eq!(response.status(), 200);
    let image = json_of(response).await;
    assert_eq!(image["status"], "finished");
    assert_eq!(image["name"], Value::Null);

    // An origin 404 and a non-image end in error with their codes.
    let response = put(
        "missing",
        json!({"origin": format!("{origin}/missing.jpg")}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let image = json_of(response).await;
    assert_eq!(image["status"], "error");
    assert_eq!(image["error_code"], "origin-http-status", "{image}");
    assert!(image["error"].as_str().unwrap().contains("404"), "{image}");
    assert_eq!(image["feed_ready"]["ok"], false);
    let response = put("notes", json!({"origin": format!("{origin}/notes.jpg")}))
        .await
        .unwrap();
    let image = json_of(response).await;
    assert_eq!(image["status"], "error");
    assert_eq!(image["error_code"], "unsupported-format", "{image}");
    assert_eq!(app.catalog.assets("notes").await.unwrap().len(), 0);

    // Refused before anything is created.
    for (body, status, code) in [
        (
            json!({"origin": "ftp://example.com/x.jpg"}),
            422,
            "origin-invalid-url",
        ),
        (json!({"origin": "not a url"}), 422, "origin-invalid-url"),
        (
            json!({"origin": "http://user:pw@example.com/x.jpg"}),
            422,
            "origin-invalid-url",
        ),
        (json!({"name": "no origin"}), 400, "missing-origin"),
        (
            json!({"origin": url, "colour": "red"}),
            400,
            "unknown-field",
        ),
    ] {
        let response = put("refused", body.clone()).await.unwrap();
        problem(response, status, code).await;
    }
    // `wait` is parsed as strictly as for an image body.
    let response = app
        .client
        .put(app.url("/v1/images/refused?wait=soon"))
        .json(&json!({"origin": url}))
        .send()
        .await
        .unwrap();
    problem(response, 400, "invalid-parameter").await;
    assert!(app.catalog.image("refused").await.unwrap().is_none());

    // Loopback is refused when private origins are not allowed.
    let strict = TestApp::spawn_with(TestOptions {
        allow_private_origins: false,
        ..TestOptions::default()
    })
    .await;
    let response = strict
        .client
        .put(strict.url("/v1/images/private?wait=true"))
        .json(&json!({"origin": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let image = json_of(response).await;
    assert_eq!(image["status"], "error");
    assert_eq!(image["error_code"], "origin-forbidden-address", "{image}");
    assert!(strict.stored_keys("originals").await.is_empty());
    // By name: the reason is told, the internal address is not.
    let by_name = url.replace("127.0.0.1", "localhost");
    let response = strict
        .client
        .put(strict.url("/v1/images/private-name?wait=true"))
        .json(&json!({"origin": by_name}))
        .send()
        .await
        .unwrap();
    let image = json_of(response).await;
    assert_eq!(image["error_code"], "origin-forbidden-address", "{image}");
    let error = image["error"].as_str().unwrap();
    assert!(
        error.contains("localhost leads to a loopback address"),
        "{error}"
    );
    assert!(
        !error.contains("127.0.0.1") && !error.contains("::1"),
        "{error}"
    );
}

/// Query parameters of POST and PUT are checked like the list's: an unknown
/// one (a typo such as `?nmae=`) is a 400 that names it, before anything is
/// stored. Unknown multipart parts stay ignored: browsers' forms send extras.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_upload_query_parameters_are_400s_that_name_them() {
    let app = TestApp::spawn_without_workers().await;
    let png = fixture(TINY);
    let refused = |response: reqwest::Response, names: &'static str| async move {
        let body = problem(response, 400, "invalid-parameter").await;
        let detail = body["detail"].as_str().unwrap().to_string();
        assert!(detail.contains(names), "{names}: {detail}");
        detail
    };

    let detail = refused(
        app.upload_raw(png.clone(), "image/png", "?nmae=Cover&colour=red&name=ok")
            .await,
        "unknown parameters \"nmae\", \"colour\"",
    )
    .await;
    assert!(detail.contains("known: name, facet"), "{detail}");
    refused(
        app.upload_multipart(png.clone(), &[("name", "Cover")], "?colour=red")
            .await,
        "\"colour\"",
    )
    .await;
    let put_raw = app
        .client
        .put(app.url("/v1/images/typo?colour=red"))
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    refused(put_raw, "\"colour\"").await;
    let put_json = |query: &'static str| {
        app.client
            .put(app.url(&format!("/v1/images/typo{query}")))
            .json(&json!({"origin": "http://example.com/x.jpg"}))
            .send()
    };
    refused(
        put_json("?colour=red").await.unwrap(),
        "\"colour\"; known: wait",
    )
    .await;
    // With JSON, the fields belong in the body.
    refused(
        put_json("?name=Cover&wait=false").await.unwrap(),
        "name go in the body",
    )
    .await;
    assert!(app.catalog.image("typo").await.unwrap().is_none());
    assert!(app.stored_keys("originals").await.is_empty());
    assert_eq!(list(&app, "").await["meta"]["total"], 0);

    // Known parameters, and unknown multipart parts, are accepted.
    let response = app
        .upload_multipart(
            png.clone(),
            &[("name", "Form"), ("submit", "Upload"), ("csrf_token", "t")],
            "?facet=cover&wait=false",
        )
        .await;
    assert_eq!(response.status(), 202);
    let image = json_of(response).await;
    assert_eq!(
        (image["name"].as_str(), image["facet"].as_str()),
        (Some("Form"), Some("cover"))
    );
    let response = app
        .client
        .put(app.url("/v1/images/typo?name=Raw&wait=false"))
        .header("content-type", "image/png")
        .body(png)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = put_json("?wait=false").await.unwrap();
    assert_eq!(response.status(), 200, "replaced from an origin");
}

// ----------------------------------------------------------------- DELETE

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_hides_restore_brings_back_and_force_removes_rows_and_files() {
    let app = TestApp::spawn().await;
    let kept = id(&upload_wait(&app, SMALL_JPEG, "?name=Kept").await);
    let image_id = id(&upload_wait(&app, TINY, "?name=Doomed").await);
    let path = format!("/v1/images/{image_id}");

    let response = app.send(Method::DELETE, &path, Body::None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("etag"));
    let deleted = json_of(response).await;
    assert_eq!(deleted["id"], image_id.as_str());
    assert!(deleted["deleted_at"].is_string(), "{deleted}");
    problem(app.get_image(&image_id).await, 404, "image-not-found").await;
    problem(
        app.anonymous
            .get(app.url(&format!("{path}/styles/thumb")))
            .send()
            .await
            .unwrap(),
        404,
        "image-not-found",
    )
    .await;
    problem(
        app.get_style(&image_id, "thumb", HeaderMap::new()).await,
        404,
        "image-not-found",
    )
    .await;
    assert_eq!(ids(&list(&app, "").await), vec![kept.clone()]);
    let with = id_set(&list(&app, "?filter[trashed]=with").await);
    assert_eq!(with, BTreeSet::from([kept.clone(), image_id.clone()]));
    assert_eq!(
        ids(&list(&app, "?filter[trashed]=only").await),
        vec![image_id.clone()]
    );
    assert_eq!(
        ids(&list(&app, "?filter[trashed]=without").await),
        vec![kept.clone()]
    );
    // A trashed image cannot be changed or trashed again.
    problem(
        app.send(Method::DELETE, &path, Body::None).await,
        404,
        "image-not-found",
    )
    .await;
    problem(
        app.send(Method::PATCH, &path, Body::Json(json!({"name": "x"})))
            .await,
        404,
        "image-not-found",
    )
    .await;

    let response = app
        .send(Method::POST, &format!("{path}/restore"), Body::None)
        .await;
    assert_eq!(response.status(), 200);
    let restored = json_of(response).await;
    assert_eq!(restored["deleted_at"], Value::Null);
    assert_eq!(restored["name"], "Doomed");
    assert_eq!(app.get_image(&image_id).await.status(), 200);
    assert_eq!(
        app.get_style(&image_id, "thumb", HeaderMap::new())
            .await
            .status(),
        200
    );
    assert_eq!(list(&app, "").await["meta"]["total"], 2);

    // Force: 204, the row, its assets and its files are gone.
    let own_keys = referenced_keys(&app, &[&image_id]).await;
    let kept_keys = referenced_keys(&app, &[&kept]).await;
    assert!(own_keys.is_disjoint(&kept_keys));
    let response = app
        .client
        .delete(app.url(&format!("{path}?force=maybe")))
        .send()
        .await
        .unwrap();
    problem(response, 400, "invalid-parameter").await;
    let response = app
        .client
        .delete(app.url(&format!("{path}?force=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await.unwrap().is_empty());
    problem(app.get_image(&image_id).await, 404, "image-not-found").await;
    assert!(app.catalog.image(&image_id).await.unwrap().is_none());
    assert!(app.catalog.assets(&image_id).await.unwrap().is_empty());
    assert_eq!(
        ids(&list(&app, "?filter[trashed]=with").await),
        vec![kept.clone()]
    );
    // The files go after the delete delay, when the reaper comes by.
    for key in &own_keys {
        assert!(on_disk(&app, key).await, "{key} is deleted after a delay");
    }
    settle_store(&app, &[&kept]).await;
    for key in &own_keys {
        assert!(!on_disk(&app, key).await, "{key} deleted with its image");
    }
    assert_eq!(
        stored_keys(&app).await,
        kept_keys,
        "only the other image's files remain"
    );
    problem(
        app.client
            .delete(app.url(&format!("{path}?force=true")))
            .send()
            .await
            .unwrap(),
        404,
        "image-not-found",
    )
    .await;

    // A trashed image can be force-deleted too.
    let response = app
        .send(Method::DELETE, &format!("/v1/images/{kept}"), Body::None)
        .await;
    assert_eq!(response.status(), 200);
    let response = app
        .client
        .delete(app.url(&format!("/v1/images/{kept}?force=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    settle_store(&app, &[&kept]).await;
    assert!(
        stored_keys(&app).await.is_empty(),
        "{:?}",
        stored_keys(&app).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_delete_keeps_objects_another_image_still_uses() {
    let app = TestApp::spawn().await;
    let a = id(&upload_wait(&app, SMALL_JPEG, "?name=A").await);
    let b = id(&upload_wait(&app, SMALL_JPEG, "?name=B").await);
    let keys_a = referenced_keys(&app, &[&a]).await;
    let keys_b = referenced_keys(&app, &[&b]).await;
    assert_eq!(keys_a, keys_b, "identical uploads share every object");
    let response = app
        .client
        .delete(app.url(&format!("/v1/images/{a}?force=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(app.catalog.image(&a).await.unwrap().is_none());
    settle_store(&app, &[&b]).await;
    for key in &keys_b {
        assert!(on_disk(&app, key).await, "{key} is still B's");
    }
    let original = app.get_original(&b).await;
    assert_eq!(original.status(), 200);
    assert_eq!(
        original.bytes().await.unwrap().as_ref(),
        fixture(SMALL_JPEG).as_slice()
    );
    for style in ["regular", "thumb", "itunes"] {
        assert_eq!(
            app.get_style(&b, style, HeaderMap::new()).await.status(),
            200,
            "{style}"
        );
    }
    let response = app
        .client
        .delete(app.url(&format!("/v1/images/{b}?force=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    settle_store(&app, &[&b]).await;
    assert!(
        stored_keys(&app).await.is_empty(),
        "the last user takes the objects with it"
    );
}

// ------------------------------------------------------------- feed_ready

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_ready_passes_a_big_photo_and_flags_an_enlarged_small_image() {
    let app = TestApp::spawn().await;
    let big = app
        .upload_raw(
            fixture("photo/iphone6_3264x2448.jpg"),
            "image/jpeg",
            "?wait=true&crop=400,300,1500,1500",
        )
        .await;
    assert_eq!(big.status(), 201);
    let big = json_of(big).await;
    assert_eq!(big["status"], "finished");
    let itunes = asset(&big, "itunes");
    assert_eq!(
        (itunes["width"].as_u64(), itunes["height"].as_u64()),
        (Some(1400), Some(1400))
    );
    assert_eq!(itunes["upscaled"], false);
    let ready = &big["feed_ready"];
    assert_eq!(ready["ok"], true, "{ready}");
    assert_eq!(ready["reasons"], json!([]));
    let warnings = ready["warnings"].as_array().unwrap();
    let heavy = itunes["size"].as_u64().unwrap() > 512 * 1024;
    assert_eq!(
        warnings.len(),
        usize::from(heavy),
        "{ready} (itunes is {} bytes)",
        itunes["size"]
    );
    if heavy {
        assert!(warnings[0].as_str().unwrap().contains("512 KB"));
    }

    let small = upload_wait(&app, TINY, "").await;
    let ready = &small["feed_ready"];
    assert_eq!(ready["ok"], false, "{ready}");
    let reasons: Vec<&str> = ready["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("enlarged")),
        "{reasons:?}"
    );
    assert!(ready["warnings"].is_array());
    assert_eq!(asset(&small, "itunes")["upscaled"], true);

    let medium = upload_wait(&app, MEDIUM_JPEG, "").await;
    assert_eq!(medium["feed_ready"]["ok"], false);

    let (big, small, medium) = (id(&big), id(&small), id(&medium));
    let not_ready = id_set(&list(&app, "?filter[feed_ready]=false").await);
    assert_eq!(not_ready, BTreeSet::from([small.clone(), medium.clone()]));
    assert_eq!(
        ids(&list(&app, "?filter[feed_ready]=true").await),
        vec![big.clone()]
    );
    assert_eq!(
        ids(&list(&app, "?filter[feed_ready]=1").await),
        vec![big.clone()]
    );
    // The same verdict on the single resource as in the list.
    let shown = app.image_json(&big).await;
    assert_eq!(shown["feed_ready"]["ok"], true);
}

// ----------------------------------------------------------- ETag/If-Match

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_guards_patch_put_and_delete() {
    let app = TestApp::spawn_without_workers().await;
    let image_id = id(&upload(&app, TINY, "?name=Guarded").await);
    let path = format!("/v1/images/{image_id}");
    let current = etag(&app.get_image(&image_id).await);
    assert!(
        current.starts_with('"') && current.ends_with('"'),
        "strong ETag: {current}"
    );
    assert_eq!(
        etag(&app.get_image(&image_id).await),
        current,
        "stable while unchanged"
    );

    let patch = |if_match: &str, name: &str| {
        app.client
            .patch(app.url(&path))
            .header("if-match", if_match)
            .json(&json!({"name": name}))
            .send()
    };
    let response = patch(&current, "One").await.unwrap();
    assert_eq!(response.status(), 200);
    let after_one = etag(&response);
    assert_ne!(after_one, current);
    assert_eq!(
        etag(&app.get_image(&image_id).await),
        after_one,
        "GET agrees with PATCH"
    );

    // The old tag is stale now.
    let response = patch(&current, "Two").await.unwrap();
    let body = problem(response, 412, "precondition-failed").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(after_one.trim_matches('"')),
        "{body}"
    );
    assert_eq!(app.image_json(&image_id).await["name"], "One");
    // Weak tags never match If-Match; a list with the current one does; * does.
    let weak = format!("W/{after_one}");
    problem(
        patch(&weak, "Two").await.unwrap(),
        412,
        "precondition-failed",
    )
    .await;
    let listed = format!("\"v0\", {after_one}");
    let response = patch(&listed, "Two").await.unwrap();
    assert_eq!(response.status(), 200);
    let response = patch("*", "Three").await.unwrap();
    assert_eq!(response.status(), 200);
    let now = etag(&response);

    // PUT
    let put = |if_match: &str, target: &str| {
        app.client
            .put(app.url(&format!("/v1/images/{target}")))
            .header("if-match", if_match)
            .header("content-type", "image/png")
            .body(fixture(TINY))
            .send()
    };
    problem(
        put(&current, &image_id).await.unwrap(),
        412,
        "precondition-failed",
    )
    .await;
    let response = put(&now, &image_id).await.unwrap();
    assert_eq!(response.status(), 200);
    let now = etag(&response);
    assert_eq!(put("*", &image_id).await.unwrap().status(), 200);
    // If-Match on an id that does not exist cannot hold: nothing is created.
    problem(
        put("*", "fresh-id").await.unwrap(),
        412,
        "precondition-failed",
    )
    .await;
    assert!(app.catalog.image("fresh-id").await.unwrap().is_none());

    // DELETE (soft and force)
    let delete = |if_match: &str, query: &str| {
        app.client
            .delete(app.url(&format!("{path}{query}")))
            .header("if-match", if_match)
            .send()
    };
    problem(delete(&now, "").await.unwrap(), 412, "precondition-failed").await;
    let current = etag(&app.get_image(&image_id).await);
    let response = delete(&current, "").await.unwrap();
    assert_eq!(response.status(), 200);
    let trashed = etag(&response);
    assert_ne!(trashed, current);
    problem(
        delete(&current, "?force=true").await.unwrap(),
        412,
        "precondition-failed",
    )
    .await;
    assert!(app.catalog.image(&image_id).await.unwrap().is_some());
    assert_eq!(delete(&trashed, "?force=true").await.unwrap().status(), 204);
    assert!(app.catalog.image(&image_id).await.unwrap().is_none());
}

// ---------------------------------------------------------------- batches

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerender_all_queues_every_image_and_the_batch_counts_them_done() {
    let app = TestApp::spawn().await;
    let mut images = Vec::new();
    for path in [TINY, SMALL_JPEG, TINY] {
        images.push(id(&upload_wait(&app, path, "").await));
    }
    upload_to_bucket_other(&app, "").await;

    // Nothing is stale: an empty batch, complete at once.
    let response = app.send(Method::POST, "/v1/rerender", Body::None).await;
    assert_eq!(response.status(), 202);
    let stale = json_of(response).await;
    assert_eq!(stale["total"], 0, "{stale}");
    assert_eq!(stale["complete"], true);

    let response = app
        .send(
            Method::POST,
            "/v1/rerender",
            Body::Json(json!({"all": true})),
        )
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let batch = json_of(response).await;
    let batch_id = id(&batch);
    assert_eq!(location, app.url(&format!("/v1/batches/{batch_id}")));
    assert_eq!(batch["all"], true);
    assert_eq!(batch["bucket"], "default");
    assert_eq!(
        batch["total"], 3,
        "every image of this bucket, not the other's: {batch}"
    );

    let mut last = Value::Null;
    for _ in 0..600 {
        let response = app.client.get(&location).send().await.unwrap();
        assert_eq!(response.status(), 200);
        last = json_of(response).await;
        let counts = &last["counts"];
        let sum: i64 = ["pending", "queued", "running", "done", "failed"]
            .iter()
            .map(|k| counts[k].as_i64().unwrap())
            .sum();
        assert_eq!(sum, 3, "counts always add up to the total: {last}");
        if last["complete"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["complete"], true, "{last}");
    assert_eq!(last["counts"]["done"], last["total"]);
    assert_eq!(last["counts"]["failed"], 0);
    assert_eq!(last["failures"], json!([]));
    for image_id in &images {
        let jobs = app.catalog.jobs_for_image(image_id).await.unwrap();
        assert_eq!(jobs.len(), 2, "upload + batch");
        assert_eq!(jobs[1].batch_id.as_deref(), Some(batch_id.as_str()));
        assert_eq!(jobs[1].status(), easel_catalog::JobStatus::Done);
        let image = app.wait_until_done(image_id).await;
        assert_eq!(image["status"], "finished");
    }

    // Refusals.
    for (body, status, code) in [
        (json!({"colour": 1}), 400, "invalid-json"),
        (json!({"all": "yes"}), 400, "invalid-json"),
        (json!({"style": "original"}), 400, "invalid-parameter"),
        (json!({"style": "poster"}), 404, "unknown-style"),
    ] {
        let response = app
            .send(Method::POST, "/v1/rerender", Body::Json(body.clone()))
            .await;
        problem(response, status, code).await;
    }
    problem(
        app.get("/v1/batches/no-such-batch").await,
        404,
        "batch-not-found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_authorization_header_is_refused_even_on_public_files() {
    let app = TestApp::spawn().await;
    let image_id = id(&upload_wait(&app, TINY, "").await);
    let bare = "Bearer realm=\"easel\"";
    let invalid = "Bearer realm=\"easel\", error=\"invalid_token\"";
    for (value, challenge) in [
        // No bearer credentials at all: no error code (RFC 6750 §3).
        ("Bearer", bare),
        ("Bearer ", bare),
        ("Token abc", bare),
        // A bearer key we refuse: invalid_token (RFC 6750 §3.1).
        ("Bearer not-an-easel-key", invalid),
        ("bearer easel_x_y", invalid),
    ] {
        let response = app
            .anonymous
            .get(app.url(&format!("/v1/images/{image_id}/styles/thumb")))
            .headers(header("authorization", value))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{value:?}");
        assert_eq!(
            response.headers()["www-authenticate"],
            challenge,
            "{value:?}"
        );
    }
    // No header on an endpoint that needs a key: the bare challenge.
    let response = app
        .anonymous
        .get(app.url(&format!("/v1/images/{image_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], bare);
    // The scheme is case-insensitive.
    let response = app
        .anonymous
        .get(app.url(&format!("/v1/images/{image_id}")))
        .headers(header("authorization", &format!("bearer {}", app.key)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_checks_the_key_before_its_query_string() {
    let app = TestApp::spawn_without_workers().await;
    let image_id = id(&upload(&app, TINY, "").await);
    let (_, reader) = app.key_for("default", &["image:read"]).await;
    for query in ["?force=maybe", "?colour=red", "?force=true"] {
        let path = format!("/v1/images/{image_id}{query}");
        let response = app.anonymous.delete(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "anonymous DELETE {query}");
        assert!(response.headers().contains_key("www-authenticate"));
        let response = reader.delete(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 403, "read-only DELETE {query}");
    }
    assert!(app.catalog.image(&image_id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_id_takes_at_most_100_ids() {
    let app = TestApp::spawn_without_workers().await;
    let image_id = id(&upload(&app, TINY, "").await);
    let mut many: Vec<String> = (0..99).map(|i| format!("id-{i}")).collect();
    many.push(image_id.clone());
    let page = list(&app, &format!("?filter[id]={}", many.join(","))).await;
    assert_eq!(ids(&page), vec![image_id]);
    many.push("one-too-many".into());
    bad_param(
        &app,
        &format!("?filter[id]={}", many.join(",")),
        "at most 100",
    )
    .await;
}

/// Free-text list parameters have a length cap, refused by name without
/// echoing the value: a 50,000-character `search` used to fail in SQLite
/// ("LIKE or GLOB pattern too complex") as a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_list_parameters_are_400s_that_name_the_limit() {
    let app = TestApp::spawn_without_workers().await;
    let long_name = "n".repeat(1024);
    let image_id = id(&upload(&app, TINY, &format!("?name={long_name}")).await);
    // At the cap: a search as long as the longest name still matches it.
    let page = list(&app, &format!("?search={long_name}")).await;
    assert_eq!(ids(&page), vec![image_id.clone()]);
    let long_label = "t".repeat(128);
    assert_eq!(
        list(&app, &format!("?filter[tag]={long_label}")).await["meta"]["total"],
        0
    );
    assert_eq!(
        list(&app, &format!("?filter[facet]={long_label}")).await["meta"]["total"],
        0
    );

    let huge = "x".repeat(50_000);
    for (query, names) in [
        (
            format!("?search={huge}"),
            "search is at most 1024 characters",
        ),
        (format!("?search={long_name}n"), "search is at most 1024"),
        (format!("?search=%25{huge}"), "search is at most 1024"),
        (
            format!("?filter[facet]={huge}"),
            "filter[facet] is at most 128",
        ),
        (
            format!("?filter[tag]={long_label}t"),
            "filter[tag] is at most 128",
        ),
        (format!("?filter[id]={huge}"), "filter[id] is at most"),
        (
            format!("?filter[id]={image_id},{}", "i".repeat(129)),
            "filter[id] is at most 128",
        ),
        (format!("?page[after]={huge}"), "page[after] is at most 128"),
        (format!("?sort={huge}"), "sort is at most"),
        (format!("?fields[image]={huge}"), "fields[image] is at most"),
    ] {
        let response = app.get(&format!("/v1/images{query}")).await;
        let body = problem(response, 400, "invalid-parameter").await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(names), "{names}: {detail}");
        assert!(detail.len() < 200, "the value is not echoed back: {detail}");
    }
}

/// The docs page works offline and never sends the document to
/// validator.swagger.io (Swagger UI's default validator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_is_served_locally_without_the_online_validator() {
    let app = TestApp::spawn_without_workers().await;
    let page = app.anonymous.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("swagger-initializer.js"));
    let response = app
        .anonymous
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let script = response.text().await.unwrap();
    let compact: String = script.split_whitespace().collect();
    assert!(
        compact.contains(r#""validatorUrl":"none""#),
        "validator off: {script}"
    );
    assert!(compact.contains(r#""url":"/openapi.json""#), "{script}");
    assert!(!script.contains("validator.swagger.io"), "{script}");
    let document = app
        .anonymous
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(document.status(), 200);
}

/// IIIF follows the bucket's style-file setting: public by default; in a
/// bucket that is not fully public every IIIF request needs a read key of
/// that bucket, and another bucket's key sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iiif_follows_the_buckets_public_setting() {
    let app = TestApp::spawn().await;
    let image = app.upload_and_wait(fixture(SMALL_JPEG)).await;
    let id = image["id"].as_str().unwrap().to_string();
    let info = format!("/iiif/3/{id}/info.json");
    let region = format!("/iiif/3/{id}/full/64,/0/default.jpg");

    let public = app.anonymous.get(app.url(&info)).send().await.unwrap();
    assert_eq!(public.status(), 200);
    let body: Value = public.json().await.unwrap();
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (image["width"].as_u64(), image["height"].as_u64()),
        "the oriented original's size"
    );

    app.make_default_bucket_private().await;
    for path in [&info, &region] {
        // A stranger gets what a missing id gets (issue 11).
        let anonymous = app.anonymous.get(app.url(path)).send().await.unwrap();
        assert_eq!(anonymous.status(), 404, "{path}");
        assert!(!anonymous.headers().contains_key("www-authenticate"));
        let (_, other) = app.key_for("other", &["image:read"]).await;
        let other = other.get(app.url(path)).send().await.unwrap();
        assert_eq!(other.status(), 404, "{path}: another bucket's key");
        let (_, writer) = app.key_for("default", &["image:write"]).await;
        let writer = writer.get(app.url(path)).send().await.unwrap();
        assert_eq!(writer.status(), 403, "{path}: no read scope");
        let reader = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(reader.status(), 200, "{path}: a read key of the bucket");
    }
    let scaled = app.client.get(app.url(&region)).send().await.unwrap();
    let bytes = scaled.bytes().await.unwrap();
    assert_eq!(common::dimensions(&bytes).0, 64, "64 px wide as asked");
}

/// `GET /v1/key` tells any valid key its bucket and scopes (the console
/// shows them and hides what they do not allow), and nothing without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_endpoint_shows_the_callers_bucket_and_scopes() {
    let app = TestApp::spawn_without_workers().await;
    let (key, reader) = app.key_for("shows", &["image:read"]).await;
    let response = reader.get(app.url("/v1/key")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["bucket"], "shows");
    assert_eq!(body["scopes"], json!(["image:read"]));
    assert_eq!(body["id"], key.split('_').nth(1).unwrap());
    assert!(
        !body.to_string().contains(key.rsplit('_').next().unwrap()),
        "the secret stays out: {body}"
    );

    let (_, writer) = app.key_for("default", &["image:write"]).await;
    let body: Value = writer
        .get(app.url("/v1/key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["bucket"], "default");
    assert_eq!(body["scopes"], json!(["image:write"]));

    let none = app.anonymous.get(app.url("/v1/key")).send().await.unwrap();
    assert_eq!(none.headers()["www-authenticate"], "Bearer realm=\"easel\"");
    problem(none, 401, "unauthenticated").await;
    let unknown = common::client_with_key("easel_0123456789abcdef_00000000000000000000")
        .get(app.url("/v1/key"))
        .send()
        .await
        .unwrap();
    problem(unknown, 401, "unauthenticated").await;
}

/// The console is served by the binary itself: `/` links to it, every file
/// has its type, an ETag (304 when unchanged) and a policy that lets the
/// page reach this server only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_from_the_binary_with_types_etags_and_a_strict_policy() {
    let app = TestApp::spawn_without_workers().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let home = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(home.headers()["content-type"], "text/html; charset=utf-8");
    assert!(home.text().await.unwrap().contains("href=\"/console/\""));

    let bare = client.get(app.url("/console")).send().await.unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/console/");

    let index = client.get(app.url("/console/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let headers = index.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        headers["content-security-policy"],
        easel_api::content_security_policy("").as_str()
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-cache");
    let html = index.text().await.unwrap();
    assert!(
        html.contains(r#"<script type="module" src="app.js">"#),
        "{html}"
    );
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert_eq!(etag.len(), 66, "a quoted sha256: {etag}");

    let again = client
        .get(app.url("/console/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());

    for (path, kind) in [
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/views/crop.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        ("/console/favicon.svg", "image/svg+xml"),
    ] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], kind, "{path}");
        assert_ne!(response.headers()["etag"], etag.as_str(), "{path}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{path}");
    }
    let missing = client
        .get(app.url("/console/views/nope.js"))
        .send()
        .await
        .unwrap();
    problem(missing, 404, "not-found").await;
    let escape = client
        .get(app.url("/console/..%2fCargo.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(escape.status(), 404);
}
