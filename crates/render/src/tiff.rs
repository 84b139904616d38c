//! TIFF through libtiff, the reference decoder (Pillow, libvips, GIMP and
//! Photoshop's peers all read TIFF with it): palette, 1/2/4/16-bit grey,
//! planar, tiled, YCbCr and JPEG/old-JPEG, BigTIFF, FillOrder 2, LZW,
//! Deflate, PackBits, fax, LZMA, ZSTD, WebP, all behind one API.
//!
//! Two ways in, chosen from the header:
//! - **samples** ([`decode_samples`]): grey, RGB and CMYK at 8, 16, 32 or
//!   64 bits (integer or float), contiguous or planar, with or without
//!   alpha. We read the decoded strips or tiles and do the maths ourselves,
//!   so alpha (associated or not), float scaling and CMYK colour
//!   management are ours and explicit.
//! - **libtiff's RGBA reader** ([`decode_rgba`]) for every other layout it
//!   knows (palette, fewer than 8 bits, YCbCr and subsampling, CIELab,
//!   LogLuv), one strip or tile at a time so no second full-size buffer
//!   exists. Those layouts carry no alpha we read.
//!
//! libtiff reports problems through a per-handle callback; they become the
//! error's reason instead of going to stderr.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;

use crate::pixels::{Bitmap, Channels};
use crate::RenderError;

mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    #[repr(C)]
    pub struct Tiff {
        _private: [u8; 0],
    }
    #[repr(C)]
    pub struct OpenOptions {
        _private: [u8; 0],
    }

    pub type ReadWriteProc = unsafe extern "C" fn(*mut c_void, *mut c_void, isize) -> isize;
    pub type SeekProc = unsafe extern "C" fn(*mut c_void, u64, c_int) -> u64;
    pub type CloseProc = unsafe extern "C" fn(*mut c_void) -> c_int;
    pub type SizeProc = unsafe extern "C" fn(*mut c_void) -> u64;
    pub type MapProc = unsafe extern "C" fn(*mut c_void, *mut *mut c_void, *mut u64) -> c_int;
    pub type UnmapProc = unsafe extern "C" fn(*mut c_void, *mut c_void, u64);
    /// The last argument is a `va_list`, which every supported ABI passes
    /// to a function as a pointer; it is only handed on to `vsnprintf`.
    pub type ErrorHandlerExtR = unsafe extern "C" fn(
        *mut Tiff,
        *mut c_void,
        *const c_char,
        *const c_char,
        *mut c_void,
    ) -> c_int;

    pub const TAG_IMAGEWIDTH: u32 = 256;
    pub const TAG_IMAGELENGTH: u32 = 257;
    pub const TAG_BITSPERSAMPLE: u32 = 258;
    pub const TAG_COMPRESSION: u32 = 259;
    pub const TAG_PHOTOMETRIC: u32 = 262;
    pub const TAG_ORIENTATION: u32 = 274;
    pub const TAG_SAMPLESPERPIXEL: u32 = 277;
    pub const TAG_ROWSPERSTRIP: u32 = 278;
    pub const TAG_PLANARCONFIG: u32 = 284;
    pub const TAG_TILEWIDTH: u32 = 322;
    pub const TAG_TILELENGTH: u32 = 323;
    pub const TAG_INKSET: u32 = 332;
    pub const TAG_EXTRASAMPLES: u32 = 338;
    pub const TAG_SAMPLEFORMAT: u32 = 339;
    pub const TAG_ICCPROFILE: u32 = 34675;

    // Linked by build.rs (pkg-config's libtiff-4).
    extern "C" {
        pub fn TIFFOpenOptionsAlloc() -> *mut OpenOptions;
        pub fn TIFFOpenOptionsFree(opts: *mut OpenOptions);
        pub fn TIFFOpenOptionsSetMaxSingleMemAlloc(opts: *mut OpenOptions, max: isize);
        pub fn TIFFOpenOptionsSetErrorHandlerExtR(
            opts: *mut OpenOptions,
            handler: Option<ErrorHandlerExtR>,
            user_data: *mut c_void,
        );
        pub fn TIFFOpenOptionsSetWarningHandlerExtR(
            opts: *mut OpenOptions,
            handler: Option<ErrorHandlerExtR>,
            user_data: *mut c_void,
        );
        #[allow(clippy::too_many_arguments)]
        pub fn TIFFClientOpenExt(
            name: *const c_char,
            mode: *const c_char,
            handle: *mut c_void,
            read: ReadWriteProc,
            write: ReadWriteProc,
            seek: SeekProc,
            close: CloseProc,
            size: SizeProc,
            map: MapProc,
            unmap: UnmapProc,
            opts: *mut OpenOptions,
        ) -> *mut Tiff;
        pub fn TIFFClose(tif: *mut Tiff);
        pub fn TIFFGetField(tif: *mut Tiff, tag: u32, ...) -> c_int;
        pub fn TIFFGetFieldDefaulted(tif: *mut Tiff, tag: u32, ...) -> c_int;
        pub fn TIFFSetField(tif: *mut Tiff, tag: u32, ...) -> c_int;
        pub fn TIFFIsTiled(tif: *mut Tiff) -> c_int;
        pub fn TIFFIsCODECConfigured(scheme: u16) -> c_int;
        pub fn TIFFRGBAImageOK(tif: *mut Tiff, emsg: *mut c_char) -> c_int;
        pub fn TIFFReadRGBAStripExt(
            tif: *mut Tiff,
            row: u32,
            raster: *mut u32,
            stop_on_error: c_int,
        ) -> c_int;
        pub fn TIFFReadRGBATileExt(
            tif: *mut Tiff,
            col: u32,
            row: u32,
            raster: *mut u32,
            stop_on_error: c_int,
        ) -> c_int;
        pub fn TIFFReadEncodedStrip(
            tif: *mut Tiff,
            strip: u32,
            buf: *mut c_void,
            size: isize,
        ) -> isize;
        pub fn TIFFReadEncodedTile(
            tif: *mut Tiff,
            tile: u32,
            buf: *mut c_void,
            size: isize,
        ) -> isize;
        pub fn TIFFStripSize(tif: *mut Tiff) -> isize;
        pub fn TIFFTileSize(tif: *mut Tiff) -> isize;
        pub fn TIFFComputeStrip(tif: *mut Tiff, row: u32, sample: u16) -> u32;
        pub fn TIFFComputeTile(tif: *mut Tiff, x: u32, y: u32, z: u32, sample: u16) -> u32;
    }

    extern "C" {
        pub fn vsnprintf(buf: *mut c_char, n: usize, fmt: *const c_char, ap: *mut c_void) -> c_int;
    }
}

/// Largest single allocation libtiff may make for one file (a strip or
/// tile buffer): a 100-megapixel RGBA float image in one strip stays under
/// it, a forged strip size does not.
const MAX_SINGLE_ALLOC: isize = 1 << 30;
/// Most samples per pixel a picture has: colour, alpha and a few extra
/// channels (Photoshop's saved selections). More is a damaged header.
const MAX_SAMPLES_PER_PIXEL: u16 = 32;

/// Tiles may overhang a small image, but a tile far larger than the image
/// is a forged header asking for a huge buffer.
fn tile_is_plausible(tile_w: usize, tile_h: usize, header: &Header) -> bool {
    let image = header.width as u64 * header.height as u64;
    tile_w > 0 && tile_h > 0 && (tile_w as u64 * tile_h as u64) <= (image * 4).max(1 << 16)
}

/// What the first image file directory says, read without decoding.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub width: u32,
    pub height: u32,
    pub bits_per_sample: u16,
    pub samples_per_pixel: u16,
    pub orientation: u16,
    sample_format: u16,
    photometric: u16,
    compression: u16,
    planar: u16,
    ink_set: u16,
    /// `ExtraSamples` values, in order (0 unspecified, 1 associated alpha,
    /// 2 unassociated alpha).
    extra_samples: Vec<u16>,
    tiled: bool,
}

impl Header {
    fn colour_samples(&self) -> usize {
        (self.samples_per_pixel as usize).saturating_sub(self.extra_samples.len())
    }

    fn alpha(&self) -> Alpha {
        match self.extra_samples.first() {
            Some(1) => Alpha::Associated,
            Some(2) => Alpha::Unassociated,
            _ => Alpha::None,
        }
    }

    /// Grey, RGB or CMYK samples of a depth we convert ourselves.
    fn reads_samples(&self) -> bool {
        let model = match (self.photometric, self.colour_samples()) {
            (PHOTOMETRIC_MINISWHITE | PHOTOMETRIC_MINISBLACK, 1) => true,
            (PHOTOMETRIC_RGB, 3) => true,
            (PHOTOMETRIC_SEPARATED, 4) => self.ink_set == INKSET_CMYK,
            _ => false,
        };
        let depth = match self.sample_format {
            SAMPLEFORMAT_UINT | SAMPLEFORMAT_INT => matches!(self.bits_per_sample, 8 | 16 | 32),
            SAMPLEFORMAT_IEEEFP => matches!(self.bits_per_sample, 16 | 32 | 64),
            _ => false,
        };
        model && depth
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alpha {
    None,
    Associated,
    Unassociated,
}

const PHOTOMETRIC_MINISWHITE: u16 = 0;
const PHOTOMETRIC_MINISBLACK: u16 = 1;
const PHOTOMETRIC_RGB: u16 = 2;
const PHOTOMETRIC_SEPARATED: u16 = 5;
const INKSET_CMYK: u16 = 1;
const SAMPLEFORMAT_UINT: u16 = 1;
const SAMPLEFORMAT_INT: u16 = 2;
const SAMPLEFORMAT_IEEEFP: u16 = 3;
const PLANARCONFIG_SEPARATE: u16 = 2;

/// The bytes libtiff reads through our callbacks, and what it complained about.
struct Source<'a> {
    data: &'a [u8],
    position: u64,
    errors: RefCell<Vec<String>>,
}

/// An open libtiff handle over a byte slice. The boxed source lives at a
/// fixed address for as long as the handle: libtiff keeps a pointer to it.
struct Handle<'a> {
    tif: *mut ffi::Tiff,
    source: Box<Source<'a>>,
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        // SAFETY: `tif` came from TIFFClientOpenExt and is closed only here.
        unsafe { ffi::TIFFClose(self.tif) };
    }
}

unsafe extern "C" fn read_proc(handle: *mut c_void, buf: *mut c_void, size: isize) -> isize {
    // SAFETY: `handle` is the `Source` boxed in `Handle`, alive while libtiff runs.
    let source = unsafe { &mut *(handle as *mut Source) };
    let Ok(start) = usize::try_from(source.position) else {
        return 0;
    };
    if start >= source.data.len() || size <= 0 {
        return 0;
    }
    let n = (source.data.len() - start).min(size as usize);
    // SAFETY: libtiff passes a buffer of at least `size` bytes.
    unsafe { ptr::copy_nonoverlapping(source.data.as_ptr().add(start), buf as *mut u8, n) };
    source.position += n as u64;
    n as isize
}

unsafe extern "C" fn write_proc(_: *mut c_void, _: *mut c_void, _: isize) -> isize {
    -1
}

unsafe extern "C" fn seek_proc(handle: *mut c_void, offset: u64, whence: c_int) -> u64 {
    // SAFETY: as in `read_proc`.
    let source = unsafe { &mut *(handle as *mut Source) };
    let base = match whence {
        0 => 0,
        1 => source.position,
        2 => source.data.len() as u64,
        _ => return u64::MAX,
    };
    // Offsets are unsigned; a relative seek backwards arrives wrapped.
    source.position = base.wrapping_add(offset);
    source.position
}

unsafe extern "C" fn close_proc(_: *mut c_void) -> c_int {
    0
}

unsafe extern "C" fn size_proc(handle: *mut c_void) -> u64 {
    // SAFETY: as in `read_proc`.
    let source = unsafe { &*(handle as *const Source) };
    source.data.len() as u64
}

unsafe extern "C" fn map_proc(_: *mut c_void, _: *mut *mut c_void, _: *mut u64) -> c_int {
    0
}

unsafe extern "C" fn unmap_proc(_: *mut c_void, _: *mut c_void, _: u64) {}

unsafe extern "C" fn error_handler(
    _: *mut ffi::Tiff,
    user_data: *mut c_void,
    module: *const c_char,
    fmt: *const c_char,
    args: *mut c_void,
) -> c_int {
    let mut buf = [0 as c_char; 512];
    // SAFETY: `fmt` and `args` come from libtiff as a printf pair; the
    // buffer's size is passed, and vsnprintf always terminates it.
    let message = unsafe {
        ffi::vsnprintf(buf.as_mut_ptr(), buf.len(), fmt, args);
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    };
    let module = if module.is_null() {
        String::new()
    } else {
        // SAFETY: libtiff passes a NUL-terminated module name.
        unsafe { CStr::from_ptr(module) }
            .to_string_lossy()
            .into_owned()
    };
    // SAFETY: `user_data` is the `Source` boxed in `Handle`.
    let source = unsafe { &*(user_data as *const Source) };
    if let Ok(mut errors) = source.errors.try_borrow_mut() {
        // The first complaints explain a failure; later ones repeat it.
        if errors.len() < 8 {
            errors.push(if module.is_empty() || module == "TIFF" {
                message
            } else {
                format!("{module}: {message}")
            });
        }
    }
    // Handled: libtiff's global handlers (stderr) stay quiet.
    1
}

unsafe extern "C" fn warning_handler(
    _: *mut ffi::Tiff,
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *mut c_void,
) -> c_int {
    // Unknown tags and the like: nothing a user can act on.
    1
}

impl<'a> Handle<'a> {
    fn open(data: &'a [u8]) -> Result<Self, RenderError> {
        let mut source = Box::new(Source {
            data,
            position: 0,
            errors: RefCell::new(Vec::new()),
        });
        let source_ptr = &mut *source as *mut Source as *mut c_void;
        // SAFETY: plain constructor calls; every pointer handed over
        // outlives the handle (the options are freed once it is open).
        let tif = unsafe {
            let opts = ffi::TIFFOpenOptionsAlloc();
            if opts.is_null() {
                return Err(RenderError::corrupt("TIFF", "libtiff could not start"));
            }
            ffi::TIFFOpenOptionsSetMaxSingleMemAlloc(opts, MAX_SINGLE_ALLOC);
            ffi::TIFFOpenOptionsSetErrorHandlerExtR(opts, Some(error_handler), source_ptr);
            ffi::TIFFOpenOptionsSetWarningHandlerExtR(opts, Some(warning_handler), source_ptr);
            // "m": read through our callbacks, never a mapped view.
            let tif = ffi::TIFFClientOpenExt(
                c"original".as_ptr(),
                c"rm".as_ptr(),
                source_ptr,
                read_proc,
                write_proc,
                seek_proc,
                close_proc,
                size_proc,
                map_proc,
                unmap_proc,
                opts,
            );
            ffi::TIFFOpenOptionsFree(opts);
            tif
        };
        if tif.is_null() {
            return Err(corrupt(&source, "libtiff could not read the header"));
        }
        Ok(Handle { tif, source })
    }

    fn u16_field(&self, tag: u32, defaulted: bool) -> Option<u16> {
        let mut value: u16 = 0;
        // SAFETY: these tags are all read into a uint16_t by libtiff.
        let found = unsafe {
            if defaulted {
                ffi::TIFFGetFieldDefaulted(self.tif, tag, &mut value as *mut u16)
            } else {
                ffi::TIFFGetField(self.tif, tag, &mut value as *mut u16)
            }
        };
        (found == 1).then_some(value)
    }

    fn u32_field(&self, tag: u32, defaulted: bool) -> Option<u32> {
        let mut value: u32 = 0;
        // SAFETY: these tags are all read into a uint32_t by libtiff.
        let found = unsafe {
            if defaulted {
                ffi::TIFFGetFieldDefaulted(self.tif, tag, &mut value as *mut u32)
            } else {
                ffi::TIFFGetField(self.tif, tag, &mut value as *mut u32)
            }
        };
        (found == 1).then_some(value)
    }

    fn header(&self) -> Result<Header, RenderError> {
        let (Some(width), Some(height)) = (
            self.u32_field(ffi::TAG_IMAGEWIDTH, false),
            self.u32_field(ffi::TAG_IMAGELENGTH, false),
        ) else {
            return Err(corrupt(&self.source, "the header has no image size"));
        };
        let extra_samples = {
            let mut count: u16 = 0;
            let mut values: *const u16 = ptr::null();
            // SAFETY: ExtraSamples is read as (uint16_t count, uint16_t *list);
            // the list is owned by libtiff and copied before the next call.
            let found = unsafe {
                ffi::TIFFGetField(
                    self.tif,
                    ffi::TAG_EXTRASAMPLES,
                    &mut count as *mut u16,
                    &mut values as *mut *const u16,
                )
            };
            if found == 1 && !values.is_null() {
                // SAFETY: libtiff says the list holds `count` values.
                Some(unsafe { std::slice::from_raw_parts(values, count as usize) }.to_vec())
            } else {
                None
            }
        };
        let samples_per_pixel = self.u16_field(ffi::TAG_SAMPLESPERPIXEL, true).unwrap_or(1);
        let declared = extra_samples.as_ref().map_or(0, Vec::len);
        // Without PhotometricInterpretation, read one sample as grey and
        // three as RGB, as libtiff's RGBA reader and Pillow do.
        let photometric = self.u16_field(ffi::TAG_PHOTOMETRIC, false).unwrap_or(
            match (samples_per_pixel as usize).saturating_sub(declared) {
                3 | 4 => PHOTOMETRIC_RGB,
                _ => PHOTOMETRIC_MINISBLACK,
            },
        );
        // RGB with a fourth sample (grey with a second) and no ExtraSamples
        // tag: writers that forget the tag mean alpha, as Pillow reads it.
        let extra_samples =
            extra_samples.unwrap_or_else(|| match (photometric, samples_per_pixel) {
                (PHOTOMETRIC_RGB, 4) | (PHOTOMETRIC_MINISBLACK | PHOTOMETRIC_MINISWHITE, 2) => {
                    vec![2]
                }
                _ => Vec::new(),
            });
        Ok(Header {
            width,
            height,
            bits_per_sample: self.u16_field(ffi::TAG_BITSPERSAMPLE, true).unwrap_or(1),
            samples_per_pixel,
            orientation: self.u16_field(ffi::TAG_ORIENTATION, true).unwrap_or(1),
            sample_format: self
                .u16_field(ffi::TAG_SAMPLEFORMAT, true)
                .unwrap_or(SAMPLEFORMAT_UINT),
            photometric,
            compression: self.u16_field(ffi::TAG_COMPRESSION, true).unwrap_or(1),
            planar: self.u16_field(ffi::TAG_PLANARCONFIG, true).unwrap_or(1),
            ink_set: self.u16_field(ffi::TAG_INKSET, true).unwrap_or(INKSET_CMYK),
            extra_samples,
            // SAFETY: a query on an open handle.
            tiled: unsafe { ffi::TIFFIsTiled(self.tif) } != 0,
        })
    }

    fn icc_profile(&self) -> Option<Vec<u8>> {
        let mut count: u32 = 0;
        let mut data: *const u8 = ptr::null();
        // SAFETY: ICCProfile is read as (uint32_t count, void **data), owned
        // by libtiff and copied at once.
        let found = unsafe {
            ffi::TIFFGetField(
                self.tif,
                ffi::TAG_ICCPROFILE,
                &mut count as *mut u32,
                &mut data as *mut *const u8,
            )
        };
        (found == 1 && !data.is_null() && count > 0)
            // SAFETY: libtiff says the profile is `count` bytes.
            .then(|| unsafe { std::slice::from_raw_parts(data, count as usize) }.to_vec())
    }

    fn first_error(&self) -> Option<String> {
        self.source.errors.borrow().first().cloned()
    }
}

fn corrupt(source: &Source, fallback: &str) -> RenderError {
    let reason = source
        .errors
        .borrow()
        .first()
        .cloned()
        .unwrap_or_else(|| fallback.to_string());
    RenderError::corrupt("TIFF", reason)
}

fn unsupported(feature: impl Into<String>) -> RenderError {
    RenderError::UnsupportedFeature {
        format: "TIFF",
        feature: feature.into(),
    }
}

/// Reads the first directory and refuses, by name, what we cannot decode:
/// the probe calls this so an upload is refused before it is stored.
pub(crate) fn read_header(bytes: &[u8]) -> Result<Header, RenderError> {
    let handle = Handle::open(bytes)?;
    let header = handle.header()?;
    check_supported(&handle, &header)?;
    Ok(header)
}

/// The TIFF Orientation tag (1 when absent or unreadable).
pub(crate) fn orientation(bytes: &[u8]) -> u16 {
    Handle::open(bytes)
        .and_then(|h| h.header())
        .map(|h| h.orientation)
        .unwrap_or(1)
}

fn check_supported(handle: &Handle, header: &Header) -> Result<(), RenderError> {
    // SAFETY: a query with no pointers.
    if header.samples_per_pixel > MAX_SAMPLES_PER_PIXEL {
        return Err(RenderError::corrupt(
            "TIFF",
            format!(
                "the header claims {} samples per pixel",
                header.samples_per_pixel
            ),
        ));
    }
    if unsafe { ffi::TIFFIsCODECConfigured(header.compression) } == 0 {
        return Err(unsupported(format!(
            "{} compression",
            compression_name(header.compression)
        )));
    }
    match header.sample_format {
        SAMPLEFORMAT_UINT | SAMPLEFORMAT_INT | SAMPLEFORMAT_IEEEFP => {}
        _ => return Err(unsupported("complex or untyped samples")),
    }
    if header.reads_samples() {
        return Ok(());
    }
    if header.sample_format == SAMPLEFORMAT_INT {
        return Err(unsupported(format!(
            "{}-bit signed samples in {} colour",
            header.bits_per_sample,
            photometric_name(header.photometric)
        )));
    }
    if header.sample_format == SAMPLEFORMAT_IEEEFP || header.bits_per_sample > 16 {
        return Err(unsupported(format!(
            "{}-bit {} samples in {} colour",
            header.bits_per_sample,
            if header.sample_format == SAMPLEFORMAT_IEEEFP {
                "floating-point"
            } else {
                "integer"
            },
            photometric_name(header.photometric)
        )));
    }
    if !matches!(header.bits_per_sample, 1 | 2 | 4 | 8 | 16) {
        return Err(unsupported(format!(
            "{}-bit samples in {} colour",
            header.bits_per_sample,
            photometric_name(header.photometric)
        )));
    }
    if matches!(header.photometric, 8..=10) {
        // libtiff's CIELab conversion ignores the file's white point and
        // rendering intent; a wrong colour is worse than a clear refusal.
        return Err(unsupported("CIELab colour"));
    }
    let mut emsg = [0 as c_char; 1024];
    // SAFETY: libtiff writes at most 1024 bytes, NUL-terminated.
    let ok = unsafe { ffi::TIFFRGBAImageOK(handle.tif, emsg.as_mut_ptr()) };
    if ok == 0 {
        // SAFETY: NUL-terminated by libtiff (or still all zeros).
        let why = unsafe { CStr::from_ptr(emsg.as_ptr()) }.to_string_lossy();
        let why = why
            .trim_start_matches("Sorry, ")
            .trim_start_matches("can not handle ");
        return Err(unsupported(format!(
            "{} colour ({why})",
            photometric_name(header.photometric)
        )));
    }
    Ok(())
}

fn compression_name(code: u16) -> String {
    let name = match code {
        2 => "CCITT RLE",
        3 => "CCITT Group 3 fax",
        4 => "CCITT Group 4 fax",
        9 | 10 => "JBIG",
        32766 => "NeXT",
        32809 => "ThunderScan",
        32895..=32898 => "IT8",
        32908 | 32909 => "Pixar",
        32947 => "Kodak DCS",
        34661 => "JBIG",
        34676 | 34677 => "SGI LogLuv",
        34712 | 33003 | 33005 => "JPEG 2000",
        34887 => "LERC",
        34925 => "LZMA",
        50000 => "ZSTD",
        50001 => "WebP",
        50002 | 52546 => "JPEG XL",
        _ => return format!("unknown ({code})"),
    };
    name.to_string()
}

fn photometric_name(code: u16) -> String {
    let name = match code {
        0 | 1 => "greyscale",
        2 => "RGB",
        3 => "palette",
        4 => "transparency-mask",
        5 => "separated (CMYK or other inks)",
        6 => "YCbCr",
        8..=10 => "CIELab",
        32803 => "colour-filter-array (raw camera)",
        32844 | 32845 => "LogLuv",
        _ => return format!("photometric {code}"),
    };
    name.to_string()
}

/// The decoded first image, as stored (not oriented).
pub(crate) struct DecodedTiff {
    pub bitmap: Bitmap,
    /// The profile the pixels are in (`None` for sRGB, including CMYK that
    /// was converted to sRGB here).
    pub icc: Option<Vec<u8>>,
    pub had_icc_profile: bool,
    pub warnings: Vec<String>,
}

pub(crate) fn decode(bytes: &[u8]) -> Result<DecodedTiff, RenderError> {
    let handle = Handle::open(bytes)?;
    let header = handle.header()?;
    check_supported(&handle, &header)?;
    let icc = handle.icc_profile();
    let had_icc_profile = icc.is_some();
    let mut warnings = Vec::new();
    if header.reads_samples() {
        let (bitmap, icc) = decode_samples(&handle, &header, icc, &mut warnings)?;
        return Ok(DecodedTiff {
            bitmap,
            icc,
            had_icc_profile,
            warnings,
        });
    }
    let bitmap = decode_rgba(&handle, &header)?;
    Ok(DecodedTiff {
        bitmap,
        icc: rgb_profile_only(icc, &mut warnings),
        had_icc_profile,
        warnings,
    })
}

/// The pixels leave as RGB: a profile for another colour space (a grey
/// "Dot Gain" profile, say) cannot describe them, and kept it would make
/// the stripped original's PNG invalid.
fn rgb_profile_only(icc: Option<Vec<u8>>, warnings: &mut Vec<String>) -> Option<Vec<u8>> {
    let icc = icc?;
    // The ICC header's data colour space field.
    match icc.get(16..20) {
        Some(b"RGB ") => Some(icc),
        space => {
            warnings.push(format!(
                "ignored an ICC profile for {} data on a TIFF read as RGB; assumed sRGB",
                space
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .trim()
            ));
            None
        }
    }
}

/// libtiff's RGBA reader, strip by strip or tile by tile. Its rasters are
/// bottom-up packed ABGR words.
fn decode_rgba(handle: &Handle, header: &Header) -> Result<Bitmap, RenderError> {
    let (width, height) = (header.width as usize, header.height as usize);
    // The RGBA reader would apply the Orientation tag's flips (not its
    // rotations); we orient every format alike, later, from the same tag.
    // SAFETY: Orientation is set from an int-promoted uint16_t; on a handle
    // opened for reading this changes only libtiff's in-memory directory.
    unsafe { ffi::TIFFSetField(handle.tif, ffi::TAG_ORIENTATION, 1 as c_int) };
    let mut out = vec![0u8; width * height * 3];
    let failed = |handle: &Handle| corrupt(&handle.source, "libtiff could not decode the image");
    let mut put =
        |raster: &[u32], raster_width: usize, x0: usize, y0: usize, w: usize, h: usize| {
            // Row `i` of the block is raster row `rows - 1 - i` (bottom-up).
            let rows = raster.len() / raster_width;
            for i in 0..h {
                let src = &raster[(rows - 1 - i) * raster_width..][..w];
                let dst = &mut out[((y0 + i) * width + x0) * 3..][..w * 3];
                for (px, word) in dst.chunks_exact_mut(3).zip(src) {
                    px[0] = (word & 0xff) as u8;
                    px[1] = ((word >> 8) & 0xff) as u8;
                    px[2] = ((word >> 16) & 0xff) as u8;
                }
            }
        };
    if header.tiled {
        let tile_w = handle.u32_field(ffi::TAG_TILEWIDTH, true).unwrap_or(0) as usize;
        let tile_h = handle.u32_field(ffi::TAG_TILELENGTH, true).unwrap_or(0) as usize;
        if !tile_is_plausible(tile_w, tile_h, header) {
            return Err(RenderError::corrupt(
                "TIFF",
                format!("impossible tile size {tile_w}x{tile_h}"),
            ));
        }
        let mut raster = vec![0u32; tile_w * tile_h];
        for y in (0..height).step_by(tile_h) {
            for x in (0..width).step_by(tile_w) {
                // SAFETY: the raster holds a whole tile, as libtiff requires.
                let ok = unsafe {
                    ffi::TIFFReadRGBATileExt(handle.tif, x as u32, y as u32, raster.as_mut_ptr(), 1)
                };
                if ok == 0 {
                    return Err(failed(handle));
                }
                let (w, h) = (tile_w.min(width - x), tile_h.min(height - y));
                put(&raster, tile_w, x, y, w, h);
            }
        }
    } else {
        let rows_per_strip = handle
            .u32_field(ffi::TAG_ROWSPERSTRIP, true)
            .unwrap_or(u32::MAX)
            .clamp(1, header.height) as usize;
        let mut raster = vec![0u32; width * rows_per_strip];
        for y in (0..height).step_by(rows_per_strip) {
            let h = rows_per_strip.min(height - y);
            // SAFETY: the raster holds `rows_per_strip` rows of the image's width.
            let ok =
                unsafe { ffi::TIFFReadRGBAStripExt(handle.tif, y as u32, raster.as_mut_ptr(), 1) };
            if ok == 0 {
                return Err(failed(handle));
            }
            put(&raster[..width * h], width, 0, y, width, h);
        }
    }
    if let Some(error) = handle.first_error() {
        return Err(RenderError::corrupt("TIFF", error));
    }
    Ok(Bitmap::new(header.width, header.height, Channels::Rgb, out))
}

/// How one stored sample becomes a value in 0..=1.
#[derive(Clone, Copy)]
enum SampleKind {
    U8,
    U16,
    U32,
    I8,
    I16,
    I32,
    F16,
    F32,
    F64,
}

impl SampleKind {
    fn of(header: &Header) -> SampleKind {
        match (header.sample_format, header.bits_per_sample) {
            (SAMPLEFORMAT_IEEEFP, 16) => SampleKind::F16,
            (SAMPLEFORMAT_IEEEFP, 32) => SampleKind::F32,
            (SAMPLEFORMAT_IEEEFP, _) => SampleKind::F64,
            (SAMPLEFORMAT_INT, 8) => SampleKind::I8,
            (SAMPLEFORMAT_INT, 16) => SampleKind::I16,
            (SAMPLEFORMAT_INT, _) => SampleKind::I32,
            (_, 8) => SampleKind::U8,
            (_, 16) => SampleKind::U16,
            _ => SampleKind::U32,
        }
    }

    fn bytes(self) -> usize {
        match self {
            SampleKind::U8 | SampleKind::I8 => 1,
            SampleKind::U16 | SampleKind::I16 | SampleKind::F16 => 2,
            SampleKind::U32 | SampleKind::I32 | SampleKind::F32 => 4,
            SampleKind::F64 => 8,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, SampleKind::F16 | SampleKind::F32 | SampleKind::F64)
    }

    /// libtiff hands samples over in the machine's byte order. Signed
    /// samples span their whole range: the most negative value is black.
    fn read(self, b: &[u8]) -> f32 {
        match self {
            SampleKind::U8 => b[0] as f32 / 255.0,
            SampleKind::U16 => u16::from_ne_bytes([b[0], b[1]]) as f32 / 65535.0,
            SampleKind::U32 => {
                (u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f64 / u32::MAX as f64) as f32
            }
            SampleKind::I8 => (i8::from_ne_bytes([b[0]]) as f32 + 128.0) / 255.0,
            SampleKind::I16 => (i16::from_ne_bytes([b[0], b[1]]) as f32 + 32768.0) / 65535.0,
            SampleKind::I32 => {
                ((i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f64 + 2_147_483_648.0)
                    / u32::MAX as f64) as f32
            }
            SampleKind::F16 => half_to_f32(u16::from_ne_bytes([b[0], b[1]])),
            SampleKind::F32 => f32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            SampleKind::F64 => {
                f64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
        }
    }
}

fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = ((h >> 10) & 0x1f) as i32;
    let mantissa = (h & 0x3ff) as f32;
    match exponent {
        0 => sign * mantissa * 2f32.powi(-24),
        31 if mantissa == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + mantissa / 1024.0) * 2f32.powi(exponent - 15),
    }
}

/// Floating-point TIFFs (Photoshop's, GIMP's and Affinity's 32-bit mode)
/// hold linear light; everything downstream expects sRGB-encoded values.
fn linear_to_srgb(v: f32) -> f32 {
    if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

fn to_u8(v: f32) -> u8 {
    // NaN clamps to 0 through the saturating cast.
    (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

/// Reads grey, RGB or CMYK samples (any supported depth, contiguous or
/// planar, stripped or tiled) into 8-bit RGB(A).
fn decode_samples(
    handle: &Handle,
    header: &Header,
    icc: Option<Vec<u8>>,
    warnings: &mut Vec<String>,
) -> Result<(Bitmap, Option<Vec<u8>>), RenderError> {
    let kind = SampleKind::of(header);
    let (width, height) = (header.width as usize, header.height as usize);
    let spp = header.samples_per_pixel as usize;
    let colours = header.colour_samples();
    let alpha = header.alpha();
    let alpha_index = colours; // the first extra sample
    let cmyk = header.photometric == PHOTOMETRIC_SEPARATED;
    // CMYK is gathered as ink and converted as a whole afterwards.
    let out_channels = match (cmyk, alpha) {
        (true, Alpha::None) => 4,
        (true, _) => 5,
        (false, Alpha::None) => 3,
        (false, _) => 4,
    };
    let mut out = vec![0u8; width * height * out_channels];
    let planar = header.planar == PLANARCONFIG_SEPARATE && spp > 1;
    // Per chunk: the samples one chunk holds per pixel.
    let chunk_spp = if planar { 1 } else { spp };
    // Only the planes we use: an unspecified extra sample (Photoshop's
    // saved selections, a microscope's extra channel) may be left empty.
    let planes = if planar {
        colours + usize::from(alpha != Alpha::None)
    } else {
        1
    };
    let (chunk_w, chunk_h, chunk_size) = if header.tiled {
        let w = handle.u32_field(ffi::TAG_TILEWIDTH, true).unwrap_or(0) as usize;
        let h = handle.u32_field(ffi::TAG_TILELENGTH, true).unwrap_or(0) as usize;
        // SAFETY: a query on an open handle.
        (w, h, unsafe { ffi::TIFFTileSize(handle.tif) })
    } else {
        let rows = handle
            .u32_field(ffi::TAG_ROWSPERSTRIP, true)
            .unwrap_or(u32::MAX)
            .clamp(1, header.height) as usize;
        // SAFETY: a query on an open handle.
        (width, rows, unsafe { ffi::TIFFStripSize(handle.tif) })
    };
    let needed = chunk_w as u64 * chunk_h as u64 * chunk_spp as u64 * kind.bytes() as u64;
    if !tile_is_plausible(chunk_w, chunk_h, header)
        || chunk_size <= 0
        || chunk_size > MAX_SINGLE_ALLOC
        || (chunk_size as u64) < needed
    {
        return Err(corrupt(
            &handle.source,
            &format!("impossible strip or tile layout ({chunk_w}x{chunk_h})"),
        ));
    }
    let mut chunk = vec![0u8; chunk_size as usize];
    // The samples we use (colour, then alpha) as 0..=1, gathered across
    // planes for one chunk.
    let used = colours + usize::from(alpha != Alpha::None);
    let mut values = vec![0f32; chunk_w * chunk_h * used];
    let sample_bytes = kind.bytes();
    // 8-bit RGB and grey, the usual export, go straight to the output.
    let direct = matches!(kind, SampleKind::U8)
        && !planar
        && alpha == Alpha::None
        && ((spp == 3 && header.photometric == PHOTOMETRIC_RGB)
            || (spp == 1 && header.photometric == PHOTOMETRIC_MINISBLACK));
    for y0 in (0..height).step_by(chunk_h) {
        'chunks: for x0 in (0..width).step_by(chunk_w) {
            let (w, h) = (chunk_w.min(width - x0), chunk_h.min(height - y0));
            for plane in 0..planes {
                // SAFETY: `chunk` holds TIFFTileSize/TIFFStripSize bytes.
                let read = unsafe {
                    if header.tiled {
                        let tile =
                            ffi::TIFFComputeTile(handle.tif, x0 as u32, y0 as u32, 0, plane as u16);
                        ffi::TIFFReadEncodedTile(
                            handle.tif,
                            tile,
                            chunk.as_mut_ptr() as *mut c_void,
                            chunk_size,
                        )
                    } else {
                        let strip = ffi::TIFFComputeStrip(handle.tif, y0 as u32, plane as u16);
                        ffi::TIFFReadEncodedStrip(
                            handle.tif,
                            strip,
                            chunk.as_mut_ptr() as *mut c_void,
                            chunk_size,
                        )
                    }
                };
                // A short last strip is normal; a failed read is not.
                let needed_rows = if header.tiled { chunk_h } else { h };
                let needed = chunk_w * needed_rows * chunk_spp * sample_bytes;
                if read < 0 || (read as usize) < needed {
                    return Err(corrupt(
                        &handle.source,
                        &format!("strip or tile at row {y0} is shorter than its pixels"),
                    ));
                }
                if direct {
                    for row in 0..h {
                        let src = &chunk[row * chunk_w * spp..][..w * spp];
                        let dst = &mut out[((y0 + row) * width + x0) * 3..][..w * 3];
                        if spp == 3 {
                            dst.copy_from_slice(src);
                        } else {
                            for (px, grey) in dst.chunks_exact_mut(3).zip(src) {
                                px.fill(*grey);
                            }
                        }
                    }
                    continue 'chunks;
                }
                for row in 0..h {
                    for col in 0..w {
                        let pixel = row * chunk_w + col;
                        for s in 0..chunk_spp.min(used) {
                            let at = (pixel * chunk_spp + s) * sample_bytes;
                            let sample = if planar { plane } else { s };
                            values[pixel * used + sample] =
                                kind.read(&chunk[at..at + sample_bytes]);
                        }
                    }
                }
            }
            for row in 0..h {
                for col in 0..w {
                    let v = &values[(row * chunk_w + col) * used..][..used];
                    let dst =
                        &mut out[((y0 + row) * width + x0 + col) * out_channels..][..out_channels];
                    put_pixel(v, dst, header, kind, alpha, alpha_index, cmyk);
                }
            }
        }
    }
    if let Some(error) = handle.first_error() {
        return Err(RenderError::corrupt("TIFF", error));
    }
    let (w, h) = (header.width, header.height);
    if cmyk {
        let (ink, alpha_plane): (Vec<u8>, Option<Vec<u8>>) = if out_channels == 5 {
            let ink = out
                .chunks_exact(5)
                .flat_map(|p| [p[0], p[1], p[2], p[3]])
                .collect();
            let a = out.chunks_exact(5).map(|p| p[4]).collect();
            (ink, Some(a))
        } else {
            (out, None)
        };
        // Stored CMYK TIFFs are ink amounts (0 = no ink), unlike Adobe JPEGs.
        let rgb = crate::colour::cmyk_to_srgb(&ink, icc.as_deref(), false, warnings);
        return Ok(match alpha_plane {
            None => (Bitmap::new(w, h, Channels::Rgb, rgb), None),
            Some(a) => {
                let rgba = rgb
                    .chunks_exact(3)
                    .zip(a)
                    .flat_map(|(c, a)| [c[0], c[1], c[2], a])
                    .collect();
                (Bitmap::new(w, h, Channels::Rgba, rgba), None)
            }
        });
    }
    let channels = if out_channels == 4 {
        Channels::Rgba
    } else {
        Channels::Rgb
    };
    if kind.is_float() && icc.is_some() {
        warnings.push(
            "ignored the ICC profile of a floating-point TIFF: its samples were read as linear sRGB"
                .into(),
        );
        return Ok((Bitmap::new(w, h, channels, out), None));
    }
    Ok((
        Bitmap::new(w, h, channels, out),
        rgb_profile_only(icc, warnings),
    ))
}

/// One pixel's samples (0..=1) to 8-bit output: grey is spread to RGB,
/// associated alpha is divided out, float is linear light.
fn put_pixel(
    v: &[f32],
    dst: &mut [u8],
    header: &Header,
    kind: SampleKind,
    alpha: Alpha,
    alpha_index: usize,
    cmyk: bool,
) {
    let a = if alpha == Alpha::None {
        1.0
    } else {
        v[alpha_index].clamp(0.0, 1.0)
    };
    let colour = |c: f32| {
        let straight = if alpha == Alpha::Associated {
            if a > 0.0 {
                c / a
            } else {
                0.0
            }
        } else {
            c
        };
        if kind.is_float() && !cmyk {
            to_u8(linear_to_srgb(straight.clamp(0.0, 1.0)))
        } else {
            to_u8(straight)
        }
    };
    if cmyk {
        for i in 0..4 {
            dst[i] = colour(v[i]);
        }
        if alpha != Alpha::None {
            dst[4] = to_u8(a);
        }
        return;
    }
    if header.colour_samples() == 1 {
        let g = if header.photometric == PHOTOMETRIC_MINISWHITE {
            1.0 - v[0]
        } else {
            v[0]
        };
        let g = colour(g);
        dst[..3].fill(g);
    } else {
        for i in 0..3 {
            dst[i] = colour(v[i]);
        }
    }
    if alpha != Alpha::None {
        dst[3] = to_u8(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert_exactly() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0x3800), 0.5);
        assert_eq!(half_to_f32(0x0000), 0.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert!(half_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn linear_light_is_encoded_with_the_srgb_curve() {
        assert_eq!(to_u8(linear_to_srgb(0.0)), 0);
        assert_eq!(to_u8(linear_to_srgb(1.0)), 255);
        // Linear 0.2159 is sRGB 128 (mid grey).
        assert_eq!(to_u8(linear_to_srgb(0.2159)), 128);
    }

    #[test]
    fn only_an_rgb_profile_is_kept_for_rgb_pixels() {
        let profile = |space: &[u8; 4]| {
            let mut icc = vec![0u8; 128];
            icc[16..20].copy_from_slice(space);
            icc
        };
        let mut warnings = Vec::new();
        assert!(rgb_profile_only(Some(profile(b"RGB ")), &mut warnings).is_some());
        assert!(warnings.is_empty());
        assert!(rgb_profile_only(Some(profile(b"GRAY")), &mut warnings).is_none());
        assert!(warnings[0].contains("GRAY"), "{warnings:?}");
        assert!(rgb_profile_only(None, &mut warnings).is_none());
    }

    #[test]
    fn garbage_is_refused_as_corrupt_not_as_a_panic() {
        let Err(err) = decode(b"II*\0\x08\0\0\0garbage") else {
            panic!("garbage decoded");
        };
        assert_eq!(err.code(), "corrupt-image", "{err}");
    }
}
