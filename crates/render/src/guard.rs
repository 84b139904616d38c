//! The engine's boundary: whatever happens inside on some input, the caller
//! gets a typed error, never an unwinding panic.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::render::sha256_hex;
use crate::RenderError;

/// Runs one engine entry point. A panic (a bug of ours or of a decoder we
/// use) becomes [`RenderError::Internal`] carrying the input's sha256, so
/// the CLI keeps its one-line reason and the service can log which original
/// to reproduce it with.
pub(crate) fn guarded<T>(
    original: &[u8],
    entry: impl FnOnce() -> Result<T, RenderError>,
) -> Result<T, RenderError> {
    // Nothing the closure touched is used again after a panic: its
    // buffers are dropped while unwinding and the caller gets an error.
    catch_unwind(AssertUnwindSafe(entry)).unwrap_or_else(|payload| {
        Err(RenderError::Internal {
            sha256: sha256_hex(original),
            message: panic_message(payload.as_ref()),
        })
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error_naming_the_input() {
        let err = guarded(b"abc", || -> Result<(), RenderError> {
            panic!("index out of bounds")
        })
        .unwrap_err();
        assert_eq!(err.code(), "internal");
        let text = err.to_string();
        // sha256("abc")
        assert!(
            text.contains("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            "{text}"
        );
        assert!(text.contains("index out of bounds"), "{text}");
    }

    #[test]
    fn results_pass_through_untouched() {
        assert_eq!(guarded(b"", || Ok(7)).unwrap(), 7);
        let err = guarded(b"", || -> Result<(), _> { Err(RenderError::Empty) }).unwrap_err();
        assert_eq!(err.code(), "empty-file");
    }
}
