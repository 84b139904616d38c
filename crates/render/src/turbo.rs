//! A TurboJPEG handle of our own, for the calls the `turbojpeg` crate does
//! not offer: decoding a window at a DCT scale (`region`) and encoding
//! into a buffer we size (`encode`).

use std::ffi::{c_int, CStr};

/// A TurboJPEG compressor or decompressor, destroyed on drop.
pub(crate) struct Handle(pub(crate) turbojpeg_sys::tjhandle);

impl Handle {
    pub(crate) fn compressor() -> Result<Self, String> {
        Self::init(turbojpeg_sys::TJINIT_TJINIT_COMPRESS, "compressor")
    }

    pub(crate) fn decompressor() -> Result<Self, String> {
        Self::init(turbojpeg_sys::TJINIT_TJINIT_DECOMPRESS, "decompressor")
    }

    fn init(kind: turbojpeg_sys::TJINIT, what: &str) -> Result<Self, String> {
        // SAFETY: tj3Init has no preconditions; a null handle is checked.
        let handle = unsafe { turbojpeg_sys::tj3Init(kind as c_int) };
        if handle.is_null() {
            return Err(format!("TurboJPEG error: cannot create a {what}"));
        }
        Ok(Handle(handle))
    }

    /// The message of the last failure, worded as the `turbojpeg` crate
    /// words it, so our calls fail as the crate's do.
    pub(crate) fn error(&self) -> String {
        // SAFETY: the handle is live; TurboJPEG returns a NUL-terminated
        // string it owns, copied out before the next call.
        let message = unsafe { CStr::from_ptr(turbojpeg_sys::tj3GetErrorStr(self.0)) };
        format!("TurboJPEG error: {}", message.to_string_lossy())
    }

    pub(crate) fn check(&self, status: c_int) -> Result<(), String> {
        if status == 0 {
            Ok(())
        } else {
            Err(self.error())
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed only here.
        unsafe { turbojpeg_sys::tj3Destroy(self.0) };
    }
}
