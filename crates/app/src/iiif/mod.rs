//! IIIF around the engine's planning and rendering
//! ([`easel_render::iiif`]): the `info.json` document the service gives
//! for an image ([`info`]), and the render cache's policy over the
//! catalogue's `RenderCacheIndex` and the object store ([`cache`]).

pub mod cache;
pub mod info;
