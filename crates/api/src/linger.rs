//! Lingering close: a request refused before its body was read still gets
//! its answer.
//!
//! A 401, 403 or 413 is decided from the headers alone. Closing the
//! connection with the body still arriving makes the kernel answer the
//! client with a reset, and a client that writes its whole body before it
//! reads (Python's urllib, most blocking clients) then sees a broken pipe
//! instead of the status. So, as nginx's lingering close does, a body the
//! handler dropped unfinished is read and thrown away in the background,
//! up to [`ApiConfig::linger_max_bytes`](crate::ApiConfig) and for at most
//! [`ApiConfig::linger_timeout`](crate::ApiConfig), while the answer goes
//! out; past either bound the connection is closed anyway.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::AppState;

/// Wraps every request's body so that what its handler leaves unread is
/// drained after the answer.
pub(crate) async fn linger(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = LingeringBody {
        inner: Some(body),
        finished: false,
        max_bytes: limits.max_bytes,
        timeout: limits.timeout,
    };
    next.run(Request::from_parts(parts, Body::new(body))).await
}

/// How much of a refused body is read, and for how long (this
/// middleware's state: a copy, not the whole [`AppState`] per request).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_bytes: u64,
    pub timeout: Duration,
}

impl Limits {
    pub(crate) fn of(state: &AppState) -> Self {
        Limits {
            max_bytes: state.config.linger_max_bytes,
            timeout: state.config.linger_timeout,
        }
    }
}

struct LingeringBody {
    inner: Option<Body>,
    /// The stream ended (or failed): nothing is left to drain.
    finished: bool,
    max_bytes: u64,
    timeout: Duration,
}

impl HttpBody for LingeringBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for LingeringBody {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if self.finished || body.is_end_stream() {
            return;
        }
        // Dropped outside a runtime only at shutdown, when closing is right.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(discard(body, self.max_bytes, self.timeout));
        }
    }
}

/// Reads and throws away up to `max_bytes` of `body` within `timeout`.
async fn discard(mut body: Body, max_bytes: u64, timeout: Duration) {
    let mut seen = 0u64;
    let drained = tokio::time::timeout(timeout, async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > max_bytes {
                return false;
            }
        }
        true
    })
    .await;
    if drained != Ok(true) {
        tracing::info!(
            discarded = seen,
            "closing a connection whose refused body is still coming"
        );
    }
}
